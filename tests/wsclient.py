"""A small blocking websocket client for tests, on wsproto.

simple_websocket's Client drops messages that arrive in the same packet as the handshake response when
the server closes right after them (a finished build replays and closes at once), so tests read with
this instead: every frame the server sent is returned, then None at close.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

# Handshake headers per "host:port" for servers the tests start (tests/conftest.py's live_server registers
# its admin's token here), so a test opening a socket need not thread the token through every call.
SERVER_HEADERS: dict[str, list[tuple[str, str]]] = {}


class WSClient:
    def __init__(self, url: str, timeout: float = 60, headers: list[tuple[str, str]] | None = None) -> None:
        parts = urlsplit(url)
        if headers is None:
            headers = SERVER_HEADERS.get(parts.netloc, [])
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[str | None] = deque()
        self._partial = ""
        self.closed = False
        self.close_code: int | None = None
        self.pings = 0
        self.sock.sendall(self.ws.send(Request(host=parts.netloc, target=target, extra_headers=headers or [])))
        while True:
            self._recv()
            if self.accepted is not None:
                break
        if not self.accepted:
            raise ConnectionError(f"websocket refused: {self.reject_status}")

    accepted: bool | None = None
    reject_status: int | None = None

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                self.accepted, self.reject_status = False, event.status_code
            elif isinstance(event, TextMessage):
                self._partial += event.data
                if event.message_finished:
                    self.pending.append(self._partial)
                    self._partial = ""
            elif isinstance(event, Ping):
                self.pings += 1
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                with contextlib.suppress(OSError):
                    self.sock.sendall(self.ws.send(event.response()))
                self.closed = True
        if not data:
            self.closed = True

    def receive(self) -> str | None:
        """The next text message, or None once the server has closed and every message was read."""
        while not self.pending and not self.closed:
            self._recv()
        return self.pending.popleft() if self.pending else None

    def close(self) -> None:
        try:
            if not self.closed:
                self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except Exception:  # closing a socket the server already dropped
            pass
        self.sock.close()
