"""Engine build streams -> one step model for both builders.

Everything downstream (database, websocket, UI) sees the same events whichever builder ran a build:

* :class:`StepChanged` -- a snapshot of a :class:`Step` whenever it appears or changes state;
* :class:`LogLine` -- one line of log text, tied to a step index (or ``None`` before the first step);
* :class:`BuildResult` -- exactly once, at the end, from the parser's ``finish()``.

The shared pieces (:class:`StepStatus`, :class:`Step`, the events, :func:`iter_documents`) know nothing
about either builder. :class:`ClassicParser` holds the classic builder's rules. This module is pure:
no Docker, no Flask, no database; time comes from an injectable clock.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "STREAM_ENDED_ERROR",
    "BuildResult",
    "ClassicParser",
    "Event",
    "LogLine",
    "MAX_LINE_CHARS",
    "Step",
    "StepChanged",
    "StepStatus",
    "iter_documents",
]

#: The error a build gets when its stream stops before the engine said it was done.
STREAM_ENDED_ERROR = "The build stream ended before the build finished."


# --------------------------------------------------------------------------------------------------
# The step model (builder-neutral)
# --------------------------------------------------------------------------------------------------


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    CACHED = "cached"
    BUILT = "built"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # in a stage the chosen target does not need


@dataclass
class Step:
    """One Dockerfile step as the UI and the database see it."""

    index: int  # 1-based, Dockerfile order (the N of "Step N/M")
    stage: str  # the stage's "AS name", else its number counted from 0, as a string
    instruction: str  # the instruction as the engine printed it
    status: StepStatus
    cached: bool | None  # None where the engine makes no cache decision (FROM)
    started_at: float | None  # clock() seconds
    finished_at: float | None
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """The API's step object; times stay floats (clock seconds), the caller formats them."""
        return {
            "index": self.index,
            "stage": self.stage,
            "instruction": self.instruction,
            "status": self.status.value,
            "cached": self.cached,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "error": self.error,
        }


@dataclass(frozen=True)
class StepChanged:
    """A step appeared or changed state. ``step`` is a snapshot: later changes never alter it."""

    step: Step


@dataclass(frozen=True)
class LogLine:
    """One line of build log, without its newline.

    ``stream`` is ``"stdout"`` or ``"stderr"`` for what a step's command printed, ``"system"`` for the
    builder's own lines (``Step 2/5 : ...``, `` ---> Using cache``, errors).
    """

    step: int | None
    stream: str
    text: str


@dataclass(frozen=True)
class BuildResult:
    """The build's outcome; emitted exactly once, last, by the parser's ``finish()``."""

    image_id: str | None
    error: str | None


Event = StepChanged | LogLine | BuildResult


# --------------------------------------------------------------------------------------------------
# Response body -> JSON documents (builder-neutral)
# --------------------------------------------------------------------------------------------------

_JSON_WHITESPACE = re.compile(r"[ \t\r\n]*")


