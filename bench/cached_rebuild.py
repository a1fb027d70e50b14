"""Benchmark 1: a fully cached rebuild of a 2,000-file, 6 MB context, through Layerdeck's API (upload to
`succeeded`) against the engine's own /build API on the same tar with the same builder, alternated in one
run. Prints the median ratio of each way (target: at most 1.3), each Layerdeck run against the engine run
of the same round. The upload is the archive as the request body, as the engine's own API takes it. Three
ways a client can wait for the build: the websocket the page opens once the upload is answered; the same
after naming the archive by its digest instead of sending it; and `?follow=1`, one request that streams the
build's messages back as the engine's /build does. A fourth way sends nothing: the build page's Rebuild
button (`POST /api/v1/builds/<id>/rebuild`), then its websocket.

    .venv/bin/python -m bench.cached_rebuild [--rounds 30] [--builder classic]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import tarfile
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import docker

from bench.common import API, base_image, layerdeck_server, median, upload_raw
from tests.wsclient import WSClient

FILES = 2000
TOTAL_BYTES = 6 * 1024**2


def make_context(base: str, path: Path) -> None:
    rng = random.Random(42)
    each = TOTAL_BYTES // FILES
    dockerfile = (f"FROM {base}\nWORKDIR /app\nCOPY requirements.txt .\nRUN echo installing requirements\n"
                  "COPY . /app\nRUN ls -R /app | wc -l\n")
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))

        add("Dockerfile", dockerfile.encode())
        add("requirements.txt", b"flask==3.0\n")
        for i in range(FILES - 2):
            add(f"src/pkg{i // 100:02d}/module_{i:04d}.py", rng.randbytes(each))


def via_engine(api: docker.APIClient, tar: Path, tag: str, labels: dict[str, str], builder: str) -> float:
    params = {"t": tag, "rm": "1", "forcerm": "1", "labels": json.dumps(labels), "dockerfile": "Dockerfile"}
    if builder == "buildkit":
        params["version"] = "2"
    start = time.perf_counter()
    with tar.open("rb") as body:
        response = api._post(api._url("/build"), params=params, data=body,
                             headers={"Content-Type": "application/x-tar"}, stream=True, timeout=None)
    for chunk in api._stream_helper(response, decode=True):
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
    return time.perf_counter() - start


def via_layerdeck(url: str, tar: Path, tag: str, builder: str, *, digest_first: bool = False,
                  follow: bool = False) -> float:
    start = time.perf_counter()
    params = {"tag": tag, "builder": builder}
    if follow:
        # One request, as the engine's own /build: the archive up, the build's messages down until its end.
        with tar.open("rb") as body, API.post(url + "/api/v1/builds", params={**params, "follow": "1"}, data=body,
                                              headers={"Content-Type": "application/x-tar"}, stream=True,
                                              timeout=600) as response:
            response.raise_for_status()
            last = None
            for line in response.iter_lines():
                if line:
                    last = json.loads(line)
        elapsed = time.perf_counter() - start
        if not last or last.get("type") != "end" or last.get("status") != "succeeded":
            raise RuntimeError(f"the followed build ended {last}")
        return elapsed
    if digest_first:
        # What a script that rebuilds the same archive can do: name it by its sha256 (computed here, inside
        # the timing) and send no body; Layerdeck answers 409 when it must send the archive after all.
        digest = hashlib.sha256(tar.read_bytes()).hexdigest()
        response = API.post(url + "/api/v1/builds", params={**params, "context_digest": digest},
                                 timeout=60)
        response.raise_for_status()
        created = response.json()
    else:
        created = upload_raw(url, tar, params)
    return _watched(url, created, start)


def via_rebuild(url: str, build_id: int) -> float:
    """The Rebuild button: the same context and options as build `build_id`, nothing uploaded."""
    start = time.perf_counter()
    response = API.post(url + f"/api/v1/builds/{build_id}/rebuild", timeout=60)
    response.raise_for_status()
    return _watched(url, response.json(), start)


def _watched(url: str, created: dict[str, Any], start: float) -> float:
    """Seconds from `start` until the build's websocket says it ended (it must have succeeded)."""
    ws = WSClient(url.replace("http://", "ws://") + created["ws_url"])
    status = None
    while (data := ws.receive()) is not None:
        message = json.loads(data)
        if message["type"] == "end":
            status = message["status"]
            break
    elapsed = time.perf_counter() - start
    ws.close()
    if status != "succeeded":
        raise RuntimeError(f"build {created['id']} ended {status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    # Each round costs a BuildKit rebuild 0.1 s a way and a classic one about 1 s; the engine's own time varies
    # by a factor of two from one moment to the next on a 2-core VM, so fewer rounds give a noisy median.
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--builder", choices=["buildkit", "classic", "both"], default="both")
    args = parser.parse_args()
    api = docker.APIClient(version="auto")
    base = base_image(api)
    builders = ["buildkit", "classic"] if args.builder == "both" else [args.builder]
    medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "context.tar"
        make_context(base, tar)
        print(f"context: {FILES} files, {os.path.getsize(tar) / 1024**2:.1f} MiB tar")
        with layerdeck_server() as server:
            labels = {"layerdeck.instance": server.instance_id}  # what Layerdeck sends with every build
            for builder in builders:
                tag = f"layerdeck-bench/cached-{builder}:{server.instance_id[:8]}"
                # Warm the cache once, through both paths; the Rebuild button rebuilds this first build.
                first = upload_raw(server.url, tar, {"tag": tag, "builder": builder})
                _watched(server.url, first, time.perf_counter())
                via_engine(api, tar, tag, labels, builder)
                ld, dg, fl, rb, en = [], [], [], [], []
                ways = [(en, partial(via_engine, api, tar, tag, labels, builder)),
                        (ld, partial(via_layerdeck, server.url, tar, tag, builder)),
                        (dg, partial(via_layerdeck, server.url, tar, tag, builder, digest_first=True)),
                        (fl, partial(via_layerdeck, server.url, tar, tag, builder, follow=True)),
                        (rb, partial(via_rebuild, server.url, first["id"]))]
                for n in range(args.rounds):
                    for times, way in ways[n % 5:] + ways[:n % 5]:  # each way takes each place in turn
                        times.append(way())
                medians[builder] = median(ld)
                print(f"[{builder}] engine /build alone:                    median {median(en):.3f} s  "
                      f"(min {min(en):.3f}, max {max(en):.3f})")
                for label, times in (("uploading, then its websocket", ld), ("by digest, then its websocket", dg),
                                     ("uploading, ?follow=1", fl), ("Rebuild button, its websocket", rb)):
                    ratios = [a / b for a, b in zip(times, en, strict=True)]
                    print(f"[{builder}] Layerdeck, {label:<30} median {median(times):.3f} s  "
                          f"(min {min(times):.3f}, max {max(times):.3f})  median ratio {median(ratios):.2f}"
                          f"  (target <= 1.3)")
    if len(medians) == 2:
        print(f"fully cached rebuild through Layerdeck: BuildKit {medians['buildkit']:.3f} s, "
              f"classic {medians['classic']:.3f} s")


if __name__ == "__main__":
    main()
