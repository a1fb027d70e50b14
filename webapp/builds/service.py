"""Builds: accepting them, the bounded worker pool that runs them, and settling them after a restart.

A build submitted while a worker is idle is recorded `running` and handed to that worker in memory
(`Job`, `Handover`); otherwise it is queued, and a worker claims the oldest queued build with a conditional
UPDATE whose row count it checks, so two workers (or a cancel racing a claim) can never both own a build.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select, update

from webapp.builds import context
from webapp.builds import edits as edits_mod
from webapp.builds.buildkit import BuildKitParser, dockerfile_stages
from webapp.builds.compat import check_dockerfile, explain_engine_error
from webapp.builds.insight import BuildFacts, MissExplainer, base_references, compare
from webapp.builds.journal import BuildJournal
from webapp.builds.manifest import load_manifest, manifest_path
from webapp.builds.options import SECRET_MASK, BuildOptions, is_secret_arg
from webapp.builds.present import build_to_dict, compare_urls, step_to_dict
from webapp.builds.steps import (
    BuildResult,
    ClassicParser,
    Event,
    LogLine,
    StepChanged,
    StepStatus,
    iter_documents,
)
from webapp.db import begin_write
from webapp.engine import BuildRequest, BuildStream, Engine, EngineError
from webapp.errors import BadRequest, Conflict, EngineUnavailable, LayerdeckError, NotFound, TooLarge
from webapp.extensions import db
from webapp.models import Build, BuildEvent, BuildStatus, Step
from webapp.uploads import SpooledUpload

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "Layerdeck was restarted while this build was {was}; the log up to then is kept."


@dataclass(frozen=True)
class Upload:
    """What the user sent: a saved archive (on disk, or a raw body received into a SpooledUpload), or pasted
    Dockerfile text."""

    archive: Path | None = None
    dockerfile_text: str | None = None
    from_folder: bool = False  # a folder the page packed into a tar
    archive_sha256: str | None = None  # computed while the upload was received, when it was
    spooled: SpooledUpload | None = None

    def archive_size(self) -> int | None:
        if self.spooled is not None:
            return self.spooled.size
        return self.archive.stat().st_size if self.archive is not None else None

    def archive_path(self) -> Path | None:
        """The archive as a file (a spooled one is written out only now, when it must be unpacked)."""
        return self.spooled.path() if self.spooled is not None else self.archive


def data_path(app: Flask, *parts: str) -> Path:
    return Path(app.config["DATA_DIR"]).resolve().joinpath(*parts)


def limits_for(app: Flask) -> context.Limits:
    return context.Limits(
        max_upload_bytes=app.config["MAX_UPLOAD_SIZE"],
        max_unpacked_bytes=app.config["MAX_CONTEXT_SIZE"],
        max_files=app.config["MAX_CONTEXT_FILES"],
    )


@dataclass(frozen=True)
class StoredContext:
    """A cleaned context for a new build: a fresh file to move into place, or one an earlier build stored."""

    source: str
    files: int
    bytes: int
    digest: str
    dockerfile_text: str
    fresh: Path | None = None  # a packed tar under tmp/, to become contexts/<id>.tar
    existing: str | None = None  # an earlier build's context_file (contexts are never changed once stored)


def upload_digest(upload: Upload, dockerfile: str) -> str:
    """What identifies an upload: its bytes and the Dockerfile path (the only option packing depends on)."""
    if upload.archive_sha256 is not None:
        content = upload.archive_sha256
    elif upload.archive is not None:
        content = sha256_file(upload.archive)
    else:
        text = (upload.dockerfile_text or "").encode("utf-8", "surrogatepass")
        content = "text:" + hashlib.sha256(text).hexdigest()
    return hashlib.sha256(f"layerdeck-context-v2\0{dockerfile}\0{content}".encode()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024**2):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who asks for a build: the owner of the row, and whether the tag policy's admin exception applies."""

    user_id: int | None = None
    is_admin: bool = False


OnRecord = Callable[[Build], None]  # called inside the transaction that records a build (the audit entry)


def precheck(app: Flask, options: BuildOptions, by: Actor) -> None:
    """What a build's options alone can be refused for: no engine answers, or the tag is protected."""
    app.extensions["layerdeck.runner"].engine.ping()
    check_tag_policy(app, options.tag, by)


# Threads for the side work of a build (its prechecks, what its worker needs besides the stream), kept
# between builds: starting a thread waits for it to run, which on a busy two-core machine cost milliseconds
# on each build's way to the engine.
SIDE_WORKERS = 8
SIDE_WORK = concurrent.futures.ThreadPoolExecutor(max_workers=SIDE_WORKERS, thread_name_prefix="layerdeck-side")


class Precheck:
    """The checks of a build that need only its options (the engine answers, the tag may be written), run on
    a side thread while the request's body is still arriving. result() raises what they raised."""

    def __init__(self, app: Flask, options: BuildOptions, by: Actor) -> None:
        self._future = SIDE_WORK.submit(self._check, app, options, by)

    @staticmethod
    def _check(app: Flask, options: BuildOptions, by: Actor) -> None:
        with app.app_context():
            precheck(app, options, by)

    def result(self) -> None:
        self._future.result()


