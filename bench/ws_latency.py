"""Benchmark 3: engine-to-viewer latency of a log line with 50 viewers connected (target: p99 < 50 ms).

A RUN step prints its own wall-clock time (busybox `adjtimex`, microseconds) on every line; each viewer
subtracts it from the time the line reaches it. The same Dockerfile is also built through the engine's
own /build API, read by one client: that is the engine's own share of the delay, measured in the same run.

    .venv/bin/python -m bench.ws_latency [--viewers 50] [--lines 200]
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import docker

from bench.common import base_image, layerdeck_server, percentile, upload
from tests.wsclient import WSClient

STAMP = "awk '/tv_sec/{s=$2}/tv_usec/{u=$2}END{printf \"T %d.%06d\\n\", s, u}'"


def dockerfile(base: str, lines: int, nonce: str) -> str:
    return (f"FROM {base}\n"
            f"RUN echo {nonce}; i=0; while [ $i -lt {lines} ]; do adjtimex | {STAMP}; usleep 20000; "
            "i=$((i+1)); done\n")


def stamp_of(text: str) -> float | None:
    if text.startswith("T "):
        try:
            return float(text[2:])
        except ValueError:
            return None
    return None


def context_tar(path: Path, text: str) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("Dockerfile")
        data = text.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def engine_alone(api: docker.APIClient, tar: Path) -> list[float]:
    delays: list[float] = []
    with tar.open("rb") as body:
        response = api._post(api._url("/build"), params={"rm": "1", "forcerm": "1", "nocache": "1"},
                             data=body, headers={"Content-Type": "application/x-tar"}, stream=True,
                             timeout=None)
    buffer = ""
    image = None
    for doc in api._stream_helper(response, decode=True):
        now = time.time()
        buffer += doc.get("stream", "")
        image = doc.get("aux", {}).get("ID", image)
        *complete, buffer = buffer.split("\n")
        for line in complete:
            stamp = stamp_of(line)
            if stamp is not None:
                delays.append(now - stamp)
    if image:
        api.remove_image(image, force=True)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--lines", type=int, default=200)
    args = parser.parse_args()
    api = docker.APIClient(version="auto")
    base = base_image(api)
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "c.tar"
        with layerdeck_server() as server:
            context_tar(tar, dockerfile(base, args.lines, f"layerdeck-{time.time()}"))
            created = upload(server.url, tar)
            ws_url = server.url.replace("http://", "ws://") + created["ws_url"]
            delays: list[list[float]] = [[] for _ in range(args.viewers)]
            ready = threading.Barrier(args.viewers + 1)

            def watch(n: int) -> None:
                ws = WSClient(ws_url, timeout=300)
                ready.wait()
                try:
                    while (data := ws.receive()) is not None:
                        now = time.time()
                        message = json.loads(data)
                        if message["type"] == "log":
                            stamp = stamp_of(message["text"])
                            if stamp is not None:
                                delays[n].append(now - stamp)
                        elif message["type"] == "end":
                            break
                finally:
                    ws.close()

            threads = [threading.Thread(target=watch, args=(n,)) for n in range(args.viewers)]
            for t in threads:
                t.start()
            ready.wait()
            for t in threads:
                t.join()
        context_tar(tar, dockerfile(base, args.lines, f"engine-{time.time()}"))
        direct = engine_alone(api, tar)
    every = [d * 1000 for viewer in delays for d in viewer]
    direct_ms = [d * 1000 for d in direct]
    print(f"{args.viewers} viewers, {args.lines} timed lines each, {len(every)} deliveries")
    print(f"engine's own /build, one reader:  p50 {percentile(direct_ms, 50):6.1f} ms   "
          f"p99 {percentile(direct_ms, 99):6.1f} ms")
    print(f"through Layerdeck to each viewer: p50 {percentile(every, 50):6.1f} ms   "
          f"p99 {percentile(every, 99):6.1f} ms   (target p99 < 50 ms)")


if __name__ == "__main__":
    main()
