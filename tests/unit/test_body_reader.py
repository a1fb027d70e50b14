"""`layerdeck serve`'s request body reader (webapp.cli.read_bodies_in_large_blocks) on a real socket: what
arrived with the headers, what is still on the wire, a client that stops short, and the next request's
bytes behind the body all come out as gunicorn's own reader would give them, by read() and by readinto()
(what webapp.uploads.receive uses, through werkzeug's request stream)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader
from werkzeug.wsgi import LimitedStream

from webapp.cli import read_bodies_in_large_blocks
from webapp.uploads import BLOCK_BYTES, SpooledUpload, receive


@pytest.fixture(autouse=True)
def patched() -> None:
    read_bodies_in_large_blocks()
    read_bodies_in_large_blocks()  # twice is once


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = socket.socketpair()
    yield client, server
    client.close()
    server.close()


def send_later(sock: socket.socket, data: bytes, *, then_close: bool = False) -> threading.Thread:
    def send() -> None:
        for i in range(0, len(data), 8192):  # as a client does: small writes, the reader waits for a block
            sock.sendall(data[i:i + 8192])
        if then_close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def body_over(server: socket.socket, length: int, came_with_headers: bytes) -> Body:
    unreader = SocketUnreader(server)
    unreader.unread(came_with_headers)
    return Body(LengthReader(unreader, length))


def read_all(body: Body, block: int) -> bytes:
    parts = []
    while chunk := body.read(block):
        parts.append(chunk)
    return b"".join(parts)


def test_a_body_arrives_whole_in_blocks_of_the_size_asked(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    payload = os.urandom(3 * 1024**2 + 77)
    sender = send_later(client, payload[1500:])
    body = body_over(server, len(payload), payload[:1500])
    first = body.read(1024**2)
    assert len(first) == 1024**2  # one block, not whatever one recv() happened to return
    assert first + read_all(body, 1024**2) == payload
    sender.join()


def test_a_body_already_read_with_the_headers_leaves_the_next_request_alone(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, server = pair
    payload, following = b"x" * 5000, b"GET /next HTTP/1.1\r\n\r\n"
    unreader = SocketUnreader(server)
    unreader.unread(payload + following)
    body = Body(LengthReader(unreader, len(payload)))
    assert read_all(body, 4096) == payload
    assert unreader.read() == following


def test_a_client_that_stops_short_gives_what_it_sent(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    sent = os.urandom(200_000)
    sender = send_later(client, sent, then_close=True)
    body = body_over(server, 1_000_000, b"")
    assert read_all(body, 1024**2) == sent
    sender.join()


def test_small_reads_and_lines_still_work(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    payload = b"first line\nsecond line\n" + b"z" * 100_000
    sender = send_later(client, payload)
    body = body_over(server, len(payload), b"")
    assert body.readline() == b"first line\n"
    assert body.read(3) == b"sec"
    assert body.readline() == b"ond line\n"
    assert read_all(body, 65536) == b"z" * 100_000
    sender.join()


def read_all_into(body: Body, block: int) -> bytes:
    parts = []
    while True:
        buffer = bytearray(block)
        got = body.readinto(buffer)  # type: ignore[attr-defined]
        if not got:
            return b"".join(parts)
        parts.append(bytes(buffer[:got]))


def test_readinto_fills_the_callers_buffer_with_a_whole_block(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    payload = os.urandom(2 * 1024**2 + 5)
    sender = send_later(client, payload[700:])
    body = body_over(server, len(payload), payload[:700])
    buffer = bytearray(1024**2)
    assert body.readinto(memoryview(buffer)) == len(buffer)  # type: ignore[attr-defined]
    assert bytes(buffer) == payload[:1024**2]
    assert bytes(buffer) + read_all_into(body, 1024**2) == payload
    sender.join()


def test_readinto_after_a_readline_and_from_a_client_that_stops_short(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = pair
    sent = b"header line\n" + os.urandom(300_000)
    sender = send_later(client, sent, then_close=True)
    body = body_over(server, 1_000_000, b"")
    assert body.readline() == b"header line\n"  # the Body holds some bytes of its own now
    assert read_all_into(body, 65536) == sent[len(b"header line\n"):]
    sender.join()


def test_receive_puts_a_body_of_any_length_into_the_spool_whole(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path,
) -> None:
    client, server = pair
    payload = os.urandom(2 * BLOCK_BYTES + 123)
    sender = send_later(client, payload[1000:])
    stream = LimitedStream(body_over(server, len(payload), payload[:1000]), len(payload))  # as Flask's request.stream
    with SpooledUpload(tmp_path) as spool:
        receive(stream, spool, len(payload))
        spool.finish()
        assert spool.size == len(payload) and spool.path().read_bytes() == payload
        assert spool.sha256() == hashlib.sha256(payload).hexdigest()
    sender.join()
    # Without a length (a chunked body) it reads to the end; a short body gives what came.
    for length in (None, 10**7):
        with SpooledUpload(tmp_path) as spool:
            receive(io.BytesIO(payload), spool, length)
            spool.finish()
            assert spool.size == len(payload) and spool.path().read_bytes() == payload
