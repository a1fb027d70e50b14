"""Build pages and the builds JSON API. Views parse input, call one service function, and answer."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import cast

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
)
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response as BaseResponse

from webapp.auth import audit
from webapp.auth.access import Level, access
from webapp.auth.gate import require_identity, require_owner
from webapp.builds import edits, service
from webapp.builds.advice import advise
from webapp.builds.dockerignore import DockerIgnore, DockerIgnoreError
from webapp.builds.options import (
    BUILDERS,
    BuildOptions,
    parse_bool,
    parse_build_args,
    validate_builder,
    validate_tag,
    validate_target,
)
from webapp.builds.present import build_to_dict, build_urls
from webapp.builds.ws import build_messages
from webapp.errors import BadRequest, Conflict, NotFound
from webapp.extensions import db
from webapp.models import Build, BuildEvent, Run
from webapp.paging import newest_first
from webapp.streaming import IDLE, Revoked
from webapp.uploads import ReadsInto, SpooledUpload, receive

bp = Blueprint("builds", __name__)


def actor() -> service.Actor:
    identity = require_identity()
    return service.Actor(user_id=identity.user_id, is_admin=identity.role == "admin")


def audit_build(action: str, build: Build, *, commit: bool = True, **detail: object) -> None:
    entry = audit.record if commit else audit.add
    entry(action, f"build {build.id}", detail={"tag": build.tag, "builder": build.builder, **detail})


def audit_created(build: Build) -> None:
    """The audit entry of a new build, written in the transaction that records it."""
    audit_build("build.rebuild" if build.rebuild_of else "build.create", build, commit=False,
                source=build.context_source, rebuild_of=build.rebuild_of)

def find_build(build_id: int) -> Build:
    build = db.session.get(Build, build_id)
    if build is None:
        raise NotFound(f"There is no build #{build_id}.", code="no_such_build")
    return build


def _options_from(form: Mapping[str, str]) -> BuildOptions:
    tag = (form.get("tag") or "").strip() or None
    return BuildOptions(
        builder=validate_builder(form.get("builder")),
        tag=validate_tag(tag) if tag else None,
        dockerfile=(form.get("dockerfile") or "").strip() or "Dockerfile",
        build_args=parse_build_args(form.get("build_args")),
        target=validate_target(form.get("target")),
        no_cache=parse_bool(form.get("no_cache"), "no_cache"),
        pull=parse_bool(form.get("pull"), "pull"),
    )


_SHA256 = re.compile(r"(?:sha256:)?([0-9a-f]{64})\Z")


def _parse_digest(text: str) -> str:
    match = _SHA256.match(text.strip().lower())
    if match is None:
        raise BadRequest("context_digest must be the archive's sha256, as 64 hex digits (optionally after "
                         "'sha256:').", code="invalid_digest")
    return match.group(1)


def _upload_from_form() -> service.Upload:
    file: FileStorage | None = request.files.get("context")
    text = request.form.get("dockerfile_text")
    has_file = file is not None and bool(file.filename or file.content_length)
    has_text = text is not None and bool(text.strip())
    if has_file and has_text:
        raise BadRequest("Send either a context archive or a pasted Dockerfile, not both.",
                         code="two_contexts")
    if has_file:
        assert file is not None
        # The page sends a chosen folder as a tar it packed itself; remember it came from a folder.
        folder = request.form.get("context_source") == "folder"
        sha256 = getattr(file.stream, "sha256", None)
        return service.Upload(archive=Path(uploaded_path(file)), from_folder=folder,
                              archive_sha256=sha256() if callable(sha256) else None)
    if has_text:
        assert text is not None
        # Browsers send form text with CRLF line ends; a Dockerfile is written with LF.
        return service.Upload(dockerfile_text=text.replace("\r\n", "\n"))
    raise BadRequest(
        "Nothing to build: choose a folder or an archive (.tar, .tar.gz, .zip), or paste a Dockerfile.",
        code="no_context",
    )


def uploaded_path(file: FileStorage) -> str:
    """Where the request streamed this file on disk (see LayerdeckRequest._get_file_stream)."""
    name = getattr(file.stream, "name", None)
    if not isinstance(name, str):
        raise BadRequest("The upload could not be read.", code="upload_unreadable")
    return name


# A raw archive as the request body, options in the query string: what `docker build` sends the engine,
# handy from scripts (`curl --data-binary @context.tar`) and cheaper than multipart for large contexts.
RAW_ARCHIVE_TYPES = ("application/x-tar", "application/tar", "application/gzip", "application/x-gzip",
                     "application/zip", "application/octet-stream")


@bp.post("/api/v1/builds")
@access(Level.BUILD)
def create_build() -> tuple[Response, int]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    follow = parse_bool(request.args.get("follow"), "follow")
    if request.args.get("context_digest") and not request.content_length:
        # Digest first: a script that rebuilds the same archive names it by its sha256 and sends no body;
        # 409 context_unknown tells it to send the archive after all.
        options = _options_from(request.args)
        upload = service.Upload(archive_sha256=_parse_digest(request.args["context_digest"]))
        build = service.submit_build(app, upload, options, actor(), audit_created)
    elif request.mimetype in RAW_ARCHIVE_TYPES:
        options = _options_from(request.args)
        # An archive as large as one uploaded before is most likely the same again: the engine starts on
        # the stored context while it arrives (kept only if the digest agrees).
        with service.early_start(app, options, request.content_length) as early, \
                SpooledUpload(Path(app.config["DATA_DIR"]) / "tmp") as body:
            checked = service.Precheck(app, options, actor())  # while the archive arrives
            receive(cast(ReadsInto, request.stream), body, request.content_length)  # werkzeug's LimitedStream
            body.finish()
            upload = service.Upload(spooled=body, archive_sha256=body.sha256(),
                                    from_folder=request.args.get("context_source") == "folder")
            build = service.submit_build(app, upload, options, actor(), audit_created, checked, early)
    else:
        options = _options_from(request.form)
        build = service.submit_build(app, _upload_from_form(), options, actor(), audit_created)
    urls = build_urls(build.id)
    reply = {"id": build.id, "status": build.status, "url": urls["url"], "api_url": urls["api_url"],
             "ws_url": urls["ws_url"]}
    if follow:
        return following(build.id, reply), 202
    return jsonify(reply), 202


# A following response says something at least this often, so proxies keep a quiet build's response open.
KEEPALIVE_S = 15


def following(build_id: int, reply: dict[str, object]) -> Response:
    """`?follow=1`: the reply, then the build's messages (as its websocket sends them), one JSON object a
    line, until its `end`: a script builds and watches in one request, as the engine's own /build does."""
    messages = build_messages(build_id, after=0)

    def lines() -> Iterator[str]:
        yield json.dumps(reply) + "\n"
        quiet = 0
        try:
            for message in messages:
                if message is IDLE:
                    quiet += 1
                    if quiet % KEEPALIVE_S == 0:
                        yield "\n"
                    continue
                quiet = 0
                yield json.dumps(message) + "\n"
        except Revoked:
            yield json.dumps({"type": "error", "seq": 0, "message": "Your session or token ended."}) + "\n"
        finally:
            messages.close()

    return Response(stream_with_context(lines()), mimetype="application/x-ndjson")


