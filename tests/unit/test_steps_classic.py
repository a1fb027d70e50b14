"""The classic builder's stream -> step events, on streams recorded from a real engine.

The recordings in tests/fixtures/streams/classic*.jsonl are raw `POST /build` bodies from Docker Engine
20.10.24 (API 1.41), copied unchanged from shared/engine-streams/ (their Dockerfiles are in
shared/engine-streams/contexts/). Hand-written streams below say so where they appear.
"""

from __future__ import annotations

import json
import random

import pytest

from webapp.builds.steps import (
    MAX_LINE_CHARS,
    STREAM_ENDED_ERROR,
    BuildResult,
    ClassicParser,
    Event,
    LogLine,
    Step,
    StepChanged,
    StepStatus,
    iter_documents,
)

from .streams import FakeClock, chunked, docs, final_steps, lines, random_chunks, raw, result, table

RECORDINGS = ["classic1", "classic2", "classic_err", "classic_cancel_a", "classic_cancel_b"]

BUILT, CACHED, FAILED = StepStatus.BUILT, StepStatus.CACHED, StepStatus.FAILED
CANCELLED, RUNNING = StepStatus.CANCELLED, StepStatus.RUNNING

ERR_MESSAGE = "The command '/bin/sh -c echo about to fail; echo oops >&2; exit 3' returned a non-zero code: 3"
LOST = "lost connection to the Docker engine"


def parse(documents: list[dict], **finish: object) -> list[Event]:
    parser = ClassicParser(clock=FakeClock())
    events: list[Event] = []
    for doc in documents:
        events += parser.feed(doc)
    events += parser.finish(**finish)  # type: ignore[arg-type]
    return events


def parse_bytes(chunks: list[bytes], **finish: object) -> list[Event]:
    return parse(list(iter_documents(chunks)), **finish)


def stream(*texts: str) -> list[dict]:
    return [{"stream": t} for t in texts]


# --------------------------------------------------------------------------------------------------
# The recordings
# --------------------------------------------------------------------------------------------------

CLASSIC1_STEPS = [
    (1, "0", "FROM scratch", BUILT, None),
    (2, "0", "COPY busybox /bin/busybox", BUILT, False),
    (3, "0", 'RUN ["/bin/busybox","--install","-s","/bin"]', BUILT, False),
    (4, "0", "ARG GREETING=hello", BUILT, False),
    (5, "0", "LABEL org.example.demo=1", BUILT, False),
    (6, "0", 'RUN echo "$GREETING world" > /greeting && sleep 1', BUILT, False),
    (7, "0", "RUN echo line1; echo line2 >&2; sleep 1; echo line3", BUILT, False),
    (8, "second", "FROM scratch AS second", BUILT, None),
    (9, "second", "COPY --from=0 /greeting /g", BUILT, False),
    (10, "second", "LABEL x=y", BUILT, False),
]


def test_first_build_reports_every_step_with_stage_instruction_status_and_cache_flag() -> None:
    assert table(parse(docs("classic1"))) == CLASSIC1_STEPS


def test_first_build_result_is_the_image_id_of_the_last_stage() -> None:
    assert result(parse(docs("classic1"))) == BuildResult(
        image_id="sha256:e8baa25e08e3374deffa66447220cb632cd16047d24b64c447dbf72e26f5c1c7", error=None
    )


def test_stderr_line_is_marked_stderr_without_its_escape_codes() -> None:
    events = parse(docs("classic1"))
    assert lines(events, step=7) == [
        ("system", "Step 7/10 : RUN echo line1; echo line2 >&2; sleep 1; echo line3"),
        ("system", " ---> Running in 97fd03c589e7"),
        ("stdout", "line1"),
        ("stderr", "line2"),
        ("stdout", "line3"),
        ("system", "Removing intermediate container 97fd03c589e7"),
        ("system", " ---> acba4aedd899"),
    ]
    assert not [text for _, text in lines(events) if "\x1b" in text]


def test_builder_lines_are_system_and_tied_to_their_step() -> None:
    events = parse(docs("classic1"))
    assert lines(events, step=1) == [("system", "Step 1/10 : FROM scratch"), ("system", " ---> ")]
    assert lines(events, step=10)[-2:] == [
        ("system", "Successfully built e8baa25e08e3"),
        ("system", "Successfully tagged drres-classic:1"),
    ]
    assert [text for stream, text in lines(events) if stream != "system"] == ["line1", "line2", "line3"]


