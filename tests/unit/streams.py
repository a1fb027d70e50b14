"""Helpers shared by the parser tests: the recorded engine streams and what the parsers made of them."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from types import EllipsisType

from webapp.builds.steps import BuildResult, Event, LogLine, Step, StepChanged, StepStatus

#: The recorded engine streams; the recordings of scripts/record_streams.py are in its ``recorded`` folder.
STREAMS = Path(__file__).resolve().parent.parent / "fixtures" / "streams"


class FakeClock:
    """1000.0, 1001.0, 1002.0, ...: every clock() call is one second later."""

    def __init__(self) -> None:
        self.now = 999.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@functools.cache
def raw(name: str, folder: str = "") -> bytes:
    """The bytes of recording ``name`` (in ``folder`` under STREAMS, if given)."""
    return (STREAMS / folder / f"{name}.jsonl").read_bytes()


def docs(name: str, folder: str = "") -> list[dict]:
    """The recording read line by line with json.loads: what the engine said, without our code."""
    return [json.loads(line) for line in raw(name, folder).splitlines() if line.strip()]


def final_steps(events: list[Event]) -> list[Step]:
    """Each step as its last StepChanged left it, in index order."""
    last: dict[int, Step] = {}
    for e in events:
        if isinstance(e, StepChanged):
            last[e.step.index] = e.step
    return [last[i] for i in sorted(last)]


def lines(events: list[Event], step: int | None | EllipsisType = ...) -> list[tuple[str, str]]:
    """(stream, text) of every log line, or of one step's (``step=None``: lines of no step)."""
    return [(e.stream, e.text) for e in events if isinstance(e, LogLine) and (step is ... or e.step == step)]


def output(events: list[Event], step: int | None | EllipsisType = ...) -> list[tuple[str, str]]:
    """What commands printed (stdout and stderr lines), of one step or of all."""
    return [(s, t) for s, t in lines(events, step) if s != "system"]


def result(events: list[Event]) -> BuildResult:
    results = [e for e in events if isinstance(e, BuildResult)]
    assert len(results) == 1
    assert events[-1] is results[0], "BuildResult comes last"
    return results[0]


def table(events: list[Event]) -> list[tuple[int, str, str, StepStatus, bool | None]]:
    return [(s.index, s.stage, s.instruction, s.status, s.cached) for s in final_steps(events)]


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def random_chunks(data: bytes, rng: random.Random, max_cuts: int = 60) -> list[bytes]:
    """``data`` cut at 1 to ``max_cuts`` random points."""
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, max_cuts))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