def submit_build(app: Flask, upload: Upload, options: BuildOptions, by: Actor | None = None,
                 on_record: OnRecord | None = None, checked: Precheck | None = None,
                 early: EarlyStart | None = None) -> Build:
    """Check the engine and the tag, turn the upload into a clean context tar, then record the build (running
    on a free worker, or queued).

    The same bytes uploaded again (the everyday case: build, change nothing or just a setting, build
    again) reuse the context the first upload was cleaned into instead of unpacking it once more; `early`
    is the engine's build of that context, when it was started while the upload was still arriving.
    Nothing is written to the database until the context is known to be good, and the context file is
    removed again if the row cannot be written: a refused upload leaves nothing behind.
    """
    by = by or Actor()
    # Checked on a side thread while the stored context is looked up and the row is made; the result is
    # waited for before anything is unpacked or handed to the engine.
    checked = checked or Precheck(app, options, by)
    limits = limits_for(app)
    dockerfile = context.normalise_dockerfile_path(options.dockerfile)
    size = upload.archive_size()
    if size is not None and size > limits.max_upload_bytes:
        raise TooLarge(
            f"The upload is larger than the {limits.max_upload_bytes / 1024**2:g} MiB limit "
            "(LAYERDECK_MAX_UPLOAD_SIZE).", code="upload_too_large")
    digest = upload_digest(upload, dockerfile)
    if early is not None and early.digest != digest:
        early.abandon()  # other bytes of the same size: stop the engine at once
        early = None
    earlier = _stored_context(app, digest, limits)
    if earlier is not None:
        # The context is known: the engine can start on it while the build is recorded (see EarlyStart).
        with _until_taken(_start_early(app, options, earlier, dockerfile) if early is None else None) as started:
            build = _record_build(app, options, dockerfile, earlier, by=by, on_record=on_record,
                                  checked=checked, early=early or started)
        _remember_upload(app, upload, build)
        return build
    if early is not None:
        early.abandon()
    checked.result()
    archive = upload.archive_path()
    if archive is None and upload.dockerfile_text is None:
        raise Conflict(
            "Layerdeck has no stored context with that digest (for this Dockerfile path); "
            "send the archive itself.", code="context_unknown")
    tmp = data_path(app, "tmp", f"context-{uuid.uuid4().hex}.tar")
    try:
        if archive is not None:
            info = context.pack_archive(archive, tmp, dockerfile, limits)
        else:
            info = context.pack_dockerfile_text(upload.dockerfile_text or "", tmp, dockerfile)
        source = "folder" if upload.from_folder and info.source == "tar" else info.source
        fresh = StoredContext(source, info.files, info.bytes, digest, info.dockerfile_text, fresh=tmp)
        build = _record_build(app, options, dockerfile, fresh, by=by, on_record=on_record)
        _remember_upload(app, upload, build)
        return build
    finally:
        tmp.unlink(missing_ok=True)
        manifest_path(tmp).unlink(missing_ok=True)


def _stored_context(app: Flask, digest: str, limits: context.Limits) -> StoredContext | None:
    earlier = db.session.scalars(
        select(Build).where(Build.upload_digest == digest).order_by(Build.id.desc()).limit(1)
    ).first()
    if earlier is None or not data_path(app, earlier.context_file).is_file():
        return None
    if earlier.context_files > limits.max_files or earlier.context_bytes > limits.max_unpacked_bytes:
        return None  # the caps were lowered since: unpack again so the refusal says why
    return StoredContext(earlier.context_source, earlier.context_files, earlier.context_bytes, digest,
                         earlier.dockerfile_text, existing=earlier.context_file)


def _remember_upload(app: Flask, upload: Upload, build: Build) -> None:
    if upload.spooled is not None:  # a raw body: its Content-Length is the archive's size
        app.extensions["layerdeck.runner"].upload_sizes.remember(upload.spooled.size, build.dockerfile,
                                                                 _same_context(build))


# The re-uploads the engine is started on before they have arrived. From 1 MiB: below it receiving takes a
# few milliseconds anyway, and small tars share sizes (tar pads to 10 KiB records), so guesses would often
# be wrong. Up to 64 MiB: a wrong guess costs the engine reading the stored context and a cached solve
# until the digest says it was wrong.
EARLY_START_BYTES = (1024**2, 64 * 1024**2)


class UploadSizes:
    """The contexts the latest raw archive uploads were stored as, by the upload's size and Dockerfile path
    (all the packing depends on besides the bytes): an upload announcing one of these sizes is most likely
    the same bytes again. Kept in memory, so the guess costs no query while the request waits."""

    def __init__(self, keep: int = 256) -> None:
        self._keep = keep
        self._stored: collections.OrderedDict[tuple[int, str], StoredContext] = collections.OrderedDict()
        self._lock = threading.Lock()

    def remember(self, size: int, dockerfile: str, stored: StoredContext) -> None:
        with self._lock:
            self._stored[(size, dockerfile)] = stored
            self._stored.move_to_end((size, dockerfile))
            while len(self._stored) > self._keep:
                self._stored.popitem(last=False)

    def get(self, size: int, dockerfile: str) -> StoredContext | None:
        with self._lock:
            return self._stored.get((size, dockerfile))


class EarlyStart:
    """The engine's BuildKit build of a stored context, asked for before the build is recorded: while an
    upload of the same size is still arriving (a guess), or as soon as a digest names the context. A
    re-upload of the same archive (the cache demo's everyday case) then overlaps the engine's work with its
    own transfer instead of preceding it: when the upload's digest names that context and the build
    recorded for it asks the engine for exactly this, its worker takes the engine's build over (take()).
    It is started untagged, and the worker tags the image once it is built, so a wrong guess can never
    move a tag. Anything else abandon()s it: the engine's build is stopped and nothing is kept."""

    def __init__(self, runner: BuildRunner, request: BuildRequest, digest: str) -> None:
        self.request = request
        self.digest = digest
        self._runner = runner
        self._lock = threading.Lock()
        self._state = "started"  # then taken, or abandoned
        self._stream = SIDE_WORK.submit(runner.engine.start_build, request)

    def take(self, request: BuildRequest) -> bool:
        """Whether the worker of a build asking for `request` takes this engine build over (only once)."""
        same = dataclasses.replace(request, tag=None, build_id=self.request.build_id) == self.request
        with self._lock:
            if self._state != "started" or not same:
                return False
            self._state = "taken"
        self._runner.early_slots.release()  # from now on it counts as the worker's build
        return True

    def stream(self) -> BuildStream:
        """The engine's response (for the worker that took it); raises what start_build raised."""
        return self._stream.result()

    def abandon(self) -> None:
        """Stop the engine's build unless a worker took it; nothing of it is kept. Any thread, any time."""
        with self._lock:
            if self._state != "started":
                return
            self._state = "abandoned"
        SIDE_WORK.submit(self._stop)

    def _stop(self) -> None:
        try:
            stream = self._stream.result()
        except Exception:  # the engine never started it
            self._runner.early_slots.release()
            return
        try:
            self._runner.engine.cancel_build(self.request.build_id or "")
        finally:
            stream.close()
            self._runner.early_slots.release()


def early_start(app: Flask, options: BuildOptions, size: int | None) -> contextlib.AbstractContextManager[
        EarlyStart | None]:
    """Start the engine on the stored context an upload of `size` bytes most likely is, before it arrives;
    yields None when there is none to guess or the build is not one to guess for (see EarlyStart). Whatever
    was started and not taken by the end of the block is stopped."""
    return _until_taken(_begin_early(app, options, size))