def test_steps_are_timed_by_arrival_with_the_parsers_clock() -> None:
    steps = final_steps(parse(docs("classic1")))
    # The fake clock ticks once per call: start and end of each step, one after the other.
    assert [(s.started_at, s.finished_at, s.duration_s) for s in steps[:2]] == [
        (1000.0, 1001.0, 1.0),
        (1002.0, 1003.0, 1.0),
    ]
    assert all(s.finished_at is not None and s.error is None for s in steps)


def test_second_build_marks_every_layer_step_cached() -> None:
    events = parse(docs("classic2"))
    expected = [
        (index, stage, instruction, BUILT if cached is None else CACHED, None if cached is None else True)
        for index, stage, instruction, _, cached in CLASSIC1_STEPS
    ]
    assert table(events) == expected
    assert (
        result(events).image_id == "sha256:e8baa25e08e3374deffa66447220cb632cd16047d24b64c447dbf72e26f5c1c7"
    )


def test_cached_flag_turns_true_while_the_step_is_still_running() -> None:
    changes = [e.step for e in parse(docs("classic2")) if isinstance(e, StepChanged) and e.step.index == 2]
    assert [(s.status, s.cached) for s in changes] == [(RUNNING, None), (RUNNING, True), (CACHED, True)]


def test_failing_step_is_failed_with_the_engines_exact_message() -> None:
    events = parse(docs("classic_err"))
    assert table(events) == [
        (1, "base", "FROM scratch AS base", BUILT, None),
        (2, "base", "COPY busybox /bin/busybox", CACHED, True),
        (3, "base", 'RUN ["/bin/busybox","--install","-s","/bin"]', CACHED, True),
        (4, "ok", "FROM base AS ok", BUILT, None),
        (5, "ok", "ARG WHO=nobody", BUILT, False),
        (6, "ok", 'RUN echo "built for $WHO on $(uname -m)" > /who', BUILT, False),
        (7, "bad", "FROM base AS bad", BUILT, None),
        (8, "bad", "RUN echo about to fail; echo oops >&2; exit 3", FAILED, False),
    ]
    failed = final_steps(events)[-1]
    assert failed.error == ERR_MESSAGE
    assert failed.finished_at is not None
    assert [s.error for s in final_steps(events)[:-1]] == [None] * 7


def test_failed_build_has_the_error_and_no_image_although_an_earlier_stage_made_one() -> None:
    events = parse(docs("classic_err"))
    assert any(d.get("aux") for d in docs("classic_err")), "the recording has earlier stages' aux IDs"
    assert result(events) == BuildResult(image_id=None, error=ERR_MESSAGE)


def test_failing_steps_log_shows_its_output_and_the_error() -> None:
    assert lines(parse(docs("classic_err")), step=8) == [
        ("system", "Step 8/8 : RUN echo about to fail; echo oops >&2; exit 3"),
        ("system", " ---> Running in 51b597ee5846"),
        ("stdout", "about to fail"),
        ("stderr", "oops"),
        ("system", "Removing intermediate container 51b597ee5846"),
        ("system", ERR_MESSAGE),
    ]


def test_cancelled_stream_b_marks_the_running_step_cancelled() -> None:
    events = parse(docs("classic_cancel_b"), cancelled=True)
    steps = final_steps(events)
    assert [(s.index, s.status) for s in steps] == [(1, BUILT), (2, BUILT), (3, BUILT), (4, CANCELLED)]
    assert steps[-1].finished_at is not None and steps[-1].error is None
    assert lines(events, step=4)[-1] == ("stdout", "tick 4")
    assert result(events) == BuildResult(image_id=None, error=None)


def test_recording_cancel_a_ran_to_the_end_so_cancelling_after_it_changes_no_step() -> None:
    # classic_cancel_a holds the whole build: the engine finished step 4 and tagged the image before
    # the client closed the stream. Nothing is running at finish(), so nothing becomes cancelled.
    events = parse(docs("classic_cancel_a"), cancelled=True)
    assert [(s.index, s.status) for s in final_steps(events)] == [
        (1, BUILT),
        (2, BUILT),
        (3, BUILT),
        (4, BUILT),
    ]
    assert result(events) == BuildResult(
        image_id="sha256:35a95153af0000ec78e64a9e1b9369a3ad05edb28697e85206b942ff1b680259", error=None
    )


def test_recording_cancel_a_cut_mid_run_marks_the_running_step_cancelled() -> None:
    documents = docs("classic_cancel_a")
    cut = documents.index({"stream": "tick 7\n"}) + 1
    events = parse(documents[:cut], cancelled=True)
    assert [(s.index, s.status, s.cached) for s in final_steps(events)] == [
        (1, BUILT, None),
        (2, BUILT, False),
        (3, BUILT, False),
        (4, CANCELLED, False),
    ]
    assert [t for s, t in lines(events, step=4) if s == "stdout"] == [f"tick {i}" for i in range(1, 8)]
    assert result(events) == BuildResult(image_id=None, error=None)


