"""BuildKit's build stream -> the builder-neutral step events of :mod:`webapp.builds.steps`.

``POST /build?version=2`` answers with JSON documents like the classic builder, but its progress comes as
``{"id": "moby.buildkit.trace", "aux": "<base64 StatusResponse>"}``: protobuf messages (decoded with the
``protobuf`` package through :mod:`webapp.builds.buildkit_trace_pb2`) that each repeat the state of the
build graph's vertexes that changed, plus status counters and raw log bytes. This module turns them into
the same :class:`~webapp.builds.steps.StepChanged` / :class:`~webapp.builds.steps.LogLine` /
:class:`~webapp.builds.steps.BuildResult` events the classic parser gives.

What the engine sends (verified on Docker 20.10 / API 1.41, see tests/fixtures/streams/bk*.jsonl):

* Dockerfile steps are vertexes named ``[N/M] INSTR`` (single-stage build), ``[stage-K N/M] INSTR``
  (unnamed stage K counted from 0) or ``[name N/M] INSTR`` (``FROM ... AS name``), optionally with a
  platform first (``[linux/amd64 stage-0 1/4]``) and N padded with spaces when M has two digits. N counts
  per stage, and only the instructions that make a vertex: ``FROM <image>`` (not ``FROM scratch`` nor
  ``FROM <earlier stage>``), ``RUN``, ``COPY``, ``ADD``, ``WORKDIR``. ``ARG``, ``ENV``, ``LABEL``... make
  no vertex and so no step here. A single-stage build is still labelled ``stage-0`` when the engine saw
  a second, implicit stage (``RUN --mount=type=cache``, ``COPY --from=<image>``).
* Everything else is BuildKit's own work (``[internal] load remote build context``, ``copy /context /``,
  ``[internal] load metadata for ...``, ``resolve image config for ...``, ``exporting to image``): never a
  step, one ``system`` line when it completes and one if it fails.
* A vertex has ``started`` / ``completed`` server timestamps, ``cached``, and ``error``; all step
  vertexes of a stage are announced up front (reported here as ``pending`` steps) and re-sent whenever
  they change. ``moby.image.id`` may come before the last trace messages. A failure ends with
  ``errorDetail`` (often wording it differently from the vertex's own ``error``); a cancel shows as
  ``context canceled`` on the running vertex and in ``errorDetail``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from webapp.builds import buildkit_trace_pb2
from webapp.builds.steps import (
    MAX_LINE_CHARS,
    STREAM_ENDED_ERROR,
    BuildResult,
    Event,
    LogLine,
    Step,
    StepChanged,
    StepStatus,
)

__all__ = ["BuildKitParser", "DockerfileInstruction", "DockerfileStage", "parse_dockerfile"]

TRACE_ID = "moby.buildkit.trace"
IMAGE_ID = "moby.image.id"

#: The generated message class (protoc's module defines its classes at run time, unseen by type checkers).
_StatusResponse: Any = buildkit_trace_pb2.StatusResponse  # type: ignore[attr-defined]

#: ``[prefix N/M] INSTR`` -- a Dockerfile step. The prefix is empty, a stage, or a platform and a stage.
_STEP_NAME_RE = re.compile(r"\[(?P<prefix>[^\]]*?)\s*(?P<n>\d+)/(?P<m>\d+)\]\s+(?P<instr>\S.*)", re.DOTALL)
_UNNAMED_STAGE_RE = re.compile(r"stage-(\d+)")
_CANCELED = "context canceled"

#: Instructions BuildKit numbers (besides ``FROM <image>``): the ones that change the filesystem.
_COUNTED = frozenset({"RUN", "COPY", "ADD", "WORKDIR"})


# --------------------------------------------------------------------------------------------------
# The Dockerfile, to give steps their place in the whole file
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerfileInstruction:
    index: int  # 1-based among all instructions of the file (the classic builder's "Step N")
    keyword: str  # upper case: "FROM", "RUN", ...
    text: str  # as written, continuation lines joined the way the engine joins them
    stage: int | None  # stage number from 0; None for ARGs before the first FROM
    # Where and how the file writes it (left out of comparisons and repr):
    first_line: int = field(default=0, compare=False, repr=False)  # 1-based, editor numbering, where it starts
    last_line: int = field(default=0, compare=False, repr=False)  # where it ends (continuations, heredoc bodies)
    raw_lines: tuple[str, ...] = field(default=(), compare=False, repr=False)  # the lines first..last as written
    pretty: str = field(default="", compare=False, repr=False)  # continuation pieces stripped, joined by a space
    heredocs: tuple[str, ...] = field(default=(), compare=False, repr=False)  # its heredoc bodies, in order
    escape: str = field(default="\\", compare=False, repr=False)  # the file's escape character


@dataclass(frozen=True)
class DockerfileStage:
    number: int
    name: str | None  # the ``AS`` name as written
    instructions: tuple[DockerfileInstruction, ...]  # the FROM first

    @property
    def label(self) -> str:
        """Our ``Step.stage``: the name, else the number."""
        return self.name if self.name else str(self.number)

    @property
    def counted(self) -> tuple[DockerfileInstruction, ...]:
        """The instructions after FROM that BuildKit numbers."""
        return tuple(i for i in self.instructions[1:] if i.keyword in _COUNTED)


_DIRECTIVE_RE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*")
_HEREDOC_RE = re.compile(r"(?<!<)<<(?!<)(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_.-]*)\2")


def parse_dockerfile(text: str) -> list[DockerfileInstruction]:
    """A Dockerfile -> its instructions in order, as the engine's parser sees them.

    Parser directives at the top (``# syntax=``, ``# escape=``) are read, the escape character honoured;
    comment and blank lines are skipped (inside continuations too); a line ending in the escape character
    continues on the next one (joined without the escape and the newline, like the engine does); the body
    of a heredoc (``RUN <<EOF`` ... ``EOF``) is skipped (kept in ``heredocs``). Nothing is validated.

    Each instruction also says where it is written: line numbers count ``\\n``, ``\\r\\n`` and ``\\r``
    endings as an editor does (``str.splitlines`` also splits on form feeds and the like, which an editor
    shows inside a line).
    """
    lines = text.splitlines()
    numbers: list[int] = []
    number = 1
    for chunk in text.splitlines(keepends=True):
        numbers.append(number)
        if chunk.endswith(("\n", "\r")):
            number += 1
    escape = "\\"
    pos = 0
    while pos < len(lines):  # directives: only before anything else, blank lines and comments included
        match = _DIRECTIVE_RE.fullmatch(lines[pos].strip())
        if match is None:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            escape = match.group(2)
        pos += 1
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")

    def trim(line: str) -> tuple[str, bool]:
        trimmed = continuation.sub("", line)
        return trimmed, trimmed != line

    instructions: list[DockerfileInstruction] = []
    stages = 0
    while pos < len(lines):
        raw = lines[pos]
        start = pos
        pos += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        line, more = trim(raw.lstrip())
        pieces = [line]
        while more and pos < len(lines):
            raw = lines[pos]
            pos += 1
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            part, more = trim(raw)
            line += part
            pieces.append(part)
        line = line.rstrip()
        keyword = line.split(None, 1)[0].upper()
        bodies: list[str] = []
        if keyword in ("RUN", "COPY", "ADD"):
            for heredoc in _HEREDOC_RE.finditer(line):
                strip_tabs, word = heredoc.group(1) == "-", heredoc.group(3)
                body: list[str] = []
                while pos < len(lines):
                    body_line = lines[pos].lstrip("\t") if strip_tabs else lines[pos]
                    pos += 1
                    if body_line.rstrip("\r") == word:
                        break
                    body.append(body_line)
                bodies.append("\n".join(body))
        if keyword == "FROM":
            stages += 1
        stage = stages - 1 if stages else None
        instructions.append(
            DockerfileInstruction(
                len(instructions) + 1,
                keyword,
                line,
                stage,
                first_line=numbers[start],
                last_line=numbers[pos - 1],
                raw_lines=tuple(lines[start:pos]),
                pretty=" ".join(p.strip() for p in pieces if p.strip()),
                heredocs=tuple(bodies),
                escape=escape,
            )
        )
    return instructions


def dockerfile_stages(text: str) -> list[DockerfileStage]:
    """A Dockerfile's stages in order, each with its instructions (the FROM first)."""
    return _stages(parse_dockerfile(text))


def _stages(instructions: list[DockerfileInstruction]) -> list[DockerfileStage]:
    stages: list[DockerfileStage] = []
    for number in range(max((i.stage for i in instructions if i.stage is not None), default=-1) + 1):
        own = tuple(i for i in instructions if i.stage == number)
        args = [a for a in own[0].text.split()[1:] if not a.startswith("--")]
        name = args[2] if len(args) >= 3 and args[1].lower() == "as" else None
        stages.append(DockerfileStage(number, name, own))
    return stages


class _Layout:
    """Where a vertex label ``[stage N/M] INSTR`` sits in a given Dockerfile."""

    def __init__(self, dockerfile: str) -> None:
        self.instructions = parse_dockerfile(dockerfile)
        self.stages = _stages(self.instructions)

    def locate(
        self, stage_token: str | None, n: int, m: int, keyword: str
    ) -> tuple[DockerfileInstruction, DockerfileStage] | None:
        stage = self._stage(stage_token)
        if stage is None:
            return None
        counted = stage.counted
        with_from = (stage.instructions[0], *counted)
        # M includes the FROM when the stage starts from an image (not scratch, not an earlier stage).
        # The keyword check settles the rare cases where that guess is wrong (an image with no layers
        # is counted but gets no FROM vertex).
        tries = (with_from, counted) if m == len(counted) + 1 else (counted, with_from)
        for sequence in tries:
            if 1 <= n <= len(sequence) and sequence[n - 1].keyword == keyword:
                return sequence[n - 1], stage
        return None

    def _stage(self, token: str | None) -> DockerfileStage | None:
        if token is None:  # BuildKit drops the stage name only when there is a single stage
            return self.stages[0] if len(self.stages) == 1 else None
        for stage in self.stages:
            if stage.name is not None and stage.name.lower() == token.lower():
                return stage
        unnamed = _UNNAMED_STAGE_RE.fullmatch(token)
        if unnamed is not None and int(unnamed.group(1)) < len(self.stages):
            return self.stages[int(unnamed.group(1))]
        return None


# --------------------------------------------------------------------------------------------------
# Per-vertex state
# --------------------------------------------------------------------------------------------------


class _LineBuffer:
    """Raw bytes of one (vertex, stream) -> complete lines; UTF-8 decoded incrementally, errors replaced."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""

    def feed(self, data: bytes) -> list[str]:
        self._text += self._decoder.decode(data)
        if "\n" not in self._text and len(self._text) <= MAX_LINE_CHARS:
            return []
        *complete, self._text = self._text.split("\n")
        if len(self._text) > MAX_LINE_CHARS:
            complete.append(self._text)
            self._text = ""
        return [line.removesuffix("\r") for line in complete]

    def flush(self) -> str | None:
        text = self._text + self._decoder.decode(b"", final=True)
        self._text = ""
        return text.removesuffix("\r") if text else None


@dataclass
class _Vertex:
    digest: str
    name: str = ""
    cached: bool = False
    started: float | None = None
    completed: float | None = None
    error: str = ""
    step: int | None = None  # the Step.index of a Dockerfile step; None for BuildKit's own work
    is_from: bool = False
    transfers: dict[str, int] = field(default_factory=dict)  # status ID -> bytes (current)
    done_logged: bool = False  # internal vertexes: the one completion line was written
    error_logged: bool = False


@dataclass
class _StepNotes:
    announced: bool = False  # a first StepChanged went out
    header_logged: bool = False  # the "[stage N/M] INSTR" line
    outcome_logged: StepStatus | None = None  # the status whose CACHED / DONE / ERROR line was written


def _seconds(message: Any, name: str) -> float | None:
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    return stamp.seconds + stamp.nanos / 1e9


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _is_canceled(message: str | None) -> bool:
    return message is not None and _CANCELED in message.lower()


# --------------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------------


class BuildKitParser:
    """BuildKit documents -> events. One instance per build; the same interface as ``ClassicParser``.

    Feed it the documents of ``POST /build?version=2`` in order with :meth:`feed`, then call :meth:`finish`
    once when the stream ends. Each call returns the events it caused, in order.

    Steps: a vertex named like a Dockerfile step is a step. Its ``index`` is its instruction's place in the
    whole Dockerfile (1-based, every instruction counted, as the classic builder's ``Step N``) when
    ``dockerfile`` (the text the engine built) is given, and its ``instruction`` the line as written there.
    Without it -- or where the label does not fit that Dockerfile -- steps are numbered by stage in order of
    first appearance (each stage taking M numbers), and ``instruction`` is the label's text (BuildKit's
    wording: ``FROM docker.io/library/x``, build args expanded). ``stage`` is the ``AS`` name, else the
    stage's number from 0.

    Status: ``pending`` until the vertex starts, ``running`` while started, then ``cached`` (completed and
    cached) or ``built``; a ``FROM`` step always ends ``built`` with ``cached`` None, like the classic
    parser; ``failed`` with the vertex's error. Times are the engine's own timestamps (server clock, UNIX
    seconds), never arrival times. A :class:`StepChanged` comes when a step first appears and then only
    when something visible changed.

    Logs: a step's output (stream 1 stdout, 2 stderr) is cut into lines per vertex and stream, bytes
    decoded as UTF-8 with errors replaced; an unfinished line is flushed when its vertex completes and at
    :meth:`finish`. Each step gets a ``system`` line when it starts (the label) and one with its outcome
    (``CACHED``, ``DONE 0.42 s``, ``ERROR: ...``). BuildKit's own vertexes give one ``system`` line (step
    None) when they complete and one if they fail; ``{"stream": ...}`` text and the engine's
    ``errorDetail`` are ``system`` lines with step None.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, dockerfile: str | None = None) -> None:
        self._clock = clock
        self._layout = _Layout(dockerfile) if dockerfile is not None else None
        self._events: list[Event] = []
        self._vertexes: dict[str, _Vertex] = {}
        self._steps: dict[int, Step] = {}
        self._notes: dict[int, _StepNotes] = {}
        self._buffers: dict[tuple[str, str], _LineBuffer] = {}
        # Numbering without (or outside) the Dockerfile: each stage prefix gets the next M numbers.
        self._fallback_base = len(self._layout.instructions) if self._layout is not None else 0
        self._fallback_offsets: dict[str, int] = {}
        self._server_now: float | None = None  # the latest engine timestamp seen
        self._image_id: str | None = None
        self._engine_error: str | None = None  # errorDetail
        self._vertex_error: str | None = None  # the first vertex error, for a stream without errorDetail
        self._finished = False

    # -- public --------------------------------------------------------------------------------------

    def feed(self, doc: dict[str, Any]) -> list[Event]:
        """One document of the engine's stream -> the events it causes (possibly none)."""
        if self._finished:
            return []
        self._events = []
        ident = doc.get("id")
        aux = doc.get("aux")
        if ident == TRACE_ID and isinstance(aux, str):
            self._on_trace(aux)
        elif isinstance(aux, dict) and isinstance(aux.get("ID"), str) and ident in (None, IMAGE_ID):
            self._image_id = aux["ID"]
        stream = doc.get("stream")
        if isinstance(stream, str) and stream:
            for line in stream.splitlines():
                self._log(None, "system", line)
        if doc.get("errorDetail") or doc.get("error"):
            self._on_error(doc)
        return self._take_events()

    @property
    def answered(self) -> bool:
        """Whether the engine reported how the build ended (an image id or an error)."""
        return self._image_id is not None or self._engine_error is not None

    def finish(self, *, cancelled: bool = False, error: str | None = None) -> list[Event]:
        """End of stream -> the last events, ending with the one :class:`BuildResult`.

        Flushes unfinished lines. With ``cancelled``, a step still running, and one that failed with
        BuildKit's ``context canceled``, become ``cancelled``; such a step also does when another vertex
        failed for real (BuildKit stopped it because of that failure). Without, a step still running fails
        with ``error``, else the engine's error, else :data:`STREAM_ENDED_ERROR` -- or, when the image came
        and nothing failed, is closed ``built``. Steps closed here end at the engine's latest timestamp
        (``clock()`` only if the engine sent none). Steps that never started stay ``pending``.

        The result: ``image_id`` from ``moby.image.id`` unless an error was reported (by the engine or as
        ``error``) or the build was ``cancelled``; ``error`` is the engine's ``errorDetail`` (not when it
        is only ``context canceled`` and the build was ``cancelled``), else ``error``, else -- without an
        image and not cancelled -- the first vertex error or :data:`STREAM_ENDED_ERROR`. A second call
        returns no events.
        """
        if self._finished:
            return []
        self._events = []
        for key in list(self._buffers):
            self._flush(key)
        engine_error = self._engine_error
        if cancelled and _is_canceled(engine_error):
            engine_error = None
        # BuildKit stops the other running vertexes with "context canceled" when one fails for real.
        real_failure = any(v.error and not _is_canceled(v.error) for v in self._vertexes.values()) or (
            self._engine_error is not None and not _is_canceled(self._engine_error)
        )
        for index in sorted(self._steps):
            step = self._steps[index]
            if step.status is StepStatus.RUNNING:
                if cancelled:
                    self._close(step, StepStatus.CANCELLED, error=None)
                elif self._image_id is None or engine_error or error:
                    self._close(step, StepStatus.FAILED, error=error or engine_error or STREAM_ENDED_ERROR)
                else:  # the image exists, so the step's work was done; the engine just never said so
                    self._close(step, StepStatus.BUILT, error=None)
            elif (
                step.status is StepStatus.FAILED and _is_canceled(step.error) and (cancelled or real_failure)
            ):
                self._close(step, StepStatus.CANCELLED, error=None, keep_finish=True)
        if engine_error:
            result = BuildResult(image_id=None, error=engine_error)
        elif error:
            result = BuildResult(image_id=None, error=error)
        elif cancelled:
            result = BuildResult(image_id=None, error=None)
        elif self._image_id is not None:
            result = BuildResult(image_id=self._image_id, error=None)
        else:
            result = BuildResult(image_id=None, error=self._vertex_error or STREAM_ENDED_ERROR)
        self._events.append(result)
        self._finished = True
        return self._take_events()

    # -- documents -----------------------------------------------------------------------------------

    def _on_trace(self, aux: str) -> None:
        try:
            message = _StatusResponse.FromString(base64.b64decode(aux, validate=True))
        except (binascii.Error, ValueError, DecodeError):
            return  # not a StatusResponse: nothing we can show
        records = [self._update_vertex(v) for v in message.vertexes]
        # Steps in Dockerfile order within one message (the engine lists them in any order); BuildKit's
        # own vertexes keep their places.
        slots = [i for i, r in enumerate(records) if r.step is not None]
        in_order = sorted((records[i] for i in slots), key=lambda r: r.step or 0)
        for slot, record in zip(slots, in_order, strict=True):
            records[slot] = record
        for status in message.statuses:
            owner = self._vertexes.get(status.vertex)
            self._saw_time(_seconds(status, "timestamp"), _seconds(status, "completed"))
            if owner is not None and status.ID:
                owner.transfers[status.ID] = max(status.current, owner.transfers.get(status.ID, 0))
        logged = {log.vertex for log in message.logs}
        # A vertex that completes in the same message as some of its output: its lines come first.
        deferred = [r for r in records if r.digest in logged and (r.completed is not None or r.error)]
        deferred_digests = {r.digest for r in deferred}
        for record in records:
            self._show(record, final=record.digest not in deferred_digests)
        for log in message.logs:
            self._saw_time(_seconds(log, "timestamp"))
            stream = "stderr" if log.stream == 2 else "stdout"
            key = (log.vertex, stream)
            buffer = self._buffers.get(key)
            if buffer is None:
                buffer = self._buffers[key] = _LineBuffer()
            for line in buffer.feed(log.msg):
                self._vertex_line(log.vertex, stream, line)
        for warning in message.warnings:
            owner = self._vertexes.get(warning.vertex)
            text = warning.short.decode("utf-8", errors="replace").strip()
            self._log(owner.step if owner is not None else None, "system", f"WARNING: {text}")
        for record in deferred:
            self._show(record, final=True)

    def _on_error(self, doc: dict[str, Any]) -> None:
        detail = doc.get("errorDetail")
        message = detail.get("message") if isinstance(detail, dict) else None
        if not isinstance(message, str) or not message:
            message = doc.get("error") if isinstance(doc.get("error"), str) else None
        message = message or "The build failed."
        for line in message.splitlines() or [message]:
            self._log(None, "system", line)
        if self._engine_error is None:
            self._engine_error = message

    # -- vertexes ------------------------------------------------------------------------------------

    def _update_vertex(self, vertex: Any) -> _Vertex:
        record = self._vertexes.get(vertex.digest)
        if record is None:
            record = self._vertexes[vertex.digest] = _Vertex(digest=vertex.digest)
        if vertex.name and vertex.name != record.name:
            record.name = vertex.name
            self._place(record)
        record.cached = vertex.cached
        record.started = _seconds(vertex, "started")
        record.completed = _seconds(vertex, "completed")
        record.error = vertex.error
        self._saw_time(record.started, record.completed)
        if vertex.error and self._vertex_error is None:
            self._vertex_error = vertex.error
        return record

    def _place(self, record: _Vertex) -> None:
        """Make the vertex a step (or not) from its name."""
        match = _STEP_NAME_RE.fullmatch(record.name)
        if match is None:
            return
        tokens = match.group("prefix").split()
        stage_tokens = [t for t in tokens if "/" not in t]  # "linux/amd64" is a platform
        stage_token = stage_tokens[-1] if stage_tokens else None
        n, m = int(match.group("n")), int(match.group("m"))
        label_instruction = match.group("instr")
        keyword = label_instruction.split(None, 1)[0].upper()
        located = self._layout.locate(stage_token, n, m, keyword) if self._layout is not None else None
        if located is not None:
            instruction, stage = located
            index, stage_label, text = instruction.index, stage.label, instruction.text
        else:
            prefix = match.group("prefix").strip()
            if prefix not in self._fallback_offsets:
                self._fallback_offsets[prefix] = self._fallback_base
                self._fallback_base += m
            index = self._fallback_offsets[prefix] + n
            unnamed = _UNNAMED_STAGE_RE.fullmatch(stage_token or "")
            stage_label = "0" if stage_token is None else unnamed.group(1) if unnamed else stage_token
            text = label_instruction
        record.step = index
        record.is_from = keyword == "FROM"
        if index not in self._steps:
            self._steps[index] = Step(
                index=index,
                stage=stage_label,
                instruction=text,
                status=StepStatus.PENDING,
                cached=None,
                started_at=None,
                finished_at=None,
            )
            self._notes[index] = _StepNotes()

    def _show(self, record: _Vertex, *, final: bool) -> None:
        """Turn the vertex's state into events: a step's change, or BuildKit's own progress line."""
        done = final and (record.completed is not None or bool(record.error))
        if done:
            self._flush((record.digest, "stdout"))
            self._flush((record.digest, "stderr"))
        if record.step is None:
            if done:
                self._internal_line(record)
            return
        step = self._steps[record.step]
        notes = self._notes[record.step]
        before = dataclasses.replace(step)
        if done and record.error:
            step.status, step.error = StepStatus.FAILED, record.error
            step.cached = None if record.is_from else record.cached
            step.finished_at = record.completed if record.completed is not None else self._now()
        elif done:
            if record.is_from:
                step.status, step.cached = StepStatus.BUILT, None
            else:
                step.status = StepStatus.CACHED if record.cached else StepStatus.BUILT
                step.cached = record.cached
            step.finished_at, step.error = record.completed, None
        elif record.started is not None:
            step.status, step.cached, step.finished_at, step.error = StepStatus.RUNNING, None, None, None
        else:
            step.status, step.cached, step.finished_at, step.error = StepStatus.PENDING, None, None, None
        step.started_at = record.started if record.started is not None else step.started_at
        if step == before and notes.announced:
            return
        notes.announced = True
        self._changed(step)
        if step.status is not StepStatus.PENDING and not notes.header_logged:
            notes.header_logged = True
            self._log(step.index, "system", record.name)
        if step.status in (StepStatus.CACHED, StepStatus.BUILT, StepStatus.FAILED):
            if notes.outcome_logged is not step.status:
                notes.outcome_logged = step.status
                self._log(step.index, "system", self._outcome(step))
        else:
            notes.outcome_logged = None

    @staticmethod
    def _outcome(step: Step) -> str:
        if step.status is StepStatus.CACHED:
            return "CACHED"
        if step.status is StepStatus.FAILED:
            return f"ERROR: {step.error}"
        duration = step.duration_s
        return "DONE" if duration is None else f"DONE {duration:.2f} s"

    def _internal_line(self, record: _Vertex) -> None:
        if record.error:
            if not record.error_logged:
                record.error_logged = True
                self._log(None, "system", f"{record.name} — ERROR: {record.error}")
            return
        if record.done_logged:
            return
        record.done_logged = True
        if record.cached:
            detail = "cached"
        else:
            duration = None
            if record.started is not None and record.completed is not None:
                duration = max(0.0, record.completed - record.started)
            size = sum(record.transfers.values())
            took = f"{duration:.2f} s" if duration is not None else "done"
            detail = f"{_size(size)} in {took}" if size and duration is not None else took
        self._log(None, "system", f"{record.name} — {detail}")

    def _close(self, step: Step, status: StepStatus, *, error: str | None, keep_finish: bool = False) -> None:
        step.status, step.error = status, error
        if not keep_finish or step.finished_at is None:
            step.finished_at = self._now()
        self._changed(step)
        if status is StepStatus.FAILED:
            self._log(step.index, "system", self._outcome(step))

    def _saw_time(self, *stamps: float | None) -> None:
        for stamp in stamps:
            if stamp is not None and (self._server_now is None or stamp > self._server_now):
                self._server_now = stamp

    def _now(self) -> float:
        """When something ended that the engine gave no time for: the engine's latest time, so a step's
        times all come from one clock (ours only when the engine sent no time at all)."""
        return self._server_now if self._server_now is not None else self._clock()

    # -- lines ---------------------------------------------------------------------------------------

    def _vertex_line(self, digest: str, stream: str, text: str) -> None:
        record = self._vertexes.get(digest)
        if record is None:
            self._log(None, stream, text)
        elif record.step is None:
            self._log(None, "system", text)  # BuildKit's own work printing something
        else:
            self._log(record.step, stream, text)

    def _flush(self, key: tuple[str, str]) -> None:
        buffer = self._buffers.pop(key, None)
        if buffer is not None and (text := buffer.flush()) is not None:
            self._vertex_line(key[0], key[1], text)

    # -- events --------------------------------------------------------------------------------------

    def _log(self, step: int | None, stream: str, text: str) -> None:
        self._events.append(LogLine(step=step, stream=stream, text=text))

    def _changed(self, step: Step) -> None:
        self._events.append(StepChanged(step=dataclasses.replace(step)))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
