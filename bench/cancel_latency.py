"""How fast Cancel stops a running build, on each builder (the issue asks for within 2 seconds).

A build whose RUN step sleeps 30 s is started through a real `layerdeck serve`; once the step runs,
`POST /api/v1/builds/<id>/cancel` is sent and the time until the websocket's `end` is measured.

    .venv/bin/python -m bench.cancel_latency [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import time

import docker

from bench.common import API, base_image, layerdeck_server, median
from tests.wsclient import WSClient


def one(url: str, base: str, builder: str, n: int) -> float:
    dockerfile = f"FROM {base}\nRUN echo cancel-{builder}-{n}-{time.time()} && echo started && sleep 30\n"
    created = API.post(url + "/api/v1/builds", files={"dockerfile_text": (None, dockerfile)},
                            data={"builder": builder}, timeout=30).json()
    ws = WSClient(url.replace("http://", "ws://") + created["ws_url"], timeout=60)
    try:
        while (data := ws.receive()) is not None:
            message = json.loads(data)
            if message["type"] == "log" and message["text"] == "started":
                break
        asked = time.perf_counter()
        API.post(url + f"/api/v1/builds/{created['id']}/cancel", timeout=30).raise_for_status()
        while (data := ws.receive()) is not None:
            message = json.loads(data)
            if message["type"] == "end":
                if message["status"] != "cancelled":
                    raise RuntimeError(f"ended {message['status']}")
                return time.perf_counter() - asked
        raise RuntimeError("no end")
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base = base_image(docker.APIClient(version="auto"))
    with layerdeck_server() as server:
        for builder in ("buildkit", "classic"):
            times = [one(server.url, base, builder, n) for n in range(args.rounds)]
            print(f"[{builder}] cancel to end: median {median(times):.3f} s, max {max(times):.3f} s over "
                  f"{args.rounds} builds (target: within 2 s)")


if __name__ == "__main__":
    main()