def test_lost_connection_fails_the_running_step_with_that_error() -> None:
    events = parse(docs("classic_cancel_b"), error=LOST)
    last = final_steps(events)[-1]
    assert (last.index, last.status, last.error) == (4, FAILED, LOST)
    assert result(events) == BuildResult(image_id=None, error=LOST)


def test_stream_that_just_stops_fails_the_running_step() -> None:
    events = parse(docs("classic_cancel_b"))
    last = final_steps(events)[-1]
    assert (last.status, last.error) == (FAILED, STREAM_ENDED_ERROR)
    assert result(events) == BuildResult(image_id=None, error=STREAM_ENDED_ERROR)


def test_stream_cut_between_stages_gives_no_image_from_the_first_stage() -> None:
    documents = docs("classic1")
    first_aux = next(i for i, d in enumerate(documents) if "aux" in d)
    events = parse(documents[: first_aux + 1])
    assert all(s.status is BUILT for s in final_steps(events))
    assert result(events) == BuildResult(image_id=None, error=STREAM_ENDED_ERROR)


# --------------------------------------------------------------------------------------------------
# Bytes -> documents
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_documents_from_the_raw_body_match_the_recorded_lines(name: str) -> None:
    assert list(iter_documents([raw(name)])) == docs(name)


@pytest.mark.parametrize("size", range(1, 8))
@pytest.mark.parametrize("name", RECORDINGS)
def test_rechunked_body_gives_the_same_events_at_every_small_split_size(name: str, size: int) -> None:
    assert parse_bytes(chunked(raw(name), size)) == parse(docs(name))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("name", RECORDINGS)
def test_body_split_at_random_points_gives_the_same_events(name: str, seed: int) -> None:
    rng = random.Random(f"{name}-{seed}")
    assert parse_bytes(random_chunks(raw(name), rng)) == parse(docs(name))


def test_concatenated_documents_without_newlines_are_all_read() -> None:
    body = b'{"stream":"a\\n"}{"stream":"b\\n"}\n\n{"aux":{"ID":"sha256:x"}}'
    assert list(iter_documents(chunked(body, 3))) == [
        {"stream": "a\n"},
        {"stream": "b\n"},
        {"aux": {"ID": "sha256:x"}},
    ]


def test_invalid_utf8_becomes_replacement_characters_instead_of_raising() -> None:
    body = b'{"stream":"Step 1/1 : FROM scratch\\n"}\r\n{"stream":"bad \xff\xfe bytes \xc3\\n"}\r\n'
    for size in (1, 2, 3, len(body)):
        assert list(iter_documents(chunked(body, size))) == [
            {"stream": "Step 1/1 : FROM scratch\n"},
            {"stream": "bad \ufffd\ufffd bytes \ufffd\n"},
        ]


def test_multibyte_characters_split_across_chunks_survive() -> None:
    text = "héllo wörld ✓ 日本 😀\n"
    body = json.dumps({"stream": text}, ensure_ascii=False).encode() + b"\r\n"
    for cut in range(1, len(body)):
        assert list(iter_documents([body[:cut], body[cut:]])) == [{"stream": text}], cut
    assert list(iter_documents(chunked(body, 1))) == [{"stream": text}]


def test_stream_cut_mid_document_drops_the_truncated_document() -> None:
    body = raw("classic_cancel_b")
    cut = body.rindex(b"tick 4")  # inside the last document
    assert list(iter_documents(chunked(body[:cut], 5))) == docs("classic_cancel_b")[:-1]
    events = parse_bytes([body[:cut]])
    last = final_steps(events)[-1]
    assert (last.index, last.status) == (4, FAILED)
    assert lines(events, step=4)[-1] == ("stdout", "tick 3")
    assert result(events) == BuildResult(image_id=None, error=STREAM_ENDED_ERROR)


def test_a_line_that_is_not_json_is_skipped() -> None:
    body = b'{"stream":"a\\n"}\r\nnot json at all\r\n{"stream":"b\\n"}\r\n'
    assert list(iter_documents(chunked(body, 4))) == [{"stream": "a\n"}, {"stream": "b\n"}]


# --------------------------------------------------------------------------------------------------
# Hand-written streams for what the recordings do not show
# --------------------------------------------------------------------------------------------------

