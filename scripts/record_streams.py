#!/usr/bin/env python3
"""Record real ``POST /build`` response bodies from the local Docker engine, for the step parsers' tests.

What it records (issue 3: "record more: cancel, error, multi-stage, parallel stages, large logs"): for
each scenario below it builds the same Dockerfile twice, once with the classic builder (no ``version``
parameter) and once with BuildKit (``version=2``), and writes the engine's response body byte for byte,
exactly as received, to ``tests/fixtures/streams/recorded/<scenario>_<classic|buildkit>.jsonl``. The
Dockerfile goes next to it as ``<scenario>.Dockerfile`` (BuildKitParser takes its text as ``dockerfile=``).

* ``parallel``         -- three stages: stage 0 and stage ``right`` each run a ``sleep 1`` step on their own
                          (BuildKit runs them at the same time), stage ``final`` copies from both;
* ``large_log``        -- one RUN printing 5,000 numbered lines to stdout and 5 lines to stderr;
* ``error_multistage`` -- the second of two stages fails in a RUN that wrote to stdout and stderr first;
* ``cancel``           -- a RUN printing ``tick N`` every 0.5 s for 20 s, stopped ~2 s after the first tick:
                          classic by closing the response (what a client that goes away does), BuildKit by
                          ``POST /build/cancel?id=<buildid>``, after which the stream is read to its end;
* ``target``           -- three stages built with ``target=middle`` (middle copies from stage 0; ``last``
                          is not needed).

Every context is a tar (GNU format) of a static busybox copied from /bin/busybox plus the Dockerfile, which
starts ``FROM scratch`` / ``COPY busybox /bin/busybox`` / ``RUN ["/bin/busybox","--install","-s","/bin"]``:
nothing is pulled, so it works without a registry. Builds use ``nocache=1``, ``rm=1``, ``forcerm=1``, tag
nothing, and carry the label ``layerdeck.test=record``.

Afterwards the script removes the images these builds made, and nothing else (the engine is shared; it
never prunes): the image ids the streams name -- classic ``{"aux": {"ID": ...}}`` per stage and the
`` ---> <id>`` of each committed step (a failed or cancelled classic build leaves those without an aux
ID), BuildKit's ``{"id": "moby.image.id", "aux": {"ID": ...}}`` -- leaving out any id that existed
before the run, deleted one at a time, children first, with ``noprune`` so the engine deletes no parent
on its own. BuildKit's build cache is left alone.

Re-run it (the engine must be reachable the usual way, ``DOCKER_HOST`` or the default socket; the
recordings are overwritten, so review ``git diff`` afterwards -- ids, timestamps and chunking change)::

    .venv/bin/python scripts/record_streams.py                      # every scenario, both builders
    .venv/bin/python scripts/record_streams.py cancel target        # some scenarios
    .venv/bin/python scripts/record_streams.py --builder buildkit   # one builder

The first recordings came from Docker Engine 20.10.24 (API 1.41); the tests in
tests/unit/test_steps_recorded.py assert what these recordings show, so re-recording on another engine
may need them adjusted.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "streams" / "recorded"
BUSYBOX = Path("/bin/busybox")
LABELS = {"layerdeck.test": "record"}

PREAMBLE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]
"""

#: How long after the first tick the cancel scenario is stopped.
CANCEL_AFTER_S = 2.0


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: str  # what follows the busybox preamble
    target: str | None = None
    cancel: bool = False

    @property
    def dockerfile(self) -> str:
        return PREAMBLE + self.steps