MAX_PREVIEW_DOCKERFILE = 1024**2


@bp.post("/api/v1/advice")
@access(Level.READ)
def advice_preview() -> Response:
    """Advice on a Dockerfile before it is built: the upload page sends the Dockerfile it is about to build
    and, for a folder, the folder's paths and .dockerignore (nothing is stored)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("dockerfile"), str):
        raise BadRequest('Send {"dockerfile": "<its text>"} as JSON, optionally with "paths", "bytes" and '
                         '"dockerignore".', code="invalid_body")
    text = body["dockerfile"]
    if len(text) > MAX_PREVIEW_DOCKERFILE:
        raise BadRequest("That Dockerfile is larger than 1 MiB.", code="dockerfile_too_large")
    paths = body.get("paths")
    if paths is not None and (not isinstance(paths, list) or not all(isinstance(x, str) for x in paths)):
        raise BadRequest("paths must be a list of the context's file paths.", code="invalid_body")
    if paths is not None and len(paths) > current_app.config["MAX_CONTEXT_FILES"]:
        raise BadRequest("More paths than a context may hold (LAYERDECK_MAX_CONTEXT_FILES).", code="too_many_files")
    size = body.get("bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadRequest("bytes must be a whole number of bytes.", code="invalid_body")
    ignore = body.get("dockerignore")
    if paths is not None and isinstance(ignore, str) and ignore.strip():
        try:
            rules = DockerIgnore.parse(ignore)
        except DockerIgnoreError as error:
            raise BadRequest(f"Line {error.line_number} of .dockerignore is not a valid pattern: {error.reason}.",
                             code="invalid_dockerignore") from None
        always = {".dockerignore", str(body.get("dockerfile_path") or "Dockerfile")}
        paths = [x for x in paths if x in always or not rules.ignores(x)]
    items = advise(text.replace("\r\n", "\n"), context_files=len(paths) if paths is not None else None,
                   context_bytes=size, has_dockerignore=(".dockerignore" in paths) if paths is not None else None,
                   context_paths=paths)
    return jsonify({"advice": [a.to_dict() for a in items]})


@bp.get("/api/v1/builds")
@access(Level.READ)
def list_builds() -> Response:
    builds, next_before = newest_first(Build)
    return jsonify({"builds": [build_to_dict(b, steps=False) for b in builds], "next_before": next_before})


@bp.get("/api/v1/builds/<int:build_id>")
@access(Level.READ)
def get_build(build_id: int) -> Response:
    return jsonify(build_to_dict(find_build(build_id)))


@bp.get("/api/v1/builds/<int:a>/compare/<int:b>")
@access(Level.READ)
def compare_builds(a: int, b: int) -> Response:
    return jsonify(service.compare_builds(current_app._get_current_object(), a, b))  # type: ignore[attr-defined]


@bp.get("/api/v1/builds/<int:build_id>/log")
@access(Level.READ)
def get_log(build_id: int) -> Response:
    find_build(build_id)

    def lines() -> Iterator[str]:
        rows = db.session.scalars(
            select(BuildEvent.data)
            .where(BuildEvent.build_id == build_id, BuildEvent.type == "log")
            .order_by(BuildEvent.seq)
            .execution_options(yield_per=1000)
        )
        for data in rows:
            yield json.loads(data)["text"] + "\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@bp.post("/api/v1/builds/<int:build_id>/rebuild")
@access(Level.BUILD)
def rebuild_build(build_id: int) -> tuple[Response, int]:
    body = request.get_json(silent=True) if request.is_json else None
    secrets = parse_build_args(json.dumps(body.get("build_args") or {})) if isinstance(body, dict) else {}
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    build = service.rebuild(app, build_id, actor(), secrets, audit_created)
    urls = build_urls(build.id)
    return jsonify({"id": build.id, "status": build.status, **urls}), 202


@bp.get("/api/v1/builds/<int:build_id>/files")
@access(Level.READ)
def list_files(build_id: int) -> Response:
    build = find_build(build_id)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found, truncated = edits.list_files(service.context_path(app, build))
    return jsonify({"build_id": build.id, "dockerfile": build.dockerfile, "files": [f.to_dict() for f in found],
                    "truncated": truncated, "max_file_bytes": edits.MAX_EDIT_BYTES})


@bp.get("/api/v1/builds/<int:build_id>/files/<path:path>")
@access(Level.READ)
def get_file(build_id: int, path: str) -> Response:
    build = find_build(build_id)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found, text = edits.read_text(service.context_path(app, build), path)
    return jsonify({**found.to_dict(), "content": text})


@bp.post("/api/v1/builds/<int:build_id>/edit")
@access(Level.BUILD)
def edit_build(build_id: int) -> tuple[Response, int]:
    body = request.get_json(silent=True) if request.is_json else None
    if not isinstance(body, dict):
        raise BadRequest('Send JSON: {"files": {"path/in/context": "new text", ...}}.', code="invalid_edit")
    changes = edits.check_edits(body.get("files"))
    secrets = parse_build_args(json.dumps(body.get("build_args") or {}))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    build, changed = service.edit_and_rebuild(
        app, build_id, changes, actor(), secrets,
        lambda b, files: audit_build("build.edit", b, commit=False, edit_of=build_id, files=files))
    urls = build_urls(build.id)
    return jsonify({"id": build.id, "status": build.status, "changed": changed, **urls}), 202


@bp.post("/api/v1/builds/<int:build_id>/cancel")
@access(Level.BUILD)
def cancel_build(build_id: int) -> tuple[Response, int]:
    build = find_build(build_id)
    require_owner(build.created_by, "build")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not service.cancel_queued(app, build_id) and not app.extensions["layerdeck.runner"].cancel(build_id):
        db.session.refresh(build)
        if build.status in ("queued", "running"):
            raise BadRequest("The build could not be cancelled just now; try again.", code="cancel_race")
        raise Conflict(f"Build #{build_id} has already ended ({build.status}).", code="already_finished")
    audit_build("build.cancel", build)
    return jsonify({"id": build_id, "status": "cancelling"}), 202


# --- pages ----------------------------------------------------------------------------------------------


@bp.get("/")
@access(Level.READ)
def index() -> str:
    recent = db.session.scalars(select(Build).order_by(Build.id.desc()).limit(8))
    cfg = current_app.config
    limits = {
        "max_upload_mb": cfg["MAX_UPLOAD_SIZE"] // 1024**2,
        "max_unpacked_mb": cfg["MAX_CONTEXT_SIZE"] // 1024**2,
        "max_files": cfg["MAX_CONTEXT_FILES"],
    }
    default, note = service.default_builder(current_app._get_current_object())  # type: ignore[attr-defined]
    return render_template(
        "index.html", recent=[build_to_dict(b, steps=False) for b in recent], limits=limits,
        builders=list(BUILDERS), default_builder=default, builder_note=note,
    )


@bp.get("/builds")
@access(Level.READ)
def history() -> str:
    builds, next_before = newest_first(Build)
    return render_template("history.html", builds=[build_to_dict(b, steps=False) for b in builds],
                           next_before=next_before)


@bp.get("/builds/<int:build_id>")
@access(Level.READ)
def build_page(build_id: int) -> str:
    from webapp.runs.views import runs_to_dicts  # runs build on builds, not the other way round

    build = find_build(build_id)
    runs = list(db.session.scalars(select(Run).where(Run.build_id == build_id).order_by(Run.id.desc()).limit(10)))
    return render_template("build.html", build=as_rendered(build), runs=runs_to_dicts(runs))


def as_rendered(build: Build) -> dict[str, object]:
    """A build as a page shows it, with the seq of its last message then (read in the same transaction as
    the row): the page replays every message over its websocket for the steps and the log, and a status
    message at or below that seq is older than what the page already shows, so it must not turn the
    header back (a finished build would flash `running`, and its Compare link would blink out)."""
    last = db.session.scalar(select(func.max(BuildEvent.seq)).where(BuildEvent.build_id == build.id))
    return {**build_to_dict(build), "rendered_seq": int(last or 0)}


@bp.get("/builds/<int:a>/compare/<int:b>")
@access(Level.READ)
def compare_page(a: int, b: int) -> str:
    compared = service.compare_builds(current_app._get_current_object(), a, b)  # type: ignore[attr-defined]
    return render_template("compare.html", compared=compared)


@bp.get("/builds/compare")
@access(Level.READ)
def compare_chosen() -> BaseResponse:
    """The history page's form: two ticked builds (`?id=3&id=7`) -> their comparison, older first."""
    try:
        ids = sorted({int(i) for i in request.args.getlist("id")})
    except ValueError:
        raise BadRequest("Choose builds by their numbers.", code="invalid_query") from None
    if len(ids) != 2:
        raise BadRequest("Choose exactly two builds to compare.", code="choose_two")
    return redirect(f"/builds/{ids[0]}/compare/{ids[1]}")


@bp.get("/builds/<int:build_id>/present")
@access(Level.READ)
def present_page(build_id: int) -> str:
    return render_template("present.html", build=as_rendered(find_build(build_id)))


@bp.get("/builds/new")
@access(Level.READ)
def new_build_redirect() -> BaseResponse:
    return redirect("/")
