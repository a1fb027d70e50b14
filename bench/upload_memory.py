"""Benchmark 2: the server's peak memory while a 1 GB context uploads (target: grows by less than 64 MB).

A real `layerdeck serve` (gunicorn worker) receives a 1 GiB tar streamed from disk, as a multipart form (the
page's way) and as the raw request body (a script's way); its resident set is sampled every 20 ms from /proc
while the upload is received, checked and re-packed, and while the build sends the context on to the engine.
For comparison the same tar is sent to the engine's own /build API.

    .venv/bin/python -m bench.upload_memory [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import docker

from bench.common import layerdeck_server, upload, upload_raw
from tests.wsclient import WSClient


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)


def make_context(path: Path, size_mb: int) -> None:
    """A 1 GiB context: a few large incompressible files, and a Dockerfile that copies only a small one (new
    random bytes each time: every upload is new to the server)."""
    chunk = os.urandom(1024**2)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add("Dockerfile", b"FROM scratch\nCOPY small.txt /small.txt\n")
        add("small.txt", b"small\n")
        per_file = 128
        for n in range(size_mb // per_file):
            info = tarfile.TarInfo(f"data/blob{n}.bin")
            info.size, info.mode = per_file * 1024**2, 0o644

            tar.addfile(info, _Repeat(chunk, per_file))


class _Repeat:
    """A file-like object giving `chunk` `times` times: a large member without holding it in memory."""

    def __init__(self, chunk: bytes, times: int) -> None:
        self.chunk, self.left, self.pos = chunk, times * len(chunk), 0

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        out = bytearray()
        while len(out) < size:
            start = self.pos % len(self.chunk)
            piece = self.chunk[start : start + size - len(out)]
            out += piece
            self.pos += len(piece)
        self.left -= size
        return bytes(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "big.tar"
        env = {"LAYERDECK_MAX_UPLOAD_SIZE": "4G", "LAYERDECK_MAX_CONTEXT_SIZE": "4G"}
        with layerdeck_server(**env) as server:
            pid = server.worker_pid()
            # Warm up: one small build so imports, the database and the engine client are all loaded.
            small = Path(tmp) / "small.tar"
            with tarfile.open(small, "w", format=tarfile.GNU_FORMAT) as t:
                info = tarfile.TarInfo("Dockerfile")
                data = b"FROM scratch\nLABEL warm=up\n"
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            warm = upload(server.url, small)
            wait_end(server.url, warm["ws_url"])
            for way, send in (("multipart form", upload), ("raw request body", upload_raw)):
                make_context(tar, args.size_mb)
                size = tar.stat().st_size
                baseline = rss_kb(pid)
                sampler = Sampler(pid)
                sampler.start()
                start = time.perf_counter()
                created = send(server.url, tar)
                accepted = time.perf_counter() - start
                peak_upload = sampler.peak
                status = wait_end(server.url, created["ws_url"])
                total = time.perf_counter() - start
                sampler.running = False
                sampler.join()
                print(f"[{way}] context: {size / 1024**2:.0f} MiB tar; build ended {status}")
                print(f"[{way}] worker RSS before upload: {baseline / 1024:.1f} MiB")
                print(f"[{way}] peak while uploading and re-packing (to 202 in {accepted:.1f} s): "
                      f"{peak_upload / 1024:.1f} MiB (+{(peak_upload - baseline) / 1024:.1f} MiB)")
                print(f"[{way}] peak until the build ended ({total:.1f} s): {sampler.peak / 1024:.1f} MiB "
                      f"(+{(sampler.peak - baseline) / 1024:.1f} MiB; target < 64 MiB growth)")
        api = docker.APIClient(version="auto")
        t0 = time.perf_counter()
        with tar.open("rb") as body:
            response = api._post(api._url("/build"), params={"rm": "1", "forcerm": "1"}, data=body,
                                 headers={"Content-Type": "application/x-tar"}, stream=True, timeout=None)
        image = None
        for doc in api._stream_helper(response, decode=True):
            image = doc.get("aux", {}).get("ID", image)
        engine_alone = time.perf_counter() - t0
        if image:
            api.remove_image(image, force=True)
    print(f"the same tar sent straight to the engine's /build: {engine_alone:.1f} s")


def wait_end(url: str, ws_path: str) -> str:
    ws = WSClient(url.replace("http://", "ws://") + ws_path, timeout=600)
    try:
        while (data := ws.receive()) is not None:
            message = json.loads(data)
            if message["type"] == "end":
                return str(message["status"])
        return "closed"
    finally:
        ws.close()


if __name__ == "__main__":
    main()
