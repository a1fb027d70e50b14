"""The `layerdeck` command: serve, db upgrade, settings."""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any

from webapp.config import SETTINGS, SettingError, load_settings, settings_markdown


def upgrade_database() -> None:
    """Apply pending migrations (creating the database on first run)."""
    from flask_migrate import upgrade

    from webapp import create_app

    app = create_app()
    with app.app_context():
        upgrade()


def _read_bodies_in_large_blocks() -> None:
    """gunicorn's Body.read() fills its buffer 1 KiB at a time; a build context is megabytes, and at that
    size the Python loop cost 50-80 ms per 8 MB upload, most of a cached BuildKit rebuild. Read what is
    asked for in one go instead (the reader below still takes at most that many bytes off the socket)."""
    from gunicorn.http import body

    def read(self: body.Body, size: int | None = None) -> bytes:
        size = self.getsize(size)
        if size == 0:
            return b""
        while size > self.buf.tell():
            data = self.reader.read(size - self.buf.tell())
            if not data:
                break
            self.buf.write(data)
        data = self.buf.getvalue()
        ret, rest = data[:size], data[size:]
        self.buf = io.BytesIO()
        self.buf.write(rest)
        return ret

    body.Body.read = read


def serve(host: str, port: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    _read_bodies_in_large_blocks()

    from webapp import create_app, start_background

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            # One process: builds and their live fan-out live in it. Threads serve pages and websockets.
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("accesslog", "-")

        def load(self) -> Any:
            app = create_app()
            start_background(app)
            return app

    print(f"Layerdeck is serving on http://{host}:{port}", flush=True)
    Server().run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="layerdeck", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="apply migrations and serve the dashboard")
    p_serve.add_argument("--host", help="address to listen on (LAYERDECK_HOST)")
    p_serve.add_argument("--port", type=int, help="port to listen on (LAYERDECK_PORT)")
    p_serve.add_argument("--threads", type=int, help="request threads (LAYERDECK_THREADS)")
    p_db = sub.add_parser("db", help="database maintenance")
    p_db.add_argument("action", choices=["upgrade"])
    p_settings = sub.add_parser("settings", help="list every setting with its default")
    p_settings.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except SettingError as exc:
        print(f"layerdeck: {exc}", file=sys.stderr)
        return 2

    if args.command == "settings":
        if args.markdown:
            print(settings_markdown(), end="")
        else:
            for s in SETTINGS:
                print(f"{s.env}={os.environ.get(s.env, s.default)}")
        return 0
    if args.command == "db":
        upgrade_database()
        return 0
    host = args.host or settings["HOST"]
    port = args.port or settings["PORT"]
    upgrade_database()
    serve(host, port, args.threads or settings["THREADS"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
