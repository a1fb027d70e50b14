"""Shared pieces of the benchmarks: a real `layerdeck serve` in a subprocess, the busybox base image,
multipart bodies streamed from disk, and small statistics."""

from __future__ import annotations

import io
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import docker
import requests

from tests.helpers import ensure_base_image
from tests.served import Served, layerdeck_serve
from tests.wsclient import SERVER_HEADERS

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/bin/busybox")


def base_image(client: docker.APIClient) -> str:
    """The same locally made busybox base image the tests use."""
    return ensure_base_image(client)


# Every request a benchmark makes goes through this session, which carries the served admin's API token
# (Layerdeck refuses anonymous callers); websockets get it from tests.wsclient.SERVER_HEADERS.
API = requests.Session()


class Server:
    def __init__(self, served: Served) -> None:
        self.proc = served.proc
        self.url = served.url
        self.data_dir = served.data_dir

    def worker_pid(self) -> int:
        """gunicorn's worker (the process that serves requests and runs builds)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0]) if children else self.proc.pid

    @property
    def instance_id(self) -> str:
        return (self.data_dir / "instance-id").read_text().strip()


@contextmanager
def layerdeck_server(**env: str) -> Iterator[Server]:
    """`layerdeck serve` on a free port with its own data folder, signed in as its admin; removes its
    images (tests/served.py) and its data folder afterwards."""
    with tempfile.TemporaryDirectory(prefix="layerdeck-bench-") as folder, \
            layerdeck_serve(Path(folder), **env) as served:
        netloc = served.url.removeprefix("http://")
        SERVER_HEADERS[netloc] = served.auth("admin")
        API.headers["Authorization"] = f"Bearer {served.tokens['admin']}"
        try:
            yield Server(served)
        finally:
            SERVER_HEADERS.pop(netloc, None)
            API.headers.pop("Authorization", None)


class MultipartFile:
    """A multipart/form-data body with one file part streamed from disk, with a known length, so an
    upload of any size costs the client no memory and the server gets a Content-Length."""

    def __init__(self, path: Path, fields: dict[str, str] | None = None, name: str = "context") -> None:
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in (fields or {}).items()
        )
        head += (f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                 f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
        self._parts: list[IO[bytes]] = [io.BytesIO(head), path.open("rb"),
                                        io.BytesIO(f"\r\n--{self.boundary}--\r\n".encode())]
        self._len = len(head) + path.stat().st_size + len(f"\r\n--{self.boundary}--\r\n")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._len

    def read(self, size: int = -1) -> bytes:
        size = 1024**2 if size is None or size < 0 else size
        while self._parts:
            data = self._parts[0].read(size)
            if data:
                return data
            self._parts.pop(0).close()
        return b""


def upload(server_url: str, path: Path, fields: dict[str, str] | None = None) -> dict[str, Any]:
    body = MultipartFile(path, fields)
    response = API.post(server_url + "/api/v1/builds", data=body,
                             headers={"Content-Type": body.content_type}, timeout=600)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def upload_raw(server_url: str, path: Path, params: dict[str, str] | None = None) -> dict[str, Any]:
    """The archive as the request body, options in the query string (see docs/API.md)."""
    with path.open("rb") as body:
        response = API.post(server_url + "/api/v1/builds", params=params or {}, data=body,
                                 headers={"Content-Type": "application/x-tar"}, timeout=600)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values)
