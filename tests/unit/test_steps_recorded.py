"""Both parsers on the streams scripts/record_streams.py recorded (issue 3: cancel, error, multi-stage,
parallel stages, large logs).

Each scenario was built twice from the same Dockerfile (tests/fixtures/streams/recorded/<scenario>.Dockerfile)
on Docker Engine 20.10.24 (API 1.41): ``<scenario>_classic.jsonl`` is the raw ``POST /build`` body of the
classic builder, ``<scenario>_buildkit.jsonl`` that of BuildKit (``version=2``), byte for byte as the engine
sent them. The bytes go through ``iter_documents`` here, as in the app. Both builds had the label
``layerdeck.test=record``, which the classic builder turns into one more step, ``LABEL
layerdeck.test=record``, at the end of the last stage it builds (BuildKit makes no vertex for it).

With the Dockerfile given, BuildKit's steps carry the classic builder's numbers (their place in the whole
Dockerfile), so both builders' steps can be compared index by index.
"""

from __future__ import annotations

import functools
import math
import random

import pytest

from webapp.builds.buildkit import BuildKitParser
from webapp.builds.steps import (
    BuildResult,
    ClassicParser,
    Event,
    LogLine,
    Step,
    StepChanged,
    StepStatus,
    iter_documents,
)

from .streams import STREAMS, FakeClock, docs, final_steps, lines, output, raw, result, table

RECORDED = "recorded"  # the folder of these recordings under STREAMS
SCENARIOS = ["parallel", "large_log", "error_multistage", "cancel", "target"]
BUILDERS = ["classic", "buildkit"]
RECORDINGS = [f"{scenario}_{builder}" for scenario in SCENARIOS for builder in BUILDERS]

PENDING, RUNNING, CACHED, BUILT = StepStatus.PENDING, StepStatus.RUNNING, StepStatus.CACHED, StepStatus.BUILT
FAILED, CANCELLED = StepStatus.FAILED, StepStatus.CANCELLED

COPY_BUSYBOX = "COPY busybox /bin/busybox"
INSTALL = 'RUN ["/bin/busybox","--install","-s","/bin"]'
LABEL = "LABEL layerdeck.test=record"  # the classic builder's step for the build's labels
SLEEP_LEFT = "RUN sleep 1 && echo left > /left"
SLEEP_RIGHT = "RUN sleep 1 && echo right > /right"
LARGE_LOG = (
    'RUN i=1; while [ $i -le 5000 ]; do echo "stdout line $i of 5000"; '
    'case $i in 1|1000|2500|4000|5000) echo "stderr line at $i" >&2;; esac; i=$((i+1)); done'
)
FAILING = (
    'RUN echo checking the input; echo "warning: /input is missing" >&2; sleep 0.3; '
    'echo "fatal: cannot continue" >&2; exit 7'
)
FAILING_SHELL = (
    '/bin/sh -c echo checking the input; echo "warning: /input is missing" >&2; sleep 0.3; '
    'echo "fatal: cannot continue" >&2; exit 7'
)
ERRORS = {
    "classic": f"The command '{FAILING_SHELL}' returned a non-zero code: 7",
    "buildkit": f"executor failed running [{FAILING_SHELL}]: exit code: 7",
}
TICKS = 'RUN i=1; while [ $i -le 40 ]; do echo "tick $i"; sleep 0.5; i=$((i+1)); done'
#: The ticks each recording got before the build was stopped (~2 s after the first one).
TICKS_BEFORE_CANCEL = {"classic": 5, "buildkit": 4}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


@functools.cache
def dockerfile(scenario: str) -> str:
    return (STREAMS / RECORDED / f"{scenario}.Dockerfile").read_text()


def split(name: str) -> tuple[str, str]:
    scenario, builder = name.rsplit("_", 1)
    return scenario, builder