SCENARIOS = [
    Scenario(
        "parallel",
        """\
RUN sleep 1 && echo left > /left
FROM scratch AS right
COPY busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]
RUN sleep 1 && echo right > /right
FROM scratch AS final
COPY --from=0 /left /left
COPY --from=right /right /right
""",
    ),
    Scenario(
        "large_log",
        """\
RUN i=1; while [ $i -le 5000 ]; do echo "stdout line $i of 5000"; \
case $i in 1|1000|2500|4000|5000) echo "stderr line at $i" >&2;; esac; i=$((i+1)); done
""",
    ),
    Scenario(
        "error_multistage",
        """\
RUN echo first stage > /first
FROM scratch AS second
COPY --from=0 /bin/busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]
RUN echo checking the input; echo "warning: /input is missing" >&2; sleep 0.3; \
echo "fatal: cannot continue" >&2; exit 7
""",
    ),
    Scenario(
        "cancel",
        """\
RUN i=1; while [ $i -le 40 ]; do echo "tick $i"; sleep 0.5; i=$((i+1)); done
""",
        cancel=True,
    ),
    Scenario(
        "target",
        """\
RUN echo base > /base
FROM scratch AS middle
COPY --from=0 / /
RUN echo middle > /middle
FROM scratch AS last
COPY --from=middle / /
RUN echo last > /last
""",
        target="middle",
    ),
]

BUILDERS = ("classic", "buildkit")


# --------------------------------------------------------------------------------------------------
# Context and request
# --------------------------------------------------------------------------------------------------


def make_context(dockerfile: str, directory: Path) -> Path:
    """A GNU-format tar of /bin/busybox (as ``busybox``) and ``Dockerfile``."""
    path = directory / "context.tar"
    source = directory / "Dockerfile"
    source.write_text(dockerfile)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(BUSYBOX, arcname="busybox")
        tar.add(source, arcname="Dockerfile")
    return path


def build_params(scenario: Scenario, builder: str, build_id: str | None) -> dict[str, str]:
    params = {
        "nocache": "1",
        "rm": "1",
        "forcerm": "1",
        "labels": json.dumps(LABELS),
    }
    if scenario.target:
        params["target"] = scenario.target
    if builder == "buildkit":
        params["version"] = "2"
        if build_id:
            params["buildid"] = build_id
    return params


# --------------------------------------------------------------------------------------------------
# Watching the stream go by (only to know when to cancel and which images to remove)
# --------------------------------------------------------------------------------------------------

_CLASSIC_ID_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$", re.MULTILINE)


class Watcher:
    """Reads documents out of the raw chunks as they pass; never changes what gets written."""

    def __init__(self, builder: str) -> None:
        self.builder = builder
        self._pending = b""
        self.image_ids: list[str] = []  # in order of appearance
        self.first_tick_at: float | None = None
        self.documents = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._line(line)

    def close(self) -> None:
        if self._pending.strip():
            self._line(self._pending)
        self._pending = b""

    def _line(self, line: bytes) -> None:
        try:
            doc = json.loads(line)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        self.documents += 1
        aux = doc.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
            self._image(aux["ID"])
        stream = doc.get("stream")
        if isinstance(stream, str):
            for match in _CLASSIC_ID_RE.finditer(stream):
                self._image(match.group(1))
            if "tick " in stream:
                self._tick()
        if doc.get("id") == "moby.buildkit.trace" and isinstance(aux, str):
            try:
                payload = base64.b64decode(aux, validate=True)
            except (binascii.Error, ValueError):
                payload = b""
            if b"tick " in payload:  # log bytes sit verbatim in the protobuf message
                self._tick()
        if doc.get("error") and self.error is None:
            self.error = str(doc["error"])

    def _image(self, image_id: str) -> None:
        if image_id not in self.image_ids:
            self.image_ids.append(image_id)

    def _tick(self) -> None:
        if self.first_tick_at is None:
            self.first_tick_at = time.monotonic()


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------


def raw_chunks(api: docker.APIClient, resp: Any) -> Iterator[bytes]:
    """The response body as the engine's HTTP chunks, undecoded."""
    yield from api._stream_helper(resp, decode=False)


