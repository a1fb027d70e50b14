"""Layerdeck: build Docker images from the browser and watch every step live."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import threading
import uuid
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from webapp.config import database_url, load_settings
from webapp.errors import LayerdeckError
from webapp.uploads import HashingFile

ROOT = Path(__file__).resolve().parent.parent


class LayerdeckRequest(Request):
    """Uploaded files stream straight to a temporary file under DATA_DIR/tmp (removed when the request
    ends), never into memory, hashed as they arrive. MAX_CONTENT_LENGTH makes werkzeug stop reading past
    the upload cap."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        from flask import current_app

        folder = Path(current_app.config["DATA_DIR"]).resolve() / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        return HashingFile(folder)  # type: ignore[return-value]


class DaemonThread(threading.Thread):
    """Each websocket's reader thread. After its socket closes it sleeps out the ping interval before it
    ends, and the server's exit waits for every thread that is not a daemon: `layerdeck serve` then took
    the whole 20 s of gunicorn's graceful timeout to stop once any page had followed a build."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Make the app; its build workers start with start_background() once the database is migrated."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.request_class = LayerdeckRequest
    settings = load_settings()
    if config:
        settings.update(config)
    app.config.update(settings)
    data_dir = Path(app.config["DATA_DIR"]).resolve()
    app.config["DATA_DIR"] = str(data_dir)
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", database_url(app.config))
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"check_same_thread": False}} \
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite") else {}
    # Room for the form fields around the archive; the archive itself is checked against the cap again.
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_UPLOAD_SIZE"] + 64 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = 2 * 1024**2  # a pasted Dockerfile and options
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": app.config["WS_PING_INTERVAL"],
                                         "thread_class": DaemonThread}
    app.json.sort_keys = False  # type: ignore[attr-defined]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "tmp").mkdir(exist_ok=True)
    app.config["INSTANCE_ID"] = instance_id(data_dir)
    app.config["SECRET_KEY_BYTES"] = secret_key(data_dir)

    from webapp.db import configure_sqlite
    from webapp.extensions import db, migrate, sock

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    sock.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine)

    if app.config["PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = app.config["PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]

    from webapp import auth, health
    from webapp.builds import views as build_views
    from webapp.builds import ws as build_ws
    from webapp.runs import views as run_views
    from webapp.runs import ws as run_ws

    app.register_blueprint(build_views.bp)
    app.register_blueprint(build_ws.bp)
    app.register_blueprint(run_views.bp)
    app.register_blueprint(run_ws.bp)
    app.register_blueprint(health.bp)
    auth.init_app(app)
    _register_error_handlers(app)
    _register_context(app)

    from webapp.broadcast import Hub
    from webapp.builds.journal import BuildJournal
    from webapp.builds.service import BuildRunner
    from webapp.engine import Engine

    hub = Hub()
    journal = BuildJournal(app, hub, app.config["LOG_CAP"])
    engine = Engine()
    runner = BuildRunner(app, engine, journal)
    app.extensions["layerdeck.hub"] = hub
    app.extensions["layerdeck.journal"] = journal
    app.extensions["layerdeck.engine"] = engine
    app.extensions["layerdeck.runner"] = runner

    from webapp.runs.journal import RunJournal
    from webapp.runs.service import RunManager

    run_hub = Hub()
    app.extensions["layerdeck.run_hub"] = run_hub
    app.extensions["layerdeck.runs"] = RunManager(app, engine, RunJournal(app, run_hub, app.config["LOG_CAP"]))
    return app


def start_background(app: Flask) -> None:
    """Settle builds a previous process left behind, start the build workers, and follow the logs of
    containers still running."""
    from webapp.builds.service import settle_interrupted

    runner = app.extensions["layerdeck.runner"]
    journal = app.extensions["layerdeck.journal"]
    runs = app.extensions["layerdeck.runs"]
    # Uploads of a process that died mid-request are never finished: start with an empty tmp folder.
    # (Here, not in create_app: `layerdeck create-user` beside a running server must not touch its uploads.)
    tmp = Path(app.config["DATA_DIR"]) / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    settle_interrupted(app, journal)
    journal.sync()
    runner.start()
    try:
        runs.resume()
    except Exception:  # an engine that is down now: statuses are settled when runs are next read
        logging.getLogger("webapp").warning("could not resume following container logs", exc_info=True)

    def shutdown() -> None:
        runner.stop()
        runs.stop()
        journal.stop()
        runs.journal.stop()

    atexit.register(shutdown)
    app.extensions["layerdeck.shutdown"] = shutdown


def instance_id(data_dir: Path) -> str:
    """A random id for this Layerdeck's data, put on everything it creates on the (shared) engine."""
    path = data_dir / "instance-id"
    if not path.exists():
        path.write_text(uuid.uuid4().hex + "\n")
    return path.read_text().strip()


def secret_key(data_dir: Path) -> bytes:
    """A random key only this Layerdeck's data knows (digests of secret build args), readable by its owner only."""
    path = data_dir / "secret-key"
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())


def _wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def _register_error_handlers(app: Flask) -> None:
    def respond(status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> Any:
        headers = {"WWW-Authenticate": 'Bearer realm="layerdeck"'} if status == 401 else {}
        if _wants_json():
            return jsonify({"error": {"code": code, "message": message, **(extra or {})}}), status, headers
        return render_template("error.html", status=status, message=message, code=code), status, headers

    @app.errorhandler(LayerdeckError)
    def _layerdeck_error(exc: LayerdeckError) -> Any:
        return respond(exc.status, exc.code, exc.message, exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        if status == 413:
            limit = app.config["MAX_UPLOAD_SIZE"] / 1024**2
            return respond(413, "upload_too_large",
                           f"The upload is larger than the {limit:g} MiB limit (LAYERDECK_MAX_UPLOAD_SIZE).")
        if status == 404:
            return respond(404, "not_found", "There is no page at this address.")
        return respond(status, (exc.name or "error").lower().replace(" ", "_"), exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        logging.getLogger("webapp").exception("unhandled error")
        return respond(500, "internal_error",
                       "Something went wrong inside Layerdeck; the error is in its log.")


def _register_context(app: Flask) -> None:
    @app.context_processor
    def _engine_status() -> dict[str, Any]:
        from webapp.health import engine_status

        return {"engine": engine_status(app)}