# What Engine 25+ prints (per public build logs): " ---> Removed intermediate container X".
ENGINE25 = (
    stream(
        "Step 1/4 : FROM alpine:3.19",
        "\n",
        " ---> ace17d5d883e\n",
        "Step 2/4 : WORKDIR /app",
        "\n",
        " ---> Using cache\n",
        " ---> d6d51daeaaaa\n",
        "Step 3/4 : RUN echo hi",
        "\n",
        " ---> Running in 90d2c8328ffa\n",
        "hi\n",
        " ---> Removed intermediate container 90d2c8328ffa\n",
        " ---> e533e7cfc049\n",
        "Step 4/4 : COPY app.py .",
        "\n",
        " ---> 7ea13ef487d2\n",
    )
    + [{"aux": {"ID": "sha256:7ea13ef487d2aaaa"}}]
    + stream("Successfully built 7ea13ef487d2\n", "Successfully tagged demo:1\n")
)


def test_engine_25_removed_intermediate_container_line_is_system() -> None:
    events = parse(ENGINE25)
    assert table(events) == [
        (1, "0", "FROM alpine:3.19", BUILT, None),
        (2, "0", "WORKDIR /app", CACHED, True),
        (3, "0", "RUN echo hi", BUILT, False),
        (4, "0", "COPY app.py .", BUILT, False),
    ]
    assert lines(events, step=3) == [
        ("system", "Step 3/4 : RUN echo hi"),
        ("system", " ---> Running in 90d2c8328ffa"),
        ("stdout", "hi"),
        ("system", " ---> Removed intermediate container 90d2c8328ffa"),
        ("system", " ---> e533e7cfc049"),
    ]
    assert result(events) == BuildResult(image_id="sha256:7ea13ef487d2aaaa", error=None)


RUNNING_STEP = stream(
    "Step 1/2 : FROM scratch", "\n", " ---> \n", "Step 2/2 : RUN x", "\n", " ---> Running in abc123\n"
)


@pytest.mark.parametrize(
    "removal", ["Removing intermediate container abc123", " ---> Removed intermediate container abc123"]
)
def test_unfinished_output_line_is_separated_from_the_builder_line_glued_to_it(removal: str) -> None:
    events = parse(RUNNING_STEP + stream("abc", f"{removal}\n", " ---> 0123456789ab\n"))
    assert lines(events, step=2)[2:] == [
        ("stdout", "abc"),
        ("system", removal),
        ("system", " ---> 0123456789ab"),
    ]
    assert final_steps(events)[-1].status is BUILT


def test_unfinished_output_line_is_separated_from_the_closing_id_without_a_removal() -> None:
    events = parse(RUNNING_STEP + stream("abc", " ---> 0123456789ab\n"))
    assert lines(events, step=2)[2:] == [("stdout", "abc"), ("system", " ---> 0123456789ab")]
    assert final_steps(events)[-1].status is BUILT


def test_output_split_mid_line_is_joined_into_one_line() -> None:
    events = parse(RUNNING_STEP + stream("ab", "c", "def\nghi", "\n", "\x1b[32mgreen\x1b[0m\n"))
    assert lines(events, step=2)[2:] == [
        ("stdout", "abcdef"),
        ("stdout", "ghi"),
        ("stdout", "\x1b[32mgreen\x1b[0m"),
    ]


def test_stdout_and_stderr_are_cut_into_lines_separately() -> None:
    events = parse(RUNNING_STEP + stream("out-", "\x1b[91merr-\x1b[0m", "more\n", "\x1b[91mtail\n\x1b[0m"))
    assert lines(events, step=2)[2:] == [("stdout", "out-more"), ("stderr", "err-tail")]


def test_unfinished_stderr_line_is_logged_before_the_step_closes() -> None:
    events = parse(
        RUNNING_STEP + stream("\x1b[91mno newline\x1b[0m", "Removing intermediate container abc123\n")
    )
    assert lines(events, step=2)[2:4] == [
        ("stderr", "no newline"),
        ("system", "Removing intermediate container abc123"),
    ]


def test_partial_line_left_at_the_end_is_emitted() -> None:
    events = parse(RUNNING_STEP + stream("tick 5"), cancelled=True)
    assert lines(events, step=2)[-1] == ("stdout", "tick 5")
    assert final_steps(events)[-1].status is CANCELLED


def test_program_output_that_looks_like_a_builder_line_stays_output() -> None:
    events = parse(
        RUNNING_STEP
        + stream(
            "Step 9/9 : FROM evil\n",
            " ---> Using cache\n",
            "Removing intermediate container abc123\n",
            " ---> 0123456789ab\n",
        )
    )
    assert [s.index for s in final_steps(events)] == [1, 2]
    assert lines(events, step=2)[2:4] == [("stdout", "Step 9/9 : FROM evil"), ("stdout", " ---> Using cache")]
    assert final_steps(events)[-1].cached is False


