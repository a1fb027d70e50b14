"""BuildKit's stream -> step events, on streams recorded from a real engine.

The recordings in tests/fixtures/streams/bk*.jsonl are raw `POST /build?version=2` bodies from Docker
Engine 20.10.24 (API 1.41), copied unchanged from shared/engine-streams/, and the Dockerfiles that made them
are copied under tests/fixtures/streams/contexts/. Hand-made trace messages below say so where they appear;
they are encoded with the same protobuf module the parser decodes with.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from webapp.builds import buildkit_trace_pb2
from webapp.builds.buildkit import BuildKitParser, parse_dockerfile
from webapp.builds.steps import (
    STREAM_ENDED_ERROR,
    BuildResult,
    Event,
    Step,
    StepChanged,
    StepStatus,
    iter_documents,
)

from .streams import (
    STREAMS,
    FakeClock,
    chunked,
    docs,
    final_steps,
    lines,
    output,
    random_chunks,
    raw,
    result,
    table,
)

CONTEXTS = STREAMS / "contexts"
RECORDINGS = [
    "bk1_run1",
    "bk1_run2",
    "bk_err",
    "bk_cancel",
    "bk_cancel_b",
    "bk_ign",
    "bk_opts",
    "bk_mount",
    "bk_syntax",
    "bk_fromlocal_0",
    "bk_fromlocal_1",
    "bk_partial",
]
#: The Dockerfile each recording was built from.
DOCKERFILES = {
    "bk1_run1": "ctx1/Dockerfile",
    "bk1_run2": "ctx1/Dockerfile",
    "bk_err": "ctx3/docker/Build.dockerfile",
    "bk_opts": "ctx3/docker/Build.dockerfile",
    "bk_cancel": "ctx4/Dockerfile",
    "bk_cancel_b": "ctx4/Dockerfile",
    "bk_ign": "ctx2/Dockerfile",
    "bk_mount": "ctx5/Dockerfile",
    "bk_syntax": "ctx6/Dockerfile",
    "bk_fromlocal_0": "ctx7/Dockerfile",
    "bk_fromlocal_1": "ctx7/Dockerfile",
    "bk_partial": "ctx8/Dockerfile",
}

PENDING, RUNNING, CACHED, BUILT = StepStatus.PENDING, StepStatus.RUNNING, StepStatus.CACHED, StepStatus.BUILT
FAILED, CANCELLED = StepStatus.FAILED, StepStatus.CANCELLED

ERR_MESSAGE = "executor failed running [/bin/sh -c echo about to fail; echo oops >&2; exit 3]: exit code: 3"
TICKS = "RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo tick $i; sleep 1; done"
INSTALL = 'RUN ["/bin/busybox","--install","-s","/bin"]'
LOST = "lost connection to the Docker engine"
NO_HOST = "dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host"


def dockerfile(name: str) -> str:
    return (CONTEXTS / DOCKERFILES[name]).read_text()


def parse(documents: list[dict], *, dockerfile: str | None = None, **finish: object) -> list[Event]:
    parser = BuildKitParser(clock=FakeClock(), dockerfile=dockerfile)
    events: list[Event] = []
    for doc in documents:
        events += parser.feed(doc)
    events += parser.finish(**finish)  # type: ignore[arg-type]
    return events


def feed_only(documents: list[dict], *, dockerfile: str | None = None) -> list[Event]:
    """The events of feeding ``documents``, without finish(): steps as the stream left them."""
    parser = BuildKitParser(clock=FakeClock(), dockerfile=dockerfile)
    return [event for doc in documents for event in parser.feed(doc)]


def parse_bytes(chunks: list[bytes], **kwargs: object) -> list[Event]:
    return parse(list(iter_documents(chunks)), **kwargs)  # type: ignore[arg-type]


def changes(events: list[Event], index: int) -> list[Step]:
    return [e.step for e in events if isinstance(e, StepChanged) and e.step.index == index]


# -- hand-made trace messages ------------------------------------------------------------------------

pb: Any = buildkit_trace_pb2  # its classes are made at import time, unseen by type checkers


def stamp(seconds: float) -> Timestamp:
    whole = int(seconds)
    return Timestamp(seconds=whole, nanos=round((seconds - whole) * 1e9))


def vertex(
    digest: str,
    name: str,
    *,
    started: float | None = None,
    completed: float | None = None,
    cached: bool = False,
    error: str = "",
) -> Any:
    v = pb.Vertex(digest=f"sha256:{digest}", name=name, cached=cached, error=error)
    if started is not None:
        v.started.CopyFrom(stamp(started))
    if completed is not None:
        v.completed.CopyFrom(stamp(completed))
    return v


def log(digest: str, msg: bytes, *, stream: int = 1, at: float = 0.0) -> Any:
    return pb.VertexLog(vertex=f"sha256:{digest}", msg=msg, stream=stream, timestamp=stamp(at))


def status(digest: str, ident: str, current: int, total: int = 0) -> Any:
    return pb.VertexStatus(vertex=f"sha256:{digest}", ID=ident, current=current, total=total)


def trace(
    vertexes: tuple[Any, ...] = (),
    logs: tuple[Any, ...] = (),
    statuses: tuple[Any, ...] = (),
) -> dict:
    message = pb.StatusResponse(vertexes=vertexes, logs=logs, statuses=statuses)
    return {"id": "moby.buildkit.trace", "aux": base64.b64encode(message.SerializeToString()).decode()}


IMAGE = {"id": "moby.image.id", "aux": {"ID": "sha256:feedface"}}


# --------------------------------------------------------------------------------------------------
# The recordings
# --------------------------------------------------------------------------------------------------

BK1_STEPS = [
    (1, "0", "COPY busybox /bin/busybox", CACHED, True),
    (2, "0", INSTALL, CACHED, True),
    (3, "0", 'RUN echo "hi world" > /greeting && sleep 1', BUILT, False),
    (4, "0", "RUN echo line1; echo line2 >&2; sleep 1; echo line3", BUILT, False),
    (5, "second", "COPY --from=0 /greeting /g", BUILT, False),
]


def test_two_stage_build_reports_each_vertex_step_with_stage_label_text_and_cache_flag() -> None:
    # The "first" build found its first two layers in the engine's cache from earlier builds: the
    # recording says cached=true for them, so they are CACHED, not BUILT. FROM scratch, ARG and LABEL
    # make no vertex under BuildKit and so no step; the RUN shows the build arg expanded (GREETING=hi).
    assert table(parse(docs("bk1_run1"))) == BK1_STEPS


def test_two_stage_build_with_its_dockerfile_gets_dockerfile_positions_and_text_as_written() -> None:
    events = parse(docs("bk1_run1"), dockerfile=dockerfile("bk1_run1"))
    assert table(events) == [
        (2, "0", "COPY busybox /bin/busybox", CACHED, True),
        (3, "0", INSTALL, CACHED, True),
        (6, "0", 'RUN echo "$GREETING world" > /greeting && sleep 1', BUILT, False),
        (7, "0", "RUN echo line1; echo line2 >&2; sleep 1; echo line3", BUILT, False),
        (9, "second", "COPY --from=0 /greeting /g", BUILT, False),
    ]


def test_two_stage_build_result_is_the_image_id() -> None:
    assert result(parse(docs("bk1_run1"))) == BuildResult(
        image_id="sha256:c98c4e34710d06d4e1261e9958daa363e47e8b2a2d1748b0533a60b7b021db3a", error=None
    )


def test_steps_carry_the_engines_own_timestamps_in_order() -> None:
    steps = final_steps(parse(docs("bk1_run1")))
    third = steps[2]
    assert third.started_at == pytest.approx(1795830019.190716, abs=1e-6)
    assert third.finished_at == pytest.approx(1795830020.611051, abs=1e-6)
    assert third.duration_s == pytest.approx(1.420335, abs=1e-6)
    for step in steps:
        assert step.started_at is not None and step.finished_at is not None
        assert step.started_at <= step.finished_at
    for before, after in zip(steps, steps[1:], strict=False):
        assert before.started_at <= after.started_at  # type: ignore[operator]
    for before, after in zip(steps[2:], steps[3:], strict=False):  # built one after the other
        assert before.finished_at <= after.started_at  # type: ignore[operator]


def test_steps_are_announced_pending_then_change_only_when_something_visible_changes() -> None:
    events = parse(docs("bk1_run1"))
    assert [s.status for s in changes(events, 3)] == [PENDING, RUNNING, BUILT]
    assert [s.status for s in changes(events, 1)] == [PENDING, CACHED]
    # Two log-only messages and the re-sent vertex state do not repeat step 4.
    assert [s.status for s in changes(events, 4)] == [PENDING, RUNNING, BUILT]
    assert len({id(s) for s in changes(events, 4)}) == 3, "snapshots, not one shared object"


def test_repeating_a_trace_message_gives_no_new_events() -> None:
    parser = BuildKitParser(clock=FakeClock())
    documents = docs("bk1_run1")
    for doc in documents[:11]:
        parser.feed(doc)
    # Document 10 starts step 4; the engine re-sends a vertex's state, and that alone changes nothing.
    assert parser.feed(documents[10]) == []
    assert parser.feed(documents[9]) == []


def test_stdout_and_stderr_lines_of_a_step_are_marked_and_in_order() -> None:
    events = parse(docs("bk1_run1"))
    assert lines(events, step=4) == [
        ("system", "[stage-0 4/4] RUN echo line1; echo line2 >&2; sleep 1; echo line3"),
        ("stdout", "line1"),
        ("stderr", "line2"),
        ("stdout", "line3"),
        ("system", "DONE 1.44 s"),
    ]


def test_internal_vertexes_are_one_system_line_each_and_never_steps() -> None:
    events = parse(docs("bk1_run1"))
    assert lines(events, step=None) == [
        ("system", "[internal] load remote build context — 0.02 s"),
        ("system", "copy /context / — 0.09 s"),
        ("system", "exporting to image — 0.03 s"),
        ("system", "Successfully tagged drres-bk:1"),
    ]


@pytest.mark.parametrize("name", RECORDINGS)
@pytest.mark.parametrize("with_dockerfile", [False, True])
def test_no_recorded_internal_vertex_becomes_a_step(name: str, with_dockerfile: bool) -> None:
    events = parse(docs(name), dockerfile=dockerfile(name) if with_dockerfile else None)
    for step in final_steps(events):
        assert step.instruction.split()[0] in {"FROM", "RUN", "COPY", "ADD", "WORKDIR"}, step
    internal = [t for s, t in lines(events, step=None) if s == "system"]
    assert all(not t.startswith("[") or t.startswith("[internal]") for t in internal)


def test_rebuild_marks_every_layer_step_cached() -> None:
    events = parse(docs("bk1_run2"))
    assert table(events) == [(i, stage, text, CACHED, True) for i, stage, text, _, _ in BK1_STEPS]
    assert [lines(events, step=i)[-1] for i in range(1, 6)] == [("system", "CACHED")] * 5


def test_image_id_sent_before_the_last_trace_message_still_makes_the_result() -> None:
    documents = docs("bk1_run2")
    image_at = next(i for i, d in enumerate(documents) if d.get("id") == "moby.image.id")
    assert any(d.get("id") == "moby.buildkit.trace" for d in documents[image_at:]), "the recording shows it"
    assert result(parse(documents)) == BuildResult(
        image_id="sha256:c98c4e34710d06d4e1261e9958daa363e47e8b2a2d1748b0533a60b7b021db3a", error=None
    )


def test_failing_run_is_failed_with_the_engines_error_and_its_stderr_is_marked() -> None:
    events = parse(docs("bk_err"), dockerfile=dockerfile("bk_err"))
    assert table(events) == [
        (2, "base", "COPY busybox /bin/busybox", CACHED, True),
        (3, "base", INSTALL, CACHED, True),
        (8, "bad", "RUN echo about to fail; echo oops >&2; exit 3", FAILED, False),
    ]
    failed = final_steps(events)[-1]
    assert failed.error == ERR_MESSAGE
    assert failed.finished_at == pytest.approx(1795830032.519232, abs=1e-6)
    assert lines(events, step=8) == [
        ("system", "[bad 1/1] RUN echo about to fail; echo oops >&2; exit 3"),
        ("stdout", "about to fail"),
        ("stderr", "oops"),
        ("system", f"ERROR: {ERR_MESSAGE}"),
    ]
    assert lines(events, step=None)[-1] == ("system", ERR_MESSAGE)
    assert result(events) == BuildResult(image_id=None, error=ERR_MESSAGE)


def test_failing_run_without_a_dockerfile_is_numbered_by_stage_appearance() -> None:
    assert [(s.index, s.stage, s.status) for s in final_steps(parse(docs("bk_err")))] == [
        (1, "base", CACHED),
        (2, "base", CACHED),
        (3, "bad", FAILED),
    ]


@pytest.mark.parametrize("name", ["bk_cancel", "bk_cancel_b"])
def test_cancelled_build_marks_the_running_step_cancelled_and_has_no_image(name: str) -> None:
    events = parse(docs(name), dockerfile=dockerfile(name), cancelled=True)
    assert table(events) == [
        (2, "0", "COPY busybox /bin/busybox", BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        # bk_cancel: the engine failed the vertex ("context canceled"), so its cache flag is known.
        (4, "0", TICKS, CANCELLED, False if name == "bk_cancel" else None),
    ]
    last = final_steps(events)[-1]
    assert (last.index, last.status, last.error) == (4, CANCELLED, None)
    assert last.finished_at is not None and last.started_at is not None
    assert last.finished_at >= last.started_at
    ticks = 3 if name == "bk_cancel" else 5
    assert output(events, 4) == [("stdout", f"tick {i}") for i in range(1, ticks + 1)]
    assert result(events) == BuildResult(image_id=None, error=None)


def test_cancel_through_the_api_shows_context_canceled_which_is_no_error_when_we_cancelled() -> None:
    documents = docs("bk_cancel")
    assert documents[-1]["errorDetail"] == {"message": "context canceled"}
    events = parse(documents, cancelled=True)
    statuses = [s.status for s in changes(events, 3)]
    assert statuses[-2:] == [FAILED, CANCELLED], "failed as the engine said, then cancelled at finish()"
    assert final_steps(events)[-1].finished_at == pytest.approx(1795830049.717442, abs=1e-6)


def test_context_canceled_without_our_cancel_stays_a_failure() -> None:
    events = parse(docs("bk_cancel"))
    last = final_steps(events)[-1]
    assert last.status is FAILED and last.error is not None and "context canceled" in last.error
    assert result(events) == BuildResult(image_id=None, error="context canceled")


def test_stream_cut_mid_run_fails_the_running_step_at_the_last_engine_time() -> None:
    events = parse(docs("bk_cancel_b"))
    last = final_steps(events)[-1]
    assert (last.index, last.status, last.error) == (3, FAILED, STREAM_ENDED_ERROR)
    assert last.finished_at == pytest.approx(1795830101.744183, abs=1e-6), "the last log line's time"
    assert result(events) == BuildResult(image_id=None, error=STREAM_ENDED_ERROR)


def test_lost_connection_fails_the_running_step_with_that_error() -> None:
    events = parse(docs("bk_cancel_b"), error=LOST)
    last = final_steps(events)[-1]
    assert (last.status, last.error) == (FAILED, LOST)
    assert lines(events, step=3)[-1] == ("system", f"ERROR: {LOST}")
    assert result(events) == BuildResult(image_id=None, error=LOST)


def test_context_copy_with_a_dockerignore_the_engine_did_not_apply() -> None:
    events = parse(docs("bk_ign"), dockerfile=dockerfile("bk_ign"))
    assert table(events) == [
        (2, "0", "COPY busybox /bin/busybox", BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        (4, "0", "COPY . /ctx", BUILT, False),
        (5, "0", "RUN find /ctx | sort", BUILT, False),
    ]
    found = [t for _, t in output(events, 5)]
    assert "/ctx/secret.txt" in found and "/ctx/x.log" in found, "BuildKit ignored .dockerignore"


def test_target_builds_only_the_stages_it_needs() -> None:
    events = parse(docs("bk_opts"), dockerfile=dockerfile("bk_opts"))
    assert table(events) == [
        (2, "base", "COPY busybox /bin/busybox", BUILT, False),
        (3, "base", INSTALL, BUILT, False),
        (6, "ok", 'RUN echo "built for $WHO on $(uname -m)" > /who', BUILT, False),
    ]
    assert result(events).image_id == (
        "sha256:f8b3285f281e7987c9b4bb328b6b65c26ea746db6be685934ca9645eb7458717"
    )
    # Without the Dockerfile the label's text shows the build arg the engine used.
    assert final_steps(parse(docs("bk_opts")))[-1].instruction == (
        'RUN echo "built for me on $(uname -m)" > /who'
    )


def test_cache_mount_builds_and_secret_mount_fails_without_a_session() -> None:
    events = parse(docs("bk_mount"), dockerfile=dockerfile("bk_mount"))
    assert table(events) == [
        (2, "0", "COPY busybox /bin/busybox", BUILT, False),
        (3, "0", INSTALL, BUILT, False),
        (4, "0", "RUN --mount=type=cache,target=/cache echo x >> /cache/f && wc -l /cache/f", BUILT, False),
        (5, "0", 'RUN --mount=type=secret,id=tok cat /run/secrets/tok || echo "no secret"', FAILED, False),
    ]
    assert output(events, 4) == [("stdout", "1 /cache/f")]
    assert final_steps(events)[-1].error == "no active sessions"
    assert result(events) == BuildResult(image_id=None, error="no active sessions")


def test_single_stage_build_labelled_stage_0_because_of_its_cache_mount_still_maps() -> None:
    # A cache mount adds an implicit second stage inside BuildKit, so this single-stage build's vertexes
    # read "[stage-0 N/4]" where the other single-stage recordings read "[N/M]".
    names = [t for s, t in lines(parse(docs("bk_mount"))) if t.startswith("[stage-0 ")]
    assert len(names) == 4
    assert [s.index for s in final_steps(parse(docs("bk_mount")))] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("name", "failed_vertex", "error_start"),
    [
        ("bk_syntax", "resolve image config for docker.io/docker/dockerfile:1", "failed to solve with"),
        ("bk_fromlocal_1", "[internal] load metadata for docker.io/library/drres-bk:ok", "failed to solve"),
    ],
)
def test_failure_before_any_step_sets_the_build_error_and_makes_no_step(
    name: str, failed_vertex: str, error_start: str
) -> None:
    events = parse(docs(name), dockerfile=dockerfile(name))
    assert final_steps(events) == []
    outcome = result(events)
    assert outcome.image_id is None
    assert outcome.error is not None and outcome.error.startswith(error_start) and NO_HOST in outcome.error
    system = [t for _, t in lines(events, step=None)]
    assert [t for t in system if t.startswith(f"{failed_vertex} — ERROR: ")] != []
    assert system[-1] == outcome.error


def test_from_a_local_image_is_a_built_step_without_a_cache_decision() -> None:
    documents = docs("bk_fromlocal_0")
    events = parse(documents, dockerfile=dockerfile("bk_fromlocal_0"))
    assert table(events) == [
        (1, "0", "FROM drres-bk:ok", BUILT, None),
        (2, "0", "RUN cat /who", BUILT, False),
    ]
    assert output(events, 2) == [("stdout", "built for me on x86_64")]
    # Without the Dockerfile: BuildKit's normalised image name. The engine listed [2/2] before [1/2].
    assert table(parse(documents)) == [
        (1, "0", "FROM docker.io/library/drres-bk:ok", BUILT, None),
        (2, "0", "RUN cat /who", BUILT, False),
    ]
    first = [e.step.index for e in events if isinstance(e, StepChanged)][:2]
    assert first == [1, 2], "steps of one message come in Dockerfile order"


def test_output_split_mid_line_across_log_messages_is_joined() -> None:
    events = parse(docs("bk_partial"), dockerfile=dockerfile("bk_partial"))
    assert output(events, 4) == [
        ("stdout", "abcdef"),
        ("stdout", "ghi"),
        ("stdout", "\x1b[32mgreen\x1b[0m"),
    ]
    assert final_steps(events)[-1].instruction == (
        'RUN printf "abc"; sleep 1; printf "def\\nghi\\n"; printf "\\033[32mgreen\\033[0m\\n"'
    )


# --------------------------------------------------------------------------------------------------
# Bytes -> documents -> events
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_documents_from_the_raw_body_match_the_recorded_lines(name: str) -> None:
    assert list(iter_documents([raw(name)])) == docs(name)


@pytest.mark.parametrize("size", range(1, 8))
@pytest.mark.parametrize("name", RECORDINGS)
def test_rechunked_body_gives_the_same_events_at_every_small_split_size(name: str, size: int) -> None:
    expected = parse(docs(name), dockerfile=dockerfile(name))
    assert parse_bytes(chunked(raw(name), size), dockerfile=dockerfile(name)) == expected


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("name", RECORDINGS)
def test_body_split_at_random_points_gives_the_same_events(name: str, seed: int) -> None:
    rng = random.Random(f"{name}-{seed}")
    assert parse_bytes(random_chunks(raw(name), rng, max_cuts=80)) == parse(docs(name))


# --------------------------------------------------------------------------------------------------
# Hand-made trace messages for what the recordings do not show
# --------------------------------------------------------------------------------------------------

RUN_X = "[1/1] RUN x"


def test_invalid_utf8_in_output_becomes_replacement_characters() -> None:
    events = parse(
        [
            trace((vertex("a", RUN_X, started=10.0),)),
            trace(logs=(log("a", b"bad \xff\xfe bytes \xc3\n", at=10.5),)),
            trace((vertex("a", RUN_X, started=10.0, completed=11.0),)),
        ]
    )
    assert output(events, 1) == [("stdout", "bad \ufffd\ufffd bytes \ufffd")]


def test_multibyte_character_split_across_two_log_messages_survives() -> None:
    text = "héllo ✓ 日本 😀\n".encode()
    for cut in range(1, len(text)):
        events = parse(
            [
                trace((vertex("a", RUN_X, started=10.0),)),
                trace(logs=(log("a", text[:cut]),)),
                trace(logs=(log("a", text[cut:]),)),
                trace((vertex("a", RUN_X, started=10.0, completed=11.0),)),
            ]
        )
        assert output(events, 1) == [("stdout", "héllo ✓ 日本 😀")], cut


def test_stdout_and_stderr_are_cut_into_lines_separately() -> None:
    events = parse(
        [
            trace((vertex("a", RUN_X, started=10.0),)),
            trace(logs=(log("a", b"out-"), log("a", b"err-", stream=2), log("a", b"more\n"))),
            trace(logs=(log("a", b"tail\n", stream=2),)),
        ]
    )
    assert output(events, 1) == [("stdout", "out-more"), ("stderr", "err-tail")]


def test_unfinished_line_is_flushed_when_the_vertex_completes_in_the_same_message() -> None:
    events = parse(
        [
            trace((vertex("a", RUN_X, started=10.0),)),
            trace((vertex("a", RUN_X, started=10.0, completed=11.0),), logs=(log("a", b"no newline"),)),
        ]
    )
    assert lines(events, step=1) == [
        ("system", RUN_X),
        ("stdout", "no newline"),
        ("system", "DONE 1.00 s"),
    ]
    assert [s.status for s in changes(events, 1)] == [RUNNING, BUILT]


def test_unfinished_line_is_flushed_at_finish() -> None:
    events = parse(
        [trace((vertex("a", RUN_X, started=10.0),)), trace(logs=(log("a", b"tick 5", at=12.0),))],
        cancelled=True,
    )
    assert lines(events, step=1)[-1] == ("stdout", "tick 5")
    assert final_steps(events)[-1].status is CANCELLED


def test_vertex_that_starts_and_logs_in_one_message_has_its_label_before_its_output() -> None:
    events = parse([trace((vertex("a", RUN_X, started=10.0, completed=10.2),), logs=(log("a", b"hi\n"),))])
    assert lines(events, step=1) == [("system", RUN_X), ("stdout", "hi"), ("system", "DONE 0.20 s")]


INTERNAL_NAMES = [
    "[internal] load build definition from Dockerfile",
    "[internal] load .dockerignore",
    "[internal] load metadata for docker.io/library/alpine:3.19",
    "[auth] library/alpine:pull token for registry-1.docker.io",
    "[internal] load build context",
    "exporting to image",
]


def test_internal_vertexes_are_progress_lines_with_transfer_size_and_never_steps() -> None:
    vertexes = tuple(vertex(str(i), n) for i, n in enumerate(INTERNAL_NAMES))
    done = tuple(
        vertex(str(i), n, started=100.0, completed=100.08, cached=(i == 1))
        for i, n in enumerate(INTERNAL_NAMES)
    )
    events = parse(
        [
            trace(vertexes),
            trace(statuses=(status("4", "transferring context:", 3_000_000),)),
            trace(done, statuses=(status("4", "transferring context:", 6_200_000),)),
            trace(done),  # re-sent: no second line
            IMAGE,
        ]
    )
    assert final_steps(events) == []
    assert lines(events) == [
        ("system", "[internal] load build definition from Dockerfile — 0.08 s"),
        ("system", "[internal] load .dockerignore — cached"),
        ("system", "[internal] load metadata for docker.io/library/alpine:3.19 — 0.08 s"),
        ("system", "[auth] library/alpine:pull token for registry-1.docker.io — 0.08 s"),
        ("system", "[internal] load build context — 6.2 MB in 0.08 s"),
        ("system", "exporting to image — 0.08 s"),
    ]
    assert result(events) == BuildResult(image_id="sha256:feedface", error=None)


def test_failing_internal_vertex_gives_one_error_line_and_is_the_error_without_error_detail() -> None:
    failed = vertex(
        "m", "[internal] load metadata for docker.io/library/nope", started=1.0, completed=2.0, error="boom"
    )
    events = parse([trace((failed,)), trace((failed,))])
    assert lines(events) == [("system", "[internal] load metadata for docker.io/library/nope — ERROR: boom")]
    assert result(events) == BuildResult(image_id=None, error="boom")


def test_platform_prefix_and_padded_step_numbers_are_read() -> None:
    events = feed_only(
        [
            trace(
                (
                    vertex("a", "[linux/amd64 build  2/12] RUN make", started=1.0),
                    vertex("b", "[linux/amd64 build 12/12] COPY a b"),
                    vertex("c", "[ 3/10] WORKDIR /app"),
                )
            )
        ]
    )
    assert [(s.index, s.stage, s.instruction, s.status) for s in final_steps(events)] == [
        (2, "build", "RUN make", RUNNING),
        (12, "build", "COPY a b", PENDING),
        (15, "0", "WORKDIR /app", PENDING),
    ]


def test_running_steps_become_cancelled_and_unstarted_ones_stay_pending_on_cancel() -> None:
    events = parse(
        [trace((vertex("a", "[1/2] RUN a", started=1.0), vertex("b", "[2/2] RUN b")))],
        cancelled=True,
    )
    assert [(s.index, s.status) for s in final_steps(events)] == [(1, CANCELLED), (2, PENDING)]
    assert result(events) == BuildResult(image_id=None, error=None)


def test_cancel_after_the_image_arrived_still_gives_no_image() -> None:
    events = parse([trace((vertex("a", RUN_X, started=1.0, completed=2.0),)), IMAGE], cancelled=True)
    assert result(events) == BuildResult(image_id=None, error=None)


def test_step_the_engine_never_closed_before_the_image_came_is_built() -> None:
    events = parse(
        [trace((vertex("a", RUN_X, started=1.0),)), trace(logs=(log("a", b"x\n", at=3.0),)), IMAGE]
    )
    step = final_steps(events)[-1]
    assert (step.status, step.finished_at) == (BUILT, 3.0)
    assert result(events) == BuildResult(image_id="sha256:feedface", error=None)


def test_a_step_buildkit_stopped_because_another_failed_is_cancelled_not_failed() -> None:
    canceled = "executor failed running [/bin/sh -c sleep 9]: exit code: 137: context canceled"
    events = parse(
        [
            trace(
                (
                    vertex("a", "[a 1/1] RUN sleep 9", started=1.0),
                    vertex("b", "[b 1/1] RUN false", started=1.0),
                )
            ),
            trace(
                (
                    vertex("b", "[b 1/1] RUN false", started=1.0, completed=2.0, error="exit code: 1"),
                    vertex("a", "[a 1/1] RUN sleep 9", started=1.0, completed=2.1, error=canceled),
                )
            ),
            {"errorDetail": {"message": "exit code: 1"}, "error": "exit code: 1"},
        ]
    )
    assert [(s.stage, s.status, s.error) for s in final_steps(events)] == [
        ("a", CANCELLED, None),
        ("b", FAILED, "exit code: 1"),
    ]
    assert result(events) == BuildResult(image_id=None, error="exit code: 1")


def test_stream_text_documents_are_system_lines_of_no_step() -> None:
    events = parse([{"stream": "hello\nworld\n"}, IMAGE])
    assert lines(events) == [("system", "hello"), ("system", "world")]


def test_unreadable_trace_messages_are_skipped() -> None:
    events = parse(
        [{"id": "moby.buildkit.trace", "aux": "%%% not base64"}, {"id": "moby.buildkit.trace", "aux": "/w=="}]
    )
    assert events == [BuildResult(image_id=None, error=STREAM_ENDED_ERROR)]


def test_finish_emits_the_result_exactly_once() -> None:
    parser = BuildKitParser(clock=FakeClock())
    for doc in docs("bk1_run1"):
        parser.feed(doc)
    assert [type(e) for e in parser.finish()] == [BuildResult]
    assert parser.finish() == []
    assert parser.feed({"stream": "late\n"}) == []


def test_step_to_dict_is_json_with_server_times() -> None:
    step = final_steps(parse(docs("bk1_run2")))[0]
    as_dict = step.to_dict()
    assert (as_dict["status"], as_dict["cached"], as_dict["duration_s"]) == ("cached", True, 0.0)
    json.dumps(as_dict)


# --------------------------------------------------------------------------------------------------
# The Dockerfile: positions across the whole file
# --------------------------------------------------------------------------------------------------

PARALLEL = """\
# syntax=docker/dockerfile:1
# escape=\\
ARG BASE=alpine:3.19