@contextlib.contextmanager
def _until_taken(early: EarlyStart | None) -> Iterator[EarlyStart | None]:
    """`early` for the block; stopped at its end unless a build's worker took it over."""
    try:
        yield early
    finally:
        if early is not None:
            early.abandon()


def _begin_early(app: Flask, options: BuildOptions, size: int | None) -> EarlyStart | None:
    """The engine's build of the context an upload announcing `size` bytes most likely is, or None."""
    if size is None or not EARLY_START_BYTES[0] <= size <= EARLY_START_BYTES[1]:
        return None
    runner: BuildRunner = app.extensions["layerdeck.runner"]
    try:
        dockerfile = context.normalise_dockerfile_path(options.dockerfile)
    except LayerdeckError:
        return None  # the upload will be refused for it
    stored = runner.upload_sizes.get(size, dockerfile)
    return _start_early(app, options, stored, dockerfile) if stored is not None else None


def _start_early(app: Flask, options: BuildOptions, stored: StoredContext, dockerfile: str) -> EarlyStart | None:
    """Ask the engine to build `stored` with `options`, untagged, before the build is recorded; None when the
    build is not one to start early."""
    # Only what a wrong guess cannot make expensive: a BuildKit build (stopped cleanly by /build/cancel)
    # that may use the cache, pulls nothing and has no secret build arg values to send, for a worker that
    # is free to take it over (a queued build would only leave it to be stopped).
    runner: BuildRunner = app.extensions["layerdeck.runner"]
    if (options.no_cache or options.pull or any(is_secret_arg(name) for name in options.build_args)
            or not stored.existing or not runner.has_idle_worker()):
        return None
    try:
        if choose_builder(app, options.builder) != "buildkit":
            return None
        limits = limits_for(app)
        if (stored.files > limits.max_files or stored.bytes > limits.max_unpacked_bytes
                or not data_path(app, stored.existing).is_file()):
            return None
        check_dockerfile(stored.dockerfile_text, "buildkit")
    except LayerdeckError:
        return None  # the upload itself will be refused, or built the ordinary way
    if not runner.early_slots.acquire(blocking=False):
        return None  # as many as the builds that may run at once are being guessed already
    instance = app.config["INSTANCE_ID"]
    request = build_request(app, context_file=stored.existing, builder="buildkit", tag=None,
                            dockerfile=dockerfile, build_args=options.build_args, target=options.target,
                            no_cache=False, pull=False,
                            build_id=f"layerdeck-{instance[:12]}-early-{uuid.uuid4().hex[:12]}")
    return EarlyStart(runner, request, stored.digest)


def build_request(app: Flask, *, context_file: str, builder: str, tag: str | None, dockerfile: str,
                  build_args: dict[str, str], target: str | None, no_cache: bool, pull: bool,
                  build_id: str) -> BuildRequest:
    """What the engine is asked for a build."""
    return BuildRequest(
        context=data_path(app, context_file), builder=builder, tag=tag, dockerfile=dockerfile,
        build_args=build_args, target=target, no_cache=no_cache, pull=pull,
        # One constant label: the classic builder turns each label into an extra LABEL step at the end,
        # so a per-build value would rebuild that step, and change the image id, every time.
        labels={"layerdeck.instance": app.config["INSTANCE_ID"]}, build_id=build_id,
    )


def rebuild(app: Flask, build_id: int, by: Actor | None = None, secrets: dict[str, str] | None = None,
            on_record: OnRecord | None = None) -> Build:
    """Build a build's stored context again with its options. Its secret build args were never kept, so
    their values must come again in `secrets`."""
    source = _rebuild_source(app, build_id)
    options = _rebuild_options(source, secrets or {})
    by = by or Actor()
    stored = _same_context(source)
    checked = Precheck(app, options, by)  # on a side thread, waited for before the row is committed
    # The context is known from the start: the engine can be at it while the build is recorded (EarlyStart).
    with _until_taken(_start_early(app, options, stored, source.dockerfile)) as started:
        return _record_build(app, options, source.dockerfile, stored, rebuild_of=source.id, by=by,
                             on_record=on_record, checked=checked, early=started)


def edit_and_rebuild(app: Flask, build_id: int, edits: dict[str, bytes], by: Actor | None = None,
                     secrets: dict[str, str] | None = None,
                     on_record: Callable[[Build, list[str]], None] | None = None) -> tuple[Build, list[str]]:
    """Rebuild with some of the stored context's text files replaced (`edits`: path -> new bytes), into a
    new context file: every other file stays byte-identical, so the cache hits up to the first step that
    copies a changed file. Returns the new build and the paths that really changed (none: a plain rebuild
    of the same context). A refused edit leaves no file and no row behind."""
    source = _rebuild_source(app, build_id)
    options = _rebuild_options(source, secrets or {})
    by = by or Actor()
    precheck(app, options, by)
    limits = limits_for(app)
    tmp = data_path(app, "tmp", f"context-{uuid.uuid4().hex}.tar")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        edited = edits_mod.write_edited(
            data_path(app, source.context_file), tmp, edits, dockerfile=source.dockerfile,
            dockerfile_text=source.dockerfile_text, limits=limits, mtime=int(time.time()))
        if not edited.changed:
            stored = _same_context(source)
        else:
            digest = upload_digest(Upload(archive_sha256=sha256_file(tmp)), source.dockerfile)
            stored = _stored_context(app, digest, limits) or StoredContext(
                "edited", edited.files, edited.bytes, digest, edited.dockerfile_text, fresh=tmp)
        changed = edited.changed
        build = _record_build(app, options, source.dockerfile, stored, rebuild_of=source.id, by=by,
                              on_record=(lambda b: on_record(b, changed)) if on_record else None)
        return build, changed
    finally:
        tmp.unlink(missing_ok=True)


def context_path(app: Flask, build: Build) -> Path:
    """Where a build's stored context is, or 409 context_gone."""
    path = data_path(app, build.context_file) if build.context_file else None
    if path is None or not path.is_file():
        raise Conflict(f"Build #{build.id}'s context is no longer stored.", code="context_gone")
    return path


