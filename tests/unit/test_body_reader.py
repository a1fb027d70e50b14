"""`layerdeck serve`'s request body reader (webapp.cli.read_bodies_in_large_blocks) on a real socket: what
arrived with the headers, what is still on the wire, a client that stops short, and the next request's
bytes behind the body all come out as gunicorn's own reader would give them."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader

from webapp.cli import read_bodies_in_large_blocks


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