def test_lines_before_the_first_step_have_no_step() -> None:
    events = parse(stream("Sending build context to Docker daemon  2.048kB\n") + RUNNING_STEP)
    assert [e for e in events if isinstance(e, LogLine)][0] == LogLine(
        step=None, stream="system", text="Sending build context to Docker daemon  2.048kB"
    )


def test_error_before_any_step_fails_the_build() -> None:
    message = "dockerfile parse error line 1: unknown instruction: FORM"
    events = parse([{"errorDetail": {"message": message}, "error": message}])
    assert events == [
        LogLine(step=None, stream="system", text=message),
        BuildResult(image_id=None, error=message),
    ]


def test_error_without_error_detail_falls_back_to_error() -> None:
    events = parse(RUNNING_STEP + [{"error": "old engine says no"}])
    assert final_steps(events)[-1].error == "old engine says no"
    assert result(events).error == "old engine says no"


def test_global_arg_before_the_first_from_belongs_to_no_stage_and_has_no_cache_decision() -> None:
    events = parse(
        stream("Step 1/3 : ARG BASE=scratch", "\n", "Step 2/3 : FROM ${BASE} as Build", "\n", " ---> \n")
        + stream("Step 3/3 : COPY a b", "\n", " ---> 0123456789ab\n")
        + [{"aux": {"ID": "sha256:abc"}}]
    )
    assert table(events) == [
        (1, "", "ARG BASE=scratch", BUILT, None),
        (2, "Build", "FROM ${BASE} as Build", BUILT, None),
        (3, "Build", "COPY a b", BUILT, False),
    ]
    assert result(events) == BuildResult(image_id="sha256:abc", error=None)


def test_pull_statuses_are_system_lines_and_progress_updates_are_left_out() -> None:
    events = parse(
        stream("Step 1/1 : FROM alpine:3.19", "\n")
        + [
            {"status": "Pulling from library/alpine", "id": "3.19"},
            {
                "status": "Downloading",
                "progressDetail": {"current": 1, "total": 9},
                "progress": "[>  ]",
                "id": "f1",
            },
            {"status": "Pull complete", "progressDetail": {}, "id": "f1"},
            {"status": "Status: Downloaded newer image for alpine:3.19"},
        ]
        + stream(" ---> ace17d5d883e\n")
    )
    assert lines(events, step=1) == [
        ("system", "Step 1/1 : FROM alpine:3.19"),
        ("system", "3.19: Pulling from library/alpine"),
        ("system", "f1: Pull complete"),
        ("system", "Status: Downloaded newer image for alpine:3.19"),
        ("system", " ---> ace17d5d883e"),
    ]


def test_overlong_line_without_newline_is_cut() -> None:
    events = parse(RUNNING_STEP + stream("x" * (MAX_LINE_CHARS + 10), "y\n"))
    assert [len(t) for s, t in lines(events, step=2) if s == "stdout"] == [MAX_LINE_CHARS + 10, 1]


# --------------------------------------------------------------------------------------------------
# Events and the step object
# --------------------------------------------------------------------------------------------------


def test_step_changed_carries_a_snapshot_that_later_changes_do_not_touch() -> None:
    events = parse(docs("classic1"))
    changes = [e.step for e in events if isinstance(e, StepChanged) and e.step.index == 3]
    assert [(s.status, s.cached, s.finished_at) for s in changes] == [
        (RUNNING, None, None),
        (RUNNING, False, None),
        (BUILT, False, 1005.0),
    ]
    assert len({id(s) for s in changes}) == 3


def test_finish_emits_the_result_exactly_once() -> None:
    parser = ClassicParser(clock=FakeClock())
    for doc in docs("classic1"):
        parser.feed(doc)
    assert [type(e) for e in parser.finish()] == [BuildResult]
    assert parser.finish() == []
    assert parser.feed({"stream": "late\n"}) == []


def test_step_to_dict_has_the_api_keys_and_a_duration() -> None:
    step = final_steps(parse(docs("classic2")))[1]
    assert step.to_dict() == {
        "index": 2,
        "stage": "0",
        "instruction": "COPY busybox /bin/busybox",
        "status": "cached",
        "cached": True,
        "started_at": 1002.0,
        "finished_at": 1003.0,
        "duration_s": 1.0,
        "error": None,
    }
    json.dumps(step.to_dict())


def test_running_step_has_no_duration() -> None:
    step = Step(
        index=1, stage="0", instruction="RUN x", status=RUNNING, cached=None, started_at=5.0, finished_at=None
    )
    assert step.duration_s is None
    assert step.to_dict()["duration_s"] is None