def _rebuild_source(app: Flask, build_id: int) -> Build:
    source = db.session.get(Build, build_id)
    if source is None:
        raise NotFound(f"There is no build #{build_id}.", code="no_such_build")
    if not source.context_file or not data_path(app, source.context_file).is_file():
        raise Conflict(f"Build #{build_id}'s context is no longer stored, so it cannot be rebuilt.",
                       code="context_gone")
    return source


def _rebuild_options(source: Build, secrets: dict[str, str]) -> BuildOptions:
    """The source build's options, with the values of its secret build args (never stored) from `secrets`."""
    needed = sorted(json.loads(source.secret_args or "{}"))
    extra = sorted(set(secrets) - set(needed))
    if extra:
        raise BadRequest(f"A rebuild takes only the values of the build's secret args; {', '.join(extra)} "
                         "is not one of them.", code="invalid_build_args")
    missing = [name for name in needed if name not in secrets]
    if missing:
        err = BadRequest(
            f"Build #{source.id} had secret build args ({', '.join(missing)}); Layerdeck never keeps their "
            "values, so send them again with the rebuild (or start a new build).", code="secrets_needed")
        err.extra["secret_build_args"] = missing
        raise err
    return BuildOptions(builder=source.builder, tag=source.tag, dockerfile=source.dockerfile,
                        build_args={**source.args(), **secrets}, target=source.target,
                        no_cache=source.no_cache, pull=source.pull)


def _same_context(source: Build) -> StoredContext:
    return StoredContext(source.context_source, source.context_files, source.context_bytes,
                         source.upload_digest or "", source.dockerfile_text, existing=source.context_file)


def check_tag_policy(app: Flask, tag: str | None, by: Actor) -> None:
    """LAYERDECK_TAG_POLICY: one person must not overwrite an image others build FROM. By default a tag
    held by an image this Layerdeck did not build is refused; `protect-others` also refuses a tag last
    built here by someone else (admins excepted)."""
    policy = app.config["TAG_POLICY"]
    if not tag or policy == "open":
        return
    runner: BuildRunner = app.extensions["layerdeck.runner"]
    image = runner.engine.inspect_image(tag)
    if image is None:
        return
    labels = (image.get("Config") or {}).get("Labels") or {}
    if labels.get("layerdeck.instance") != app.config["INSTANCE_ID"]:
        raise Conflict(
            f'The tag "{tag}" belongs to an image Layerdeck did not build (other images may be built FROM '
            "it), so a build may not replace it. Choose another tag.", code="tag_protected")
    if policy != "protect-others" or by.is_admin:
        return
    last = db.session.scalars(
        select(Build).where(Build.tag == tag, Build.status == BuildStatus.SUCCEEDED)
        .order_by(Build.id.desc()).limit(1)
    ).first()
    if last is not None and last.created_by is not None and last.created_by != by.user_id:
        from webapp.models import User

        owner = db.session.get(User, last.created_by)
        raise Conflict(
            f'The tag "{tag}" was last built by {owner.name if owner else "someone else"}; choose another tag, '
            "or ask them or an admin.", code="tag_protected")


def default_builder(app: Flask) -> tuple[str, str | None]:
    """The builder used when a request names none, and a note for the page when it is not BuildKit."""
    setting = app.config["DEFAULT_BUILDER"]
    if setting != "auto":
        return setting, None
    runner: BuildRunner = app.extensions["layerdeck.runner"]
    try:
        if runner.engine.supports_buildkit():
            return "buildkit", None
    except EngineUnavailable:
        return "buildkit", None  # nothing builds until the engine answers; ask again then
    return "classic", "This Docker engine has no BuildKit, so builds use the classic builder."


def choose_builder(app: Flask, requested: str | None) -> str:
    if requested is None:
        return default_builder(app)[0]
    runner: BuildRunner = app.extensions["layerdeck.runner"]
    if requested == "buildkit" and not runner.engine.supports_buildkit():
        raise BadRequest("This Docker engine has no BuildKit (it needs Docker 18.09 or later on Linux); "
                         "choose the classic builder.", code="builder_unavailable")
    return requested


def secret_digest(app: Flask, value: str) -> str:
    """A keyed digest of a secret build arg: tells whether it changed between builds, reveals nothing."""
    return hmac.new(app.config["SECRET_KEY_BYTES"], value.encode(), hashlib.sha256).hexdigest()


def _record_build(app: Flask, options: BuildOptions, dockerfile: str, ctx: StoredContext,
                  rebuild_of: int | None = None, by: Actor | None = None, on_record: OnRecord | None = None,
                  checked: Precheck | None = None, early: EarlyStart | None = None) -> Build:
    runner: BuildRunner = app.extensions["layerdeck.runner"]
    builder = choose_builder(app, options.builder)
    check_dockerfile(ctx.dockerfile_text, builder)
    secrets = {k: v for k, v in options.build_args.items() if is_secret_arg(k)}
    shown = {k: SECRET_MASK if k in secrets else v for k, v in options.build_args.items()}
    begin_write()
    now = time.time()
    build = Build(
        status=BuildStatus.QUEUED, builder=builder, tag=options.tag, dockerfile=dockerfile,
        pull=options.pull, dockerfile_text=ctx.dockerfile_text,
        build_args=json.dumps(shown), target=options.target, no_cache=options.no_cache,
        secret_args=json.dumps({k: secret_digest(app, v) for k, v in secrets.items()}),
        context_source=ctx.source, context_files=ctx.files, context_bytes=ctx.bytes, created_at=now,
        context_file=ctx.existing or "", upload_digest=ctx.digest or None, rebuild_of=rebuild_of,
        created_by=by.user_id if by else None,
    )
    db.session.add(build)
    final: Path | None = None
    held: int | None = None
    handover: Handover | None = None
    # A worker with nothing to do takes the build straight from here: it is recorded as running and handed
    # over in memory, with no queue and no claim to pass through. With every worker busy, it is queued.
    handed = runner.reserve()
    try:
        if handed:
            build.status, build.started_at = BuildStatus.RUNNING, now
        db.session.flush()
        if secrets:
            held = build.id
            runner.secrets[held] = secrets  # before the commit: no worker can claim the build yet
        if ctx.fresh is not None:
            build.context_file = f"contexts/{build.id}.tar"
            final = data_path(app, build.context_file)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(ctx.fresh, final)
            if manifest_path(ctx.fresh).is_file():
                os.replace(manifest_path(ctx.fresh), manifest_path(final))
        # The build's first message is written with its row: a worker that claims a queued build at once
        # (before the journal would have run) still finds `queued` as message 1, ahead of `running`.
        first = {"type": "status", "seq": 1, "build": build_to_dict(build, steps=False, cached=())}
        db.session.add(BuildEvent(build_id=build.id, seq=1, type="status", data=json.dumps(first)))
        if on_record is not None:
            on_record(build)
        build_id = build.id
        if checked is not None:
            checked.result()  # before the engine or the database sees the build
        if handed:
            # The worker starts the engine while the row is committed; it writes nothing until it is.
            handover = Handover()
            job = Job.of(app, build, handover=handover)
            if early is not None and early.take(job.request):
                job = job.taking_over(early)  # the engine is already at it
            runner.hand(job)
        # The row is as this request wrote it: keep its values rather than read them all back at the first
        # attribute the caller touches (a query while the engine builds, and the build's reply waits).
        session = db.session()
        session.expire_on_commit = False
        try:
            db.session.commit()
        finally:
            session.expire_on_commit = True
    except BaseException:
        db.session.rollback()
        if handover is not None:
            handover.abandon()  # the worker stops the engine and frees its slot
        elif handed:
            runner.release()
        if held is not None:
            runner.secrets.pop(held, None)
        if final is not None:
            final.unlink(missing_ok=True)
            manifest_path(final).unlink(missing_ok=True)
        raise
    if handover is not None:
        handover.recorded()
    app.extensions["layerdeck.hub"].publish(build_id, [first])
    if not handed:
        runner.wake()
    return build