def iter_documents(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The engine's response body as raw byte chunks -> one dict per JSON document.

    Chunks may split anywhere: mid-line, mid-JSON, mid UTF-8 character. Documents are separated by
    newlines (the engine writes ``\\r\\n``) and/or simply concatenated. Bytes are decoded incrementally
    with ``errors="replace"``: a multibyte character split across chunks survives, invalid bytes become
    U+FFFD. A line that is not JSON is skipped; JSON values that are not objects are skipped. A truncated
    final document (the stream was cut) is dropped silently -- the caller learns of the cut from the
    missing result. Pretty-printed (multi-line) documents are not supported; the engine never sends them.
    """
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    decoder = json.JSONDecoder()
    buffer = ""
    for chunk in chunks:
        text = utf8.decode(chunk)
        if not text:
            continue
        buffer += text
        # A JSON object ends with "}": until one arrives nothing new can complete.
        if "}" in text:
            buffer = yield from _drain(decoder, buffer)
    buffer += utf8.decode(b"", final=True)
    yield from _drain(decoder, buffer)


def _drain(decoder: json.JSONDecoder, buffer: str) -> Generator[dict[str, Any], None, str]:
    """Yield every complete document at the start of ``buffer``; return what is left over."""
    pos = 0
    end_of_buffer = len(buffer)
    while True:
        match = _JSON_WHITESPACE.match(buffer, pos)
        pos = match.end() if match else pos
        if pos >= end_of_buffer:
            break
        try:
            value, pos_after = decoder.raw_decode(buffer, pos)
        except json.JSONDecodeError:
            newline = buffer.find("\n", pos)
            if newline < 0:
                break  # an incomplete document: wait for more text
            pos = newline + 1  # a complete line that is not a document: skip it
            continue
        if isinstance(value, dict):
            yield value
        pos = pos_after
    return buffer[pos:]


# --------------------------------------------------------------------------------------------------
# The classic builder
# --------------------------------------------------------------------------------------------------

_STDERR_OPEN = "\x1b[91m"
_STDERR_CLOSE = "\x1b[0m"

_STEP_RE = re.compile(r"Step (\d+)/(\d+) : (.*)", re.DOTALL)
_USING_CACHE_RE = re.compile(r" ---> Using cache")
_RUNNING_IN_RE = re.compile(r" ---> Running in ([0-9a-f]+)")
_REMOVING_RE = re.compile(r"Removing intermediate container ([0-9a-f]+)")
_REMOVED_RE = re.compile(r" ---> Removed intermediate container ([0-9a-f]+)")  # Engine 25+
_CLOSE_RE = re.compile(r" --->(?: ([0-9a-f]{12,64}))? ?")  # " ---> <id>", or " ---> " after FROM scratch
_SUCCESS_RE = re.compile(r"Successfully built ([0-9a-f]+)")
_BUILDER_LINE_RE = re.compile(
    r"Sending build context to Docker daemon.*"
    r"|Successfully tagged .+"
    r"|# Executing \d+ build triggers?"
    r"|Build cancelled"
)
_FROM_RE = re.compile(r"FROM\s", re.IGNORECASE)
_STAGE_NAME_RE = re.compile(r"\sAS\s+(\S+)\s*$", re.IGNORECASE)

#: A line longer than this without a newline is cut into pieces so one build cannot grow a buffer forever.
MAX_LINE_CHARS = 64 * 1024


class ClassicParser:
    """Classic builder documents -> events. One instance per build.

    Feed it the documents of ``POST /build`` (no ``version``) in order with :meth:`feed`, then call
    :meth:`finish` once when the stream ends. Each call returns the events it caused, in order.

    How the engine's text becomes steps:

    * ``Step N/M : INSTR`` starts step N (status ``running``, ``started_at`` = now) and closes the previous
      step if nothing closed it. The first ``FROM`` starts stage ``"0"``, each later ``FROM`` the next
      stage; ``FROM x AS name`` names it ``name``. Steps before the first ``FROM`` (global ``ARG``s, which
      the engine numbers too but never closes) have stage ``""``; the next step closes them as ``built``
      with ``cached`` None.
    * `` ---> Using cache`` sets ``cached`` True; `` ---> Running in X`` sets it False (a container runs).
    * `` ---> <12 hex id>`` closes the step: ``cached`` if Using cache came first, else ``built`` (``cached``
      False). A ``FROM`` step is closed by `` ---> <id>`` or `` ---> `` (``FROM scratch``) as ``built``
      with ``cached`` None: the engine makes no cache decision for it.
    * ``{"aux": {"ID": ...}}`` ends each stage; the last one is the image, provided the build completed
      (the last step, N = M, closed before it) and no error came.
    * ``{"errorDetail": ...}`` fails the running step (else the last step) with ``errorDetail.message``
      (``error`` as fallback) and is also logged as a ``system`` line.

    How text becomes log lines: every ``{"stream": ...}`` document is one write by the engine. A write
    wrapped whole in ``ESC[91m ... ESC[0m`` is the step's stderr (the wrapper is removed); any other is
    stdout or the builder's own text. stdout and stderr are cut into lines separately, so a partial line
    on one does not swallow the other. Builder lines (``Step``, `` ---> ...``, ``Removing intermediate
    container``, ``Successfully built``, ...) are ``system``; so is any text while no step is running
    (before the first step, between a step's close and the next step); text while a step runs is
    ``stdout``. Builder lines are only recognised where the engine can print them: while a step's
    container runs, only its removal or the step's close count, so a program that prints ``Step 1/2 : x``
    does not start a step. When a command leaves a line unfinished (``printf abc``) and the engine then
    writes ``Removing intermediate container X``, the two are separated again at the write boundary.
    ``{"status": ...}`` documents (pulling a ``FROM`` image) become ``system`` lines, except progress
    updates. Other ANSI codes a program printed stay in the text.

    Times are arrival times from ``clock()``: the classic builder sends no timestamps.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._events: list[Event] = []
        self._steps: list[Step] = []
        self._current: Step | None = None  # the step text is attributed to (the last one started)
        self._current_is_from = False
        self._in_container = False  # between " ---> Running in" and the container's removal / the close
        self._stages_seen = 0
        self._stage = ""
        self._total: int | None = None  # the M of "Step N/M"
        self._out_buffer = ""  # unfinished stdout line
        self._out_write_starts: list[int] = []  # offsets in _out_buffer where a new engine write began
        self._err_buffer = ""  # unfinished stderr line
        self._image_id: str | None = None
        self._complete = False
        self._error: str | None = None
        self._finished = False

    # -- public --------------------------------------------------------------------------------------

    def feed(self, doc: dict[str, Any]) -> list[Event]:
        """One document of the engine's stream -> the events it causes (possibly none)."""
        if self._finished:
            return []
        self._events = []
        stream = doc.get("stream")
        if isinstance(stream, str) and stream:
            self._on_stream(stream)
        status = doc.get("status")
        if isinstance(status, str) and status:
            self._on_status(doc, status)
        aux = doc.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
            self._on_aux(aux["ID"])
        if doc.get("errorDetail") or doc.get("error"):
            self._on_error(doc)
        return self._take_events()

    @property
    def answered(self) -> bool:
        """Whether the engine reported how the build ended (an image id or an error)."""
        return self._image_id is not None or self._error is not None

    def finish(self, *, cancelled: bool = False, error: str | None = None) -> list[Event]:
        """End of stream -> the last events, ending with the one :class:`BuildResult`.

        Flushes an unfinished line. A step still running becomes ``cancelled`` if ``cancelled``, else
        ``failed`` with ``error`` (e.g. "lost connection to the Docker engine"), else ``failed`` with
        :data:`STREAM_ENDED_ERROR`. The result's ``image_id`` is the last aux ID if the build completed and
        no error was reported (by the engine or as ``error``); its ``error`` is the engine's message, else
        ``error``, else :data:`STREAM_ENDED_ERROR` when the stream stopped early without ``cancelled``,
        else None. A second call returns no events.
        """
        if self._finished:
            return []
        self._events = []
        self._flush_partial_lines()
        step = self._current
        if step is not None and step.status is StepStatus.RUNNING:
            if cancelled:
                self._end_step(StepStatus.CANCELLED)
            else:
                self._end_step(StepStatus.FAILED, error=error or STREAM_ENDED_ERROR)
        if self._error is not None:
            result = BuildResult(image_id=None, error=self._error)
        elif error:
            result = BuildResult(image_id=None, error=error)
        elif self._complete:
            result = BuildResult(image_id=self._image_id, error=None)
        elif cancelled:
            result = BuildResult(image_id=None, error=None)
        else:
            result = BuildResult(image_id=None, error=STREAM_ENDED_ERROR)
        self._events.append(result)
        self._finished = True
        return self._take_events()

    # -- documents -----------------------------------------------------------------------------------

    def _on_stream(self, text: str) -> None:
        wrapped = len(text) >= len(_STDERR_OPEN) + len(_STDERR_CLOSE)
        if wrapped and text.startswith(_STDERR_OPEN) and text.endswith(_STDERR_CLOSE):
            self._feed_stderr(text[len(_STDERR_OPEN) : -len(_STDERR_CLOSE)])
        else:
            self._feed_stdout(text)

    def _on_status(self, doc: dict[str, Any], status: str) -> None:
        if doc.get("progressDetail") or doc.get("progress"):
            return  # "Downloading [==>   ]" updates: far too many to be log lines
        ident = doc.get("id")
        text = f"{ident}: {status}" if isinstance(ident, str) and ident else status
        for line in text.splitlines() or [""]:
            self._log("system", line)

    def _on_aux(self, image_id: str) -> None:
        self._image_id = image_id
        running = self._current is not None and self._current.status is StepStatus.RUNNING
        last_index = self._steps[-1].index if self._steps else 0
        if not running and (self._total is None or last_index >= self._total):
            self._complete = True

    def _on_error(self, doc: dict[str, Any]) -> None:
        detail = doc.get("errorDetail")
        message = detail.get("message") if isinstance(detail, dict) else None
        if not isinstance(message, str) or not message:
            message = doc.get("error")
        if not isinstance(message, str) or not message:
            message = "The Docker engine reported an error without a message."
        self._flush_partial_lines()
        for line in message.splitlines() or [message]:
            self._log("system", line)
        self._in_container = False
        if self._steps:
            step = self._steps[-1]
            if step.status is not StepStatus.FAILED:
                step.status = StepStatus.FAILED
                step.error = message
                if step.finished_at is None:
                    step.finished_at = self._clock()
                self._changed(step)
        if self._error is None:
            self._error = message

    # -- text -> lines -------------------------------------------------------------------------------

    def _feed_stdout(self, text: str) -> None:
        if self._out_buffer:
            self._out_write_starts.append(len(self._out_buffer))
        if "\n" not in text:
            self._out_buffer += text
        else:
            buffer, write_starts = self._out_buffer + text, self._out_write_starts
            *complete, self._out_buffer = buffer.split("\n")
            offset = 0
            for line in complete:
                end = offset + len(line)
                starts = [s - offset for s in write_starts if offset < s < end]
                offset = end + 1
                self._stdout_line(line, starts)
            self._out_write_starts = [s - offset for s in write_starts if s > offset]
        if len(self._out_buffer) > MAX_LINE_CHARS:
            line, self._out_buffer, self._out_write_starts = self._out_buffer, "", []
            self._stdout_line(line, [])

    def _feed_stderr(self, text: str) -> None:
        *complete, self._err_buffer = (self._err_buffer + text).split("\n")
        for line in complete:
            self._log("stderr", line.removesuffix("\r"))
        if len(self._err_buffer) > MAX_LINE_CHARS:
            line, self._err_buffer = self._err_buffer, ""
            self._log("stderr", line)

    def _flush_partial_lines(self) -> None:
        if self._out_buffer:
            line, starts = self._out_buffer, self._out_write_starts
            self._out_buffer, self._out_write_starts = "", []
            self._stdout_line(line, starts)
        if self._err_buffer:
            line, self._err_buffer = self._err_buffer, ""
            self._log("stderr", line.removesuffix("\r"))

    def _stdout_line(self, line: str, write_starts: list[int]) -> None:
        """A complete line of unwrapped text: a builder line, a program's output, or both glued."""
        line = line.removesuffix("\r")
        if self._builder_line(line):
            return
        # An engine write glued to an unfinished output line ("abc" + "Removing intermediate ...").
        for start in write_starts:
            if self._is_builder_line(line[start:]):
                self._output(line[:start])
                self._builder_line(line[start:])
                return
        self._output(line)

    def _output(self, text: str) -> None:
        running = self._current is not None and self._current.status is StepStatus.RUNNING
        self._log("stdout" if running else "system", text)

    # -- builder lines -------------------------------------------------------------------------------

    def _is_builder_line(self, line: str) -> bool:
        if self._in_container:
            return any(p.fullmatch(line) for p in (_REMOVING_RE, _REMOVED_RE, _CLOSE_RE))
        return bool(
            self._step_match(line)
            or any(
                p.fullmatch(line)
                for p in (
                    _USING_CACHE_RE,
                    _RUNNING_IN_RE,
                    _REMOVING_RE,
                    _REMOVED_RE,
                    _CLOSE_RE,
                    _SUCCESS_RE,
                    _BUILDER_LINE_RE,
                )
            )
        )

    def _step_match(self, line: str) -> re.Match[str] | None:
        match = _STEP_RE.fullmatch(line)
        if match is None:
            return None
        last_index = self._steps[-1].index if self._steps else 0
        return match if int(match.group(1)) > last_index else None

    def _builder_line(self, line: str) -> bool:
        """Handle ``line`` if it is one of the builder's own; say whether it was."""
        if not self._is_builder_line(line):
            return False
        if self._err_buffer:  # the step's unfinished stderr line belongs before what the builder says now
            line_err, self._err_buffer = self._err_buffer, ""
            self._log("stderr", line_err.removesuffix("\r"))
        step = self._current
        running = step is not None and step.status is StepStatus.RUNNING
        if (match := self._step_match(line)) is not None:
            self._start_step(int(match.group(1)), int(match.group(2)), match.group(3))
            self._log("system", line)
        elif _USING_CACHE_RE.fullmatch(line):
            self._log("system", line)
            if running and step is not None and not self._current_is_from and step.cached is not True:
                step.cached = True
                self._changed(step)
        elif _RUNNING_IN_RE.fullmatch(line):
            self._in_container = True
            self._log("system", line)
            if running and step is not None and not self._current_is_from and step.cached is None:
                step.cached = False
                self._changed(step)
        elif _REMOVING_RE.fullmatch(line) or _REMOVED_RE.fullmatch(line):
            self._in_container = False
            self._log("system", line)
        elif _CLOSE_RE.fullmatch(line):
            self._in_container = False
            self._log("system", line)
            if running and step is not None:
                if self._current_is_from:
                    self._end_step(StepStatus.BUILT)  # no cache decision: cached stays None
                else:
                    step.cached = bool(step.cached)  # no "Using cache" before the id: built afresh
                    self._end_step(StepStatus.CACHED if step.cached else StepStatus.BUILT)
        else:
            if _SUCCESS_RE.fullmatch(line) and not running:
                self._complete = True
            self._log("system", line)
        return True

    # -- steps ---------------------------------------------------------------------------------------

    def _start_step(self, index: int, total: int, instruction: str) -> None:
        previous = self._current
        if previous is not None and previous.status is StepStatus.RUNNING:
            # Nothing closed it (a global ARG never gets " ---> <id>"): it keeps whatever cache
            # decision it saw, None if none.
            self._end_step(StepStatus.CACHED if previous.cached else StepStatus.BUILT)
        is_from = bool(_FROM_RE.match(instruction))
        if is_from:
            self._stages_seen += 1
            name = _STAGE_NAME_RE.search(instruction)
            self._stage = name.group(1) if name else str(self._stages_seen - 1)
        step = Step(
            index=index,
            stage=self._stage,
            instruction=instruction,
            status=StepStatus.RUNNING,
            cached=None,
            started_at=self._clock(),
            finished_at=None,
        )
        self._steps.append(step)
        self._current = step
        self._current_is_from = is_from
        self._in_container = False
        self._total = total
        self._complete = False
        self._changed(step)

    def _end_step(self, status: StepStatus, *, error: str | None = None) -> None:
        """Close the current step with ``status`` (its cache flag is the caller's business)."""
        step = self._current
        assert step is not None
        step.status = status
        if error is not None:
            step.error = error
        step.finished_at = self._clock()
        self._in_container = False
        self._changed(step)

    # -- events --------------------------------------------------------------------------------------

    def _log(self, stream: str, text: str) -> None:
        index = self._current.index if self._current is not None else None
        self._events.append(LogLine(step=index, stream=stream, text=text))

    def _changed(self, step: Step) -> None:
        self._events.append(StepChanged(step=dataclasses.replace(step)))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