def record(api: docker.APIClient, scenario: Scenario, builder: str, context: Path, out: Path) -> Watcher:
    build_id = str(uuid.uuid4()) if scenario.cancel and builder == "buildkit" else None
    params = build_params(scenario, builder, build_id)
    watcher = Watcher(builder)
    stopped = False
    started = time.monotonic()
    with context.open("rb") as data, out.open("wb") as sink:
        resp = api._post(
            api._url("/build"),
            params=params,
            data=data,
            headers={"Content-Type": "application/x-tar"},
            stream=True,
            timeout=None,
        )
        if resp.status_code >= 400:
            raise SystemExit(f"{scenario.name}/{builder}: HTTP {resp.status_code}: {resp.text}")
        try:
            for chunk in raw_chunks(api, resp):
                sink.write(chunk)
                watcher.feed(chunk)
                due = (
                    scenario.cancel
                    and not stopped
                    and watcher.first_tick_at is not None
                    and time.monotonic() - watcher.first_tick_at >= CANCEL_AFTER_S
                )
                if due:
                    stopped = True
                    if builder == "classic":
                        break  # close the response below: the engine cancels the build
                    cancel_buildkit(build_id)  # and keep reading: the engine ends the stream itself
        finally:
            resp.close()
    watcher.close()
    took = time.monotonic() - started
    if scenario.cancel and not stopped:
        raise SystemExit(f"{scenario.name}/{builder}: the build ended before it could be cancelled")
    print(
        f"  {out.relative_to(ROOT)}: {out.stat().st_size} bytes, {watcher.documents} documents, "
        f"{took:.1f} s, images {[i[:19] for i in watcher.image_ids]}"
        + (f", error: {watcher.error}" if watcher.error else "")
    )
    return watcher


def cancel_buildkit(build_id: str | None) -> None:
    assert build_id is not None
    other = docker.APIClient(version="auto")  # the recording's connection is busy with the stream
    try:
        other._raise_for_status(other._post(other._url("/build/cancel"), params={"id": build_id}, timeout=30))
    finally:
        other.close()


# --------------------------------------------------------------------------------------------------
# Cleanup: the images the recordings made, and only those
# --------------------------------------------------------------------------------------------------


def all_image_ids(api: docker.APIClient) -> set[str]:
    return {image["Id"] for image in api.images(all=True)}


def remove_images(api: docker.APIClient, named: list[str], before: set[str]) -> None:
    """Remove the images ``named`` (full or short ids, parents before children) that did not exist
    ``before`` the run; children first, one at a time, never pruning parents."""
    full: list[str] = []
    for ident in named:
        try:
            image_id = api.inspect_image(ident)["Id"]
        except docker.errors.ImageNotFound:
            continue
        if image_id in before:
            print(f"  keeping {image_id[:19]}: it existed before the recordings")
            continue
        if image_id not in full:
            full.append(image_id)
    removed = 0
    for image_id in reversed(full):
        try:
            api.remove_image(image_id, noprune=True)
            removed += 1
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            print(f"  could not remove {image_id[:19]}: {exc.explanation}", file=sys.stderr)
    print(f"removed {removed} image(s) the recordings made")


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    names = [s.name for s in SCENARIOS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"default: all of {', '.join(names)}"
    )
    parser.add_argument("--builder", choices=BUILDERS, help="record only this builder")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scenarios) - set(names))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    chosen = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios]
    builders = [args.builder] if args.builder else list(BUILDERS)

    if not BUSYBOX.is_file():
        raise SystemExit(f"{BUSYBOX} is missing (a static busybox is needed: apt-get install busybox-static)")
    api = docker.APIClient(version="auto")
    version = api.version()
    print(f"engine {version.get('Version')} (API {version.get('ApiVersion')})")
    OUT.mkdir(parents=True, exist_ok=True)
    before = all_image_ids(api)
    made: list[str] = []
    try:
        for scenario in chosen:
            (OUT / f"{scenario.name}.Dockerfile").write_text(scenario.dockerfile)
            for builder in builders:
                print(f"{scenario.name} ({builder})")
                with tempfile.TemporaryDirectory(prefix="layerdeck-record-") as tmp:
                    context = make_context(scenario.dockerfile, Path(tmp))
                    watcher = record(
                        api, scenario, builder, context, OUT / f"{scenario.name}_{builder}.jsonl"
                    )
                made += watcher.image_ids
    finally:
        time.sleep(1.0)  # a cancelled classic build removes its container after the client left
        remove_images(api, made, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