def parse_chunks(name: str, chunks: list[bytes], **finish: object) -> list[Event]:
    """The recording's events, fed as ``chunks`` through iter_documents to the parser of its builder."""
    scenario, builder = split(name)
    parser: ClassicParser | BuildKitParser
    if builder == "classic":
        parser = ClassicParser(clock=FakeClock())
    else:
        parser = BuildKitParser(clock=FakeClock(), dockerfile=dockerfile(scenario))
    events: list[Event] = []
    for doc in iter_documents(chunks):
        events += parser.feed(doc)
    events += parser.finish(**finish)  # type: ignore[arg-type]
    return events


def finish_args(name: str) -> dict[str, object]:
    """How the app would finish each recording: the cancel scenario was cancelled by us."""
    return {"cancelled": True} if split(name)[0] == "cancel" else {}


@functools.cache
def _events(name: str) -> tuple[Event, ...]:
    return tuple(parse_chunks(name, [raw(name, RECORDED)], **finish_args(name)))


def events_of(name: str) -> list[Event]:
    return list(_events(name))


def step(events: list[Event], index: int) -> Step:
    (found,) = [s for s in final_steps(events) if s.index == index]
    return found


def interval(s: Step) -> tuple[float, float]:
    """The step's [started_at, finished_at]; both must be known."""
    assert s.started_at is not None and s.finished_at is not None, s
    return s.started_at, s.finished_at


def engine_image_id(name: str) -> str:
    """The image the engine said it made: the last classic aux ID, BuildKit's moby.image.id."""
    ids = [
        d["aux"]["ID"]
        for d in docs(name, RECORDED)
        if isinstance(d.get("aux"), dict) and d.get("id") in (None, "moby.image.id")
    ]
    assert ids, f"{name}: the engine named no image"
    return ids[-1]


def split_at_random(data: bytes, rng: random.Random) -> list[bytes]:
    """``data`` cut at 3 random points in every 64 KiB of it."""
    window = 64 * 1024
    cuts: set[int] = set()
    for start in range(0, len(data), window):
        cuts.update(rng.sample(range(max(1, start), min(start + window, len(data))), 3))
    ordered = sorted(cuts)
    return [data[a:b] for a, b in zip([0, *ordered], [*ordered, len(data)], strict=True)]


# --------------------------------------------------------------------------------------------------
# The recordings themselves
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_is_a_raw_engine_body_of_its_builder(name: str) -> None:
    _, builder = split(name)
    data = raw(name, RECORDED)
    assert data.endswith(b"}\r\n"), "the engine ends every document with CRLF"
    documents = docs(name, RECORDED)
    assert list(iter_documents([data])) == documents
    is_buildkit = any(d.get("id") == "moby.buildkit.trace" for d in documents)
    assert is_buildkit == (builder == "buildkit")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_dockerfile_starts_from_scratch_with_busybox(scenario: str) -> None:
    assert dockerfile(scenario).startswith(f"FROM scratch\n{COPY_BUSYBOX}\n{INSTALL}\n")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_both_builders_put_each_step_in_the_same_place_stage_and_wording(scenario: str) -> None:
    classic = {s.index: (s.stage, s.instruction) for s in final_steps(events_of(f"{scenario}_classic"))}
    buildkit = {s.index: (s.stage, s.instruction) for s in final_steps(events_of(f"{scenario}_buildkit"))}
    assert buildkit, "BuildKit reported steps"
    assert {i: classic[i] for i in buildkit} == buildkit


# --------------------------------------------------------------------------------------------------
# parallel: stage 0 and stage "right" each sleep 1 s, stage "final" copies from both
# --------------------------------------------------------------------------------------------------