def cancel_queued(app: Flask, build_id: int) -> bool:
    """Take a queued build out of the queue. False when it was not (or no longer) queued."""
    begin_write()
    result = db.session.execute(
        update(Build)
        .where(Build.id == build_id, Build.status == BuildStatus.QUEUED)
        .values(status=BuildStatus.CANCELLED, finished_at=time.time(), error="Cancelled before it started.")
    )
    db.session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    runner: BuildRunner = app.extensions["layerdeck.runner"]
    runner.secrets.pop(build_id, None)
    runner.journal.finish(build_id)
    return True


class _Active:
    """A running build as its worker and a canceller both see it."""

    def __init__(self, on_stop: Callable[[], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.stream: Any = None
        self.reason: str | None = None  # why it was stopped: cancelled | timed_out | interrupted
        self._on_stop = on_stop  # BuildKit: POST /build/cancel before the stream is closed
        self.finished = False  # its stream is done with: nothing left to stop

    def finish(self) -> None:
        with self.lock:
            self.finished = True

    def stop(self, reason: str) -> None:
        with self.lock:
            if self.reason is not None or self.finished:
                return
            self.reason = reason
            stream = self.stream
        if stream is not None:
            self._close(stream)

    def attach(self, stream: Any) -> None:
        with self.lock:
            self.stream = stream
            stopped = self.reason is not None
        if stopped:
            self._close(stream)

    def _close(self, stream: Any) -> None:
        if self._on_stop is not None:
            try:
                self._on_stop()
            except Exception:  # closing the stream below cancels the build as well
                log.warning("the engine did not take the cancel; closing the stream", exc_info=True)
        stream.close()


class _Deadlines:
    """Stops builds that run past the time limit: one thread for all of them (a timer thread per build
    cost a thread start on each build's way to the engine). The thread lives while some build it watches
    is still running."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Active]] = []
        self._order = itertools.count()  # ties in time go by order of adding
        self._thread: threading.Thread | None = None

    def add(self, when: float, active: _Active) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), active))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="layerdeck-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def done(self) -> None:
        """A watched build has finished: forget it (and end the thread when none is left)."""
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    self._heap = [entry for entry in self._heap if not entry[2].finished]
                    heapq.heapify(self._heap)
                    if not self._heap:
                        self._thread = None
                        return
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(timeout=wait)
                _, _, active = heapq.heappop(self._heap)
            active.stop("timed_out")


class _Prepared:
    """What a running build needs besides its stream (the earlier build its misses are explained against,
    the image ids of its FROM references, and what its cached steps are credited with), read on a side
    thread while the engine takes the context in: for a fully cached build that is most of the engine's
    time."""

    def __init__(self, runner: BuildRunner, job: Job) -> None:
        self._future = SIDE_WORK.submit(self._read, runner, job)

    @staticmethod
    def _read(runner: BuildRunner, job: Job) -> tuple[MissExplainer, dict[tuple[int, str], float]]:
        if not job.wait_recorded():
            raise LayerdeckError("The build was never recorded.")
        with runner.app.app_context():
            build = db.session.get(Build, job.build_id)
            assert build is not None
            value = (runner._explainer(build), step_credits(build))
            db.session.rollback()
            return value

    def get(self) -> tuple[MissExplainer, dict[tuple[int, str], float]]:
        """What was read; raises what reading raised, in the worker, where build errors are handled."""
        return self._future.result()


@dataclass(frozen=True)
class Job:
    """What a worker needs to run a build: read from its row when claimed from the queue, or made by the
    request that recorded it and handed over in memory."""

    build_id: int
    request: BuildRequest  # secret build args still masked: their values come from BuildRunner.secrets
    dockerfile_text: str
    secret_names: tuple[str, ...]
    announce: bool  # say `running` to viewers (a claimed build); a handed one was recorded running
    handover: Handover | None = None  # a build handed over before its row was committed
    early: EarlyStart | None = None  # the engine's build, started before the build was recorded

    @classmethod
    def of(cls, app: Flask, build: Build, *, announce: bool = False, handover: Handover | None = None) -> Job:
        instance = app.config["INSTANCE_ID"]
        request = build_request(
            app, context_file=build.context_file, builder=build.builder, tag=build.tag,
            dockerfile=build.dockerfile, build_args=build.args(), target=build.target,
            no_cache=build.no_cache, pull=build.pull,
            build_id=f"layerdeck-{instance[:12]}-{build.id}-{uuid.uuid4().hex[:8]}",
        )
        return cls(build.id, request, build.dockerfile_text or "", tuple(sorted(json.loads(build.secret_args or "{}"))),
                   announce, handover)

    def taking_over(self, early: EarlyStart) -> Job:
        """This job, running the engine build `early` started (a cancel stops that build)."""
        return dataclasses.replace(self, request=dataclasses.replace(self.request, build_id=early.request.build_id),
                                   early=early)

    def wait_recorded(self) -> bool:
        """Wait until the build's row is committed; False if it never will be (the build is then dropped)."""
        return self.handover is None or self.handover.wait()


class Handover:
    """A build handed to a worker before the transaction recording it has committed. The worker may ask the
    engine at once (the context is in place) but writes nothing before recorded(); after abandon() it
    stops the engine and writes nothing at all."""

    def __init__(self) -> None:
        self._settled = threading.Event()
        self._kept = False

    def recorded(self) -> None:
        self._kept = True
        self._settled.set()

    def abandon(self) -> None:
        self._settled.set()

    def wait(self) -> bool:
        self._settled.wait()
        return self._kept


class BuildRunner:
    """A bounded pool of worker threads. A build submitted while a worker is free is handed to it directly;
    otherwise it is queued, and workers claim queued builds oldest first as they come free."""

    def __init__(self, app: Flask, engine: Engine, journal: BuildJournal) -> None:
        self.app = app
        self.engine = engine
        self.journal = journal
        self.size: int = app.config["CONCURRENT_BUILDS"]
        self.timeout: float = app.config["BUILD_TIMEOUT"]
        self._wakeup = threading.Condition()
        self._pending_wakeups = 0
        self._stopping = False
        # Workers neither running a build nor promised one. Idle workers = _free + len(_handed) (+ any
        # holding a slot while they look in the queue), so a handed build always finds a worker.
        self._free = 0
        self._handed: collections.deque[Job] = collections.deque()
        self._active: dict[int, _Active] = {}
        self._active_lock = threading.Lock()
        self._label_step = f"LABEL layerdeck.instance={app.config['INSTANCE_ID']}"
        self._hidden: dict[int, set[int]] = {}  # per build: step numbers of the classic builder's label step
        self._threads: list[threading.Thread] = []
        self._deadlines = _Deadlines()
        # Secret build args by build id, from submission until the build starts: never in the database.
        self.secrets: dict[int, dict[str, str]] = {}
        self.upload_sizes = UploadSizes()
        # EarlyStarts not yet taken or stopped; each holds a side-work thread while the engine builds.
        self.early_slots = threading.Semaphore(min(self.size, SIDE_WORKERS // 2))

    def start(self) -> None:
        with self._wakeup:
            self._free = self.size
        for n in range(self.size):
            thread = threading.Thread(target=self._work, name=f"layerdeck-build-{n + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._free = 0
            self._wakeup.notify_all()
        with self._active_lock:
            actives = list(self._active.values())
        for active in actives:
            active.stop("interrupted")
        for thread in self._threads:
            thread.join(timeout=15)

    def wake(self) -> None:
        """A build was queued."""
        with self._wakeup:
            self._pending_wakeups += 1
            self._wakeup.notify()

    def has_idle_worker(self) -> bool:
        """Whether a build submitted now would most likely start at once rather than queue."""
        with self._wakeup:
            return not self._stopping and self._free > 0

    def reserve(self) -> bool:
        """Promise a free worker to a build about to be recorded (release() if it is not, hand() if it is)."""
        with self._wakeup:
            if self._stopping or self._free <= 0:
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        with self._wakeup:
            self._free += 1

    def hand(self, job: Job) -> None:
        """Give a recorded build to the worker reserve() promised. It can be cancelled from now on."""
        self._activate(job)
        with self._wakeup:
            self._handed.append(job)
            self._wakeup.notify()

    def cancel(self, build_id: int, reason: str = "cancelled") -> bool:
        with self._active_lock:
            active = self._active.get(build_id)
        if active is None:
            return False
        active.stop(reason)
        return True

    def _activate(self, job: Job) -> _Active:
        engine, engine_build_id = self.engine, job.request.build_id or ""
        on_stop = (lambda: engine.cancel_build(engine_build_id)) if job.request.builder == "buildkit" else None
        with self._active_lock:
            return self._active.setdefault(job.build_id, _Active(on_stop))

    # --- workers ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            build_id = taken.build_id if isinstance(taken, Job) else taken
            try:
                self._run(taken if isinstance(taken, Job) else self._job_of(build_id))
            except Exception as exc:  # never leave a build hanging in `running`
                log.exception("build %s crashed", build_id)
                if isinstance(taken, Job) and not taken.wait_recorded():
                    continue  # never recorded: nothing to say (the finally below still frees the worker)
                self.journal.finish(build_id, status=BuildStatus.FAILED, finished_at=time.time(),
                                    error=f"Layerdeck failed while running this build: {exc}")
            finally:
                with self._active_lock:
                    self._active.pop(build_id, None)
                with self._wakeup:
                    self._free += 0 if self._stopping else 1

    def _take(self) -> Job | int | None:
        """This worker's next build: one handed over (even while stopping: it ends `interrupted` at once),
        else the oldest queued one, claimed; None when the runner stops."""
        while True:
            with self._wakeup:
                if self._handed:
                    return self._handed.popleft()  # its slot was taken by reserve()
                if self._stopping:
                    return None
                claiming = self._free > 0
                if claiming:
                    self._free -= 1
            build_id = None
            if claiming:
                try:
                    build_id = self._claim()
                except Exception:
                    log.exception("could not claim a build")
                if build_id is not None:
                    return build_id
            with self._wakeup:
                if claiming:
                    self._free += 0 if self._stopping else 1
                if self._pending_wakeups == 0 and not self._handed and not self._stopping:
                    self._wakeup.wait(timeout=5)
                self._pending_wakeups = max(0, self._pending_wakeups - 1)

    def _claim(self) -> int | None:
        with self.app.app_context():
            # Look before taking the write lock: a worker that finds nothing must not hold up the journal
            # writing the `end` of the build it has just finished (SQLite makes a waiting writer sleep).
            queued = db.session.scalar(select(Build.id).where(Build.status == BuildStatus.QUEUED).limit(1))
            db.session.rollback()
            if queued is None:
                return None
            begin_write()
            build_id = db.session.scalar(
                select(Build.id).where(Build.status == BuildStatus.QUEUED).order_by(Build.id).limit(1)
            )
            if build_id is None:
                db.session.rollback()
                return None
            result = db.session.execute(
                update(Build)
                .where(Build.id == build_id, Build.status == BuildStatus.QUEUED)
                .values(status=BuildStatus.RUNNING, started_at=time.time())
            )
            db.session.commit()
            return build_id if result.rowcount == 1 else None  # type: ignore[attr-defined]

    def _job_of(self, build_id: int) -> Job:
        with self.app.app_context():
            build = db.session.get(Build, build_id)
            assert build is not None
            job = Job.of(self.app, build, announce=True)
            db.session.rollback()
            return job

    def _run(self, job: Job) -> None:
        build_id = job.build_id
        secrets = self.secrets.pop(build_id, {})
        missing = sorted(set(job.secret_names) - set(secrets))
        if missing:  # cannot happen in one process; refuse rather than build with the mask as the value
            if not job.wait_recorded():
                return
            self.journal.finish(build_id, status=BuildStatus.FAILED, finished_at=time.time(),
                                error=f"The values of its secret build args ({', '.join(missing)}) are gone; "
                                      "start the build again.")
            return
        request = dataclasses.replace(job.request, build_args={**job.request.build_args, **secrets})
        self.journal.hide(build_id, list(secrets.values()))
        if job.announce:
            self.journal.status(build_id)  # now running: every viewer's header changes
        prepared = _Prepared(self, job)  # read while the engine takes the context in
        active = self._activate(job)
        self._deadlines.add(time.monotonic() + self.timeout, active)
        steps: dict[int, dict[str, Any]] = {}  # each step as last reported, by index
        closing: list[str] = []  # system lines that go out with the build's last status
        try:
            status, image_id, error = self._stream(job, request, active, prepared, steps, closing)
        finally:
            active.finish()
            self._deadlines.done()
            self._hidden.pop(build_id, None)
            with self._active_lock:
                self._active.pop(build_id, None)
        if not job.wait_recorded():  # the request that recorded it failed: nothing of it may be written
            self.journal.forget(build_id)
            return
        explainer, credits = prepared.get()
        saved = time_saved(credits, {i: s["instruction"] for i, s in steps.items() if s.get("cached")})
        with self.journal.together():  # one batch: the build's last milliseconds hold one commit, not two
            for line in closing:
                self.journal.log(build_id, None, "system", line)
            self.journal.finish(build_id, status=status, finished_at=time.time(), image_id=image_id, error=error,
                                saved_s=saved, base_images=json.dumps(dict(explainer.new.base_images)),
                                compared_with=explainer.old.id if explainer.old else None)
        self.journal.forget(build_id)

    def _stream(self, job: Job, request: BuildRequest, active: _Active, prepared: _Prepared,
                seen: dict[int, dict[str, Any]], closing: list[str]) -> tuple[str, str | None, str | None]:
        build_id, dockerfile_text = job.build_id, job.dockerfile_text
        parser: ClassicParser | BuildKitParser
        if request.builder == "buildkit":
            parser = BuildKitParser(dockerfile=dockerfile_text or None)
        else:
            parser = ClassicParser()
        if active.reason is not None and job.early is None:  # stopped before the engine was asked
            return self._stopped(active.reason)
        try:
            # A build started early is the engine's already (a stop before now stops it at attach()).
            stream = job.early.stream() if job.early is not None else self.engine.start_build(request)
        except EngineUnavailable as exc:
            return BuildStatus.FAILED, None, exc.message
        except EngineError as exc:
            if job.wait_recorded():
                self.journal.log(build_id, None, "system", exc.message)
            return BuildStatus.FAILED, None, f"The Docker engine refused the build: {exc.message}"
        active.attach(stream)
        if not job.wait_recorded():
            active.stop("cancelled")
            return self._stopped("cancelled")
        lost: str | None = None
        try:
            for doc in iter_documents(stream):
                self._emit(build_id, parser.feed(doc), seen, prepared)
        except Exception as exc:  # closed by a cancel, or the engine went away
            if active.reason is None:
                lost = f"Lost the connection to the Docker engine during the build ({type(exc).__name__})."
        finally:
            stream.close()
        if active.reason is None and lost is None and not parser.answered:
            # The stream ended without a result: the engine may have died mid-build.
            try:
                self.engine.ping()
            except EngineUnavailable:
                lost = "Lost the connection to the Docker engine during the build."
        events = parser.finish(cancelled=True) if active.reason is not None else parser.finish(error=lost)
        result = self._emit(build_id, events, seen, prepared)
        if request.target and dockerfile_text:
            self._mark_skipped_stages(build_id, dockerfile_text, seen)
        if active.reason is not None:
            return self._stopped(active.reason)
        assert result is not None
        if result.error:
            return BuildStatus.FAILED, None, explain_engine_error(result.error, pull=request.pull)
        if job.early is not None and request.tag and result.image_id:
            try:  # started untagged (see EarlyStart)
                self.engine.tag_image(result.image_id, request.tag)
            except LayerdeckError as exc:
                return (BuildStatus.FAILED, None,
                        f"The image was built but could not be tagged {request.tag}: {exc.message}")
            closing.append(f"Successfully tagged {request.tag}")  # as the engine says when it tags
        return BuildStatus.SUCCEEDED, result.image_id, None

    def _stopped(self, reason: str) -> tuple[str, None, str]:
        if reason == "timed_out":
            return (BuildStatus.TIMED_OUT, None,
                    f"The build ran past the {self.timeout:g} s time limit and was stopped.")
        if reason == "cancelled":
            return BuildStatus.CANCELLED, None, "Cancelled while running."
        return BuildStatus.INTERRUPTED, None, INTERRUPTED_MESSAGE.format(was="running")

    def _emit(self, build_id: int, events: list[Event], seen: dict[int, dict[str, Any]],
              prepared: _Prepared) -> BuildResult | None:
        result = None
        for event in events:
            if isinstance(event, LogLine):
                step = None if event.step in self._hidden.get(build_id, ()) else event.step
                self.journal.log(build_id, step, event.stream, event.text)
            elif isinstance(event, StepChanged):
                if event.step.instruction == self._label_step:
                    # The classic builder applies our label as a LABEL step of its own, numbered as if it
                    # were in the Dockerfile (with a target it takes the number of a later instruction).
                    # It is not the user's step: its lines go with the build's own, like BuildKit's.
                    self._hidden.setdefault(build_id, set()).add(event.step.index)
                    continue
                data = event.step.to_dict()
                data["miss_reason"] = prepared.get()[0].observe(data)
                seen[event.step.index] = data
                self.journal.step(build_id, data)
            elif isinstance(event, BuildResult):
                result = event
        return result

    def _explainer(self, build: Build) -> MissExplainer:
        """What this build's missed steps are explained against: the previous successful build of the same
        image name with the same builder (the two builders keep separate caches), or none; and the image
        ids its FROM references resolve to now. Called on the build's side thread (_Prepared)."""
        args = build.comparable_args()
        bases: dict[str, str] = {}
        for ref in base_references(build.dockerfile_text or "", args):
            try:
                info = self.engine.inspect_image(ref)
            except LayerdeckError:  # the build itself will say what is wrong with the engine or the image
                info = None
            if info is not None and info.get("Id"):
                bases[ref] = str(info["Id"])
        context_path = data_path(self.app, build.context_file)
        new = BuildFacts(build.id, build.dockerfile_text or "", args, build.no_cache, bases,
                         manifest=lambda: load_manifest(context_path))
        old_build = previous_build(build)
        old = facts_of(self.app, old_build) if old_build is not None else None
        return MissExplainer(new, old, name=image_name(build.tag))

    def _mark_skipped_stages(self, build_id: int, dockerfile_text: str, seen: dict[int, dict[str, Any]]) -> None:
        """With a target, stages the build never touched are shown as skipped, in their Dockerfile place."""
        for stage in dockerfile_stages(dockerfile_text):
            if any(i.index in seen for i in stage.instructions):
                continue
            for instruction in stage.instructions:
                self.journal.step(build_id, {
                    "index": instruction.index, "stage": stage.label, "instruction": instruction.text,
                    "status": StepStatus.SKIPPED, "cached": None, "started_at": None, "finished_at": None,
                    "error": None,
                })


def image_name(tag: str | None) -> str | None:
    """The repository part of a tag ("demo/app:1" -> "demo/app"); None when untagged."""
    if not tag:
        return None
    last = tag.rsplit("/", 1)[-1]
    return tag.rsplit(":", 1)[0] if ":" in last else tag


def same_name(query: Any, build: Build) -> Any:
    """Limit a query of builds to those of the same image name as `build` (untagged builds go together)."""
    repository = image_name(build.tag)
    if repository:
        return query.where((Build.tag == repository) | Build.tag.startswith(repository + ":", autoescape=True))
    return query.where(Build.tag.is_(None))


def previous_build(build: Build) -> Build | None:
    """The previous successful build of the same image name with the same builder."""
    query = select(Build).where(Build.id < build.id, Build.status == BuildStatus.SUCCEEDED,
                                Build.builder == build.builder)
    found: Build | None = db.session.scalars(same_name(query, build).order_by(Build.id.desc()).limit(1)).first()
    return found


def facts_of(app: Flask, build: Build) -> BuildFacts:
    """A stored build as cache insight sees it (its manifest read only if a COPY needs it)."""
    context_path = data_path(app, build.context_file)
    steps = {s.index: step_to_dict(s) for s in build.steps}
    return BuildFacts(build.id, build.dockerfile_text or "", build.comparable_args(), build.no_cache,
                      build.resolved_bases(),
                      steps, manifest=lambda: load_manifest(context_path))


def compare_builds(app: Flask, a_id: int, b_id: int) -> dict[str, Any]:
    """Two builds side by side (insight.compare), with each build's summary."""
    found = {i: db.session.get(Build, i) for i in (a_id, b_id)}
    for build_id, build in found.items():
        if build is None:
            raise NotFound(f"There is no build #{build_id}.", code="no_such_build")
    a, b = found[a_id], found[b_id]
    assert a is not None and b is not None
    compared = compare(facts_of(app, a), facts_of(app, b))
    return {"a": build_to_dict(a, steps=False), "b": build_to_dict(b, steps=False), **compared,
            **compare_urls(a_id, b_id)}


# How many earlier builds of an image name time saved looks back through for a step's last real build.
CREDIT_HISTORY = 200


def step_credits(build: Build) -> dict[tuple[int, str], float]:
    """(index, instruction) -> how long that step took the last time an earlier build of the same image name
    (and Dockerfile path) really built it: what a cached step of this build is credited with."""
    earlier = (same_name(select(Build.id).where(Build.id < build.id, Build.dockerfile == build.dockerfile), build)
               .order_by(Build.id.desc()).limit(CREDIT_HISTORY))
    rows = db.session.execute(
        select(Step.index, Step.instruction, Step.started_at, Step.finished_at)
        .where(Step.build_id.in_(earlier), Step.cached.is_(False),
               Step.started_at.is_not(None), Step.finished_at.is_not(None))
        .order_by(Step.build_id.desc())
    )
    credits: dict[tuple[int, str], float] = {}
    for index, instruction, started, finished in rows:  # newest first: the last real build is credited
        if started is not None and finished is not None:
            credits.setdefault((index, instruction), finished - started)
    return credits


def time_saved(credits: dict[tuple[int, str], float], cached: dict[int, str]) -> float:
    """Seconds the cache saved a build: each of its cached steps (index -> instruction) credited with the
    time the same step (same place, same instruction, same image name) took when it was last really built."""
    return round(sum(credits.get((index, instruction), 0.0) for index, instruction in cached.items()), 3)


def settle_interrupted(app: Flask, journal: BuildJournal) -> list[int]:
    """At start-up: builds a dead process left running or queued become `interrupted`, logs kept."""
    with app.app_context():
        begin_write()
        rows = db.session.execute(
            select(Build.id, Build.status).where(Build.status.in_([BuildStatus.RUNNING, BuildStatus.QUEUED]))
        ).all()
        ids = [r.id for r in rows]
        if ids:
            db.session.execute(
                update(Step)
                .where(Step.build_id.in_(ids), Step.status == "running")
                .values(status="cancelled")
            )
        db.session.commit()
    for row in rows:
        was = "running" if row.status == BuildStatus.RUNNING else "queued"
        journal.finish(row.id, status=BuildStatus.INTERRUPTED, finished_at=time.time(),
                       error=INTERRUPTED_MESSAGE.format(was=was))
    return ids