# the tools stage
FROM ${BASE} AS Tools
WORKDIR /src
ENV A=1
RUN apk add --no-cache \\
        make \\
# a comment inside the continuation
        gcc
COPY <<EOF /src/Makefile
all:
\techo hi
FROM nothing
EOF
FROM scratch
COPY --from=tools /src /src
RUN make
FROM busybox
ADD x /x
"""


def test_dockerfile_instructions_are_read_with_continuations_comments_directives_and_heredocs() -> None:
    assert [(i.index, i.keyword, i.stage, i.text) for i in parse_dockerfile(PARALLEL)] == [
        (1, "ARG", None, "ARG BASE=alpine:3.19"),
        (2, "FROM", 0, "FROM ${BASE} AS Tools"),
        (3, "WORKDIR", 0, "WORKDIR /src"),
        (4, "ENV", 0, "ENV A=1"),
        (5, "RUN", 0, "RUN apk add --no-cache         make         gcc"),
        (6, "COPY", 0, "COPY <<EOF /src/Makefile"),
        (7, "FROM", 1, "FROM scratch"),
        (8, "COPY", 1, "COPY --from=tools /src /src"),
        (9, "RUN", 1, "RUN make"),
        (10, "FROM", 2, "FROM busybox"),
        (11, "ADD", 2, "ADD x /x"),
    ]


def test_escape_directive_changes_the_continuation_character() -> None:
    text = "# escape=`\nFROM mcr.microsoft.com/windows\nRUN dir `\n  c:\\\n"
    assert [i.text for i in parse_dockerfile(text)] == ["FROM mcr.microsoft.com/windows", "RUN dir   c:\\"]


def test_multi_stage_numbering_restarting_per_stage_maps_to_dockerfile_positions() -> None:
    # Stages arrive in any order (parallel stages): the later stage's vertexes come first here.
    documents = [
        trace(
            (
                vertex("e", "[stage-2 2/2] ADD x /x"),
                vertex("d", "[stage-2 1/2] FROM docker.io/library/busybox:latest", started=5.0),
                vertex("c", "[stage-1 2/2] RUN make"),
                vertex("b", "[stage-1 1/2] COPY --from=tools /src /src"),
            )
        ),
        trace(
            (
                vertex("w", "[tools 1/4] FROM docker.io/library/alpine:3.19", started=1.0, completed=2.0),
                vertex("x", "[tools 2/4] WORKDIR /src", started=2.0, completed=2.0, cached=True),
                vertex("y", "[tools 3/4] RUN apk add --no-cache         make         gcc", started=2.0),
                vertex("z", "[tools 4/4] COPY <<EOF /src/Makefile"),
            )
        ),
    ]
    events = feed_only(documents, dockerfile=PARALLEL)
    assert [(s.index, s.stage, s.instruction, s.status, s.cached) for s in final_steps(events)] == [
        (2, "Tools", "FROM ${BASE} AS Tools", BUILT, None),
        (3, "Tools", "WORKDIR /src", CACHED, True),
        (5, "Tools", "RUN apk add --no-cache         make         gcc", RUNNING, None),
        (6, "Tools", "COPY <<EOF /src/Makefile", PENDING, None),
        (8, "1", "COPY --from=tools /src /src", PENDING, None),
        (9, "1", "RUN make", PENDING, None),
        (10, "2", "FROM busybox", RUNNING, None),
        (11, "2", "ADD x /x", PENDING, None),
    ]
    # Without the Dockerfile: stages numbered in order of appearance, each taking its M numbers.
    assert [(s.index, s.stage, s.instruction) for s in final_steps(feed_only(documents))] == [
        (1, "2", "FROM docker.io/library/busybox:latest"),
        (2, "2", "ADD x /x"),
        (3, "1", "COPY --from=tools /src /src"),
        (4, "1", "RUN make"),
        (5, "tools", "FROM docker.io/library/alpine:3.19"),
        (6, "tools", "WORKDIR /src"),
        (7, "tools", "RUN apk add --no-cache         make         gcc"),
        (8, "tools", "COPY <<EOF /src/Makefile"),
    ]


def test_vertex_that_does_not_fit_the_dockerfile_is_numbered_after_it() -> None:
    documents = [trace((vertex("a", "[1/2] COPY a b"), vertex("b", "[2/2] RUN c")))]
    events = parse(documents, dockerfile="FROM scratch\nCOPY a b\n")
    # The Dockerfile has no second step to build: [2/2] falls back to numbers past its 2 instructions.
    assert [(s.index, s.instruction) for s in final_steps(events)] == [(2, "COPY a b"), (4, "RUN c")]