def test_parallel_buildkit_steps() -> None:
    # The "right" stage's COPY busybox and RUN --install are the same operations as stage 0's: BuildKit
    # merges identical vertexes, runs them once and reports them once, under stage 0's label. So the
    # "right" stage shows only its own step (8); steps 6 and 7 never appear. FROM scratch makes no vertex.
    assert table(events_of("parallel_buildkit")) == [
        (2, "0", COPY_BUSYBOX, BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        (4, "0", SLEEP_LEFT, BUILT, False),
        (8, "right", SLEEP_RIGHT, BUILT, False),
        (10, "final", "COPY --from=0 /left /left", BUILT, False),
        (11, "final", "COPY --from=right /right /right", BUILT, False),
    ]
    assert result(events_of("parallel_buildkit")) == BuildResult(
        image_id=engine_image_id("parallel_buildkit"), error=None
    )


def test_parallel_buildkit_sleeping_steps_overlap_in_server_time_each_in_its_own_stage() -> None:
    events = events_of("parallel_buildkit")
    left, right = step(events, 4), step(events, 8)
    assert (left.stage, right.stage) == ("0", "right")
    (left_start, left_end), (right_start, right_end) = interval(left), interval(right)
    for start, end in ((left_start, left_end), (right_start, right_end)):
        assert start > 1.7e9, "the engine's own clock (UNIX seconds), not the parser's"
        assert end - start >= 1.0, "each slept 1 s"
    assert left_start < right_end and right_start < left_end
    assert min(left_end, right_end) - max(left_start, right_start) >= 1.0, "they slept at the same time"


def test_parallel_buildkit_shows_both_sleeping_steps_running_at_once() -> None:
    status: dict[int, StepStatus] = {}
    both = False
    for e in events_of("parallel_buildkit"):
        if isinstance(e, StepChanged):
            status[e.step.index] = e.step.status
            both = both or (status.get(4) is RUNNING and status.get(8) is RUNNING)
    assert both, "the UI shows both stages working at the same time"


def test_parallel_buildkit_final_copies_wait_only_for_the_stage_they_copy_from() -> None:
    events = events_of("parallel_buildkit")
    left, right, copy_left, copy_right = (interval(step(events, i)) for i in (4, 8, 10, 11))
    assert copy_left[0] >= left[1]
    assert copy_right[0] >= right[1]
    # What the recording shows: the copy from stage 0 began before "right" had finished sleeping.
    assert copy_left[0] < right[1]


def test_parallel_classic_builds_every_stage_one_after_the_other() -> None:
    events = events_of("parallel_classic")
    assert table(events) == [
        (1, "0", "FROM scratch", BUILT, None),
        (2, "0", COPY_BUSYBOX, BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        (4, "0", SLEEP_LEFT, BUILT, False),
        (5, "right", "FROM scratch AS right", BUILT, None),
        (6, "right", COPY_BUSYBOX, BUILT, False),
        (7, "right", INSTALL, BUILT, False),
        (8, "right", SLEEP_RIGHT, BUILT, False),
        (9, "final", "FROM scratch AS final", BUILT, None),
        (10, "final", "COPY --from=0 /left /left", BUILT, False),
        (11, "final", "COPY --from=right /right /right", BUILT, False),
        (12, "final", LABEL, BUILT, False),
    ]
    steps = final_steps(events)
    for before, after in zip(steps, steps[1:], strict=False):
        assert interval(before)[1] <= interval(after)[0]
    running: set[int] = set()
    for e in events:
        if isinstance(e, StepChanged):
            if e.step.status is RUNNING:
                running.add(e.step.index)
            else:
                running.discard(e.step.index)
            assert len(running) <= 1, "never two steps at once"
    assert result(events) == BuildResult(image_id=engine_image_id("parallel_classic"), error=None)


# --------------------------------------------------------------------------------------------------
# large_log: one RUN printing 5,000 numbered stdout lines and 5 stderr lines
# --------------------------------------------------------------------------------------------------

STDOUT_LINES = [("stdout", f"stdout line {i} of 5000") for i in range(1, 5001)]
STDERR_LINES = [("stderr", f"stderr line at {i}") for i in (1, 1000, 2500, 4000, 5000)]


@pytest.mark.parametrize("builder", BUILDERS)
def test_large_log_every_stdout_line_arrives_in_order_on_its_step(builder: str) -> None:
    events = events_of(f"large_log_{builder}")
    printed = output(events, 4)
    assert [line for line in printed if line[0] == "stdout"] == STDOUT_LINES
    assert output(events) == printed, "no output lands on another step or on none"
    assert step(events, 4).instruction == LARGE_LOG
    assert step(events, 4).status is BUILT


@pytest.mark.parametrize("builder", BUILDERS)
def test_large_log_stderr_lines_are_marked_stderr(builder: str) -> None:
    printed = output(events_of(f"large_log_{builder}"), 4)
    assert [line for line in printed if line[0] == "stderr"] == STDERR_LINES
    assert len(printed) == 5005


@pytest.mark.parametrize("builder", BUILDERS)
def test_large_log_the_step_ends_after_its_last_output_line(builder: str) -> None:
    events = events_of(f"large_log_{builder}")
    last_output = max(i for i, e in enumerate(events) if isinstance(e, LogLine) and e.stream == "stdout")
    ended = min(
        i
        for i, e in enumerate(events)
        if isinstance(e, StepChanged) and e.step.index == 4 and e.step.status is BUILT
    )
    assert last_output < ended
    assert result(events) == BuildResult(image_id=engine_image_id(f"large_log_{builder}"), error=None)


def test_large_log_classic_recording_cuts_lines_across_engine_writes() -> None:
    # What makes the classic recording a test of line joining: the engine writes stdout in pipe-sized
    # pieces that end mid-line ("...stdou" + "t line 176 of 5000...").
    pieces = [
        d["stream"] for d in docs("large_log_classic", RECORDED) if "stdout line" in d.get("stream", "")
    ]
    assert sum(not p.endswith("\n") for p in pieces) >= 3  # 5 in this recording


# --------------------------------------------------------------------------------------------------
# error_multistage: the second stage fails in a RUN that wrote stdout and stderr first
# --------------------------------------------------------------------------------------------------

FAILING_OUTPUT = [
    ("stdout", "checking the input"),
    ("stderr", "warning: /input is missing"),
    ("stderr", "fatal: cannot continue"),
]


def test_error_multistage_classic_steps() -> None:
    assert table(events_of("error_multistage_classic")) == [
        (1, "0", "FROM scratch", BUILT, None),
        (2, "0", COPY_BUSYBOX, BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        (4, "0", "RUN echo first stage > /first", BUILT, False),
        (5, "second", "FROM scratch AS second", BUILT, None),
        (6, "second", "COPY --from=0 /bin/busybox /bin/busybox", BUILT, False),
        (7, "second", INSTALL, BUILT, False),
        (8, "second", FAILING, FAILED, False),
    ]


def test_error_multistage_buildkit_steps() -> None:
    # With nocache=1 the engine still reported the second stage's first two vertexes cached (started ==
    # completed, cached=true): the parser shows what the engine said.
    assert table(events_of("error_multistage_buildkit")) == [
        (2, "0", COPY_BUSYBOX, BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        (4, "0", "RUN echo first stage > /first", BUILT, False),
        (6, "second", "COPY --from=0 /bin/busybox /bin/busybox", CACHED, True),
        (7, "second", INSTALL, CACHED, True),
        (8, "second", FAILING, FAILED, False),
    ]


@pytest.mark.parametrize("builder", BUILDERS)
def test_error_multistage_failing_step_has_the_engines_error_and_its_output(builder: str) -> None:
    name = f"error_multistage_{builder}"
    events = events_of(name)
    failed = step(events, 8)
    assert (failed.stage, failed.status, failed.error) == ("second", FAILED, ERRORS[builder])
    started, finished = interval(failed)
    assert finished >= started
    assert output(events, 8) == FAILING_OUTPUT
    assert output(events) == FAILING_OUTPUT, "the other steps printed nothing"
    assert [s.index for s in final_steps(events) if s.status is FAILED] == [8]
    engine_error = [d["errorDetail"]["message"] for d in docs(name, RECORDED) if "errorDetail" in d]
    assert engine_error == [ERRORS[builder]]


@pytest.mark.parametrize("builder", BUILDERS)
def test_error_multistage_build_has_the_error_and_no_image(builder: str) -> None:
    events = events_of(f"error_multistage_{builder}")
    assert result(events) == BuildResult(image_id=None, error=ERRORS[builder])
    assert ("system", ERRORS[builder]) in lines(events), "the error is in the log too"


def test_error_multistage_classic_has_no_image_although_the_first_stage_made_one() -> None:
    stage_images = [d for d in docs("error_multistage_classic", RECORDED) if isinstance(d.get("aux"), dict)]
    assert len(stage_images) == 1
    assert result(events_of("error_multistage_classic")).image_id is None


# --------------------------------------------------------------------------------------------------
# cancel: ticks every 0.5 s, stopped ~2 s in (classic: response closed; BuildKit: /build/cancel)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", BUILDERS)
def test_cancel_leaves_the_running_step_cancelled_with_its_ticks_and_no_image(builder: str) -> None:
    events = events_of(f"cancel_{builder}")  # finished with cancelled=True
    ticking = step(events, 4)
    assert (ticking.stage, ticking.instruction, ticking.status, ticking.error) == (
        "0",
        TICKS,
        CANCELLED,
        None,
    )
    ticks = [("stdout", f"tick {i}") for i in range(1, TICKS_BEFORE_CANCEL[builder] + 1)]
    assert output(events, 4) == ticks
    assert output(events) == ticks
    assert [s.status for s in final_steps(events) if s.index != 4] == [BUILT] * (
        3 if builder == "classic" else 2
    )
    assert result(events) == BuildResult(image_id=None, error=None)


def test_cancel_classic_stream_just_stops_mid_run() -> None:
    last = docs("cancel_classic", RECORDED)[-1]
    assert last == {"stream": f"tick {TICKS_BEFORE_CANCEL['classic']}\n"}, "no error, no image: we hung up"
    assert step(events_of("cancel_classic"), 4).finished_at is not None


def test_cancel_buildkit_step_ends_at_the_engines_time_of_the_cancel() -> None:
    documents = docs("cancel_buildkit", RECORDED)
    assert documents[-1]["errorDetail"] == {"message": "context canceled"}
    ticking = step(events_of("cancel_buildkit"), 4)
    assert ticking.duration_s is not None
    assert 1.5 <= ticking.duration_s <= 5.0, "stopped about 2 s after it began ticking"


# --------------------------------------------------------------------------------------------------
# target: three stages, built with target=middle
# --------------------------------------------------------------------------------------------------


def test_target_classic_builds_the_stages_up_to_the_target_only() -> None:
    assert table(events_of("target_classic")) == [
        (1, "0", "FROM scratch", BUILT, None),
        (2, "0", COPY_BUSYBOX, BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        (4, "0", "RUN echo base > /base", BUILT, False),
        (5, "middle", "FROM scratch AS middle", BUILT, None),
        (6, "middle", "COPY --from=0 / /", BUILT, False),
        (7, "middle", "RUN echo middle > /middle", BUILT, False),
        (8, "middle", LABEL, BUILT, False),  # the classic builder counted 8 steps: "Step 8/8"
    ]


def test_target_buildkit_builds_the_needed_stages_only() -> None:
    assert table(events_of("target_buildkit")) == [
        (2, "0", COPY_BUSYBOX, BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        (4, "0", "RUN echo base > /base", BUILT, False),
        (6, "middle", "COPY --from=0 / /", BUILT, False),
        (7, "middle", "RUN echo middle > /middle", BUILT, False),
    ]


@pytest.mark.parametrize("builder", BUILDERS)
def test_target_no_step_of_the_stage_after_the_target_appears(builder: str) -> None:
    events = events_of(f"target_{builder}")
    assert {s.stage for s in final_steps(events)} == {"0", "middle"}
    assert not any("last" in text for _, text in lines(events))
    assert result(events) == BuildResult(image_id=engine_image_id(f"target_{builder}"), error=None)


# --------------------------------------------------------------------------------------------------
# Any chunking gives the same events
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_split_at_random_points_gives_identical_events(name: str, seed: int) -> None:
    data = raw(name, RECORDED)
    chunks = split_at_random(data, random.Random(f"{name}-{seed}"))
    assert b"".join(chunks) == data
    assert len(chunks) == 3 * math.ceil(len(data) / (64 * 1024)) + 1
    assert parse_chunks(name, chunks, **finish_args(name)) == events_of(name)
