"""The `layerdeck` command: serve, create-user, set-password, create-token, db upgrade, settings."""

from __future__ import annotations

import argparse
import io
import os
import socket
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


def read_bodies_in_large_blocks() -> None:
    """gunicorn reads a request body 8 KiB per recv() and 1 KiB per Body.read() loop, copying through two
    buffers on the way; a build context is megabytes, and at that size the Python loops cost 50-80 ms per
    8 MB upload, most of a cached BuildKit rebuild. Here a body of known length is received straight into
    the caller's buffer (Body.readinto, which werkzeug's request.stream uses when it exists: recv_into, the
    kernel waiting for the whole block), so each byte is copied once, from the socket to where it stays;
    Body.read() hands on what its reader returns when it has nothing of its own buffered."""
    from gunicorn.http import body

    if getattr(body.LengthReader.read, "layerdeck", False):
        return
    length_read = body.LengthReader.read

    def length_readinto(self: body.LengthReader, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        size = min(self.length, len(view))
        sock = getattr(self.unreader, "sock", None)
        if size <= 0 or not isinstance(sock, socket.socket):
            data = length_read(self, size) if size > 0 else b""
            view[:len(data)] = data
            return len(data)
        pending = self.unreader.buf.getvalue()  # what came in with the headers, or after the last read
        self.unreader.buf = io.BytesIO()
        if len(pending) >= size:
            self.unreader.unread(pending[size:])
            view[:size] = pending[:size]
            self.length -= size
            return size
        view[:len(pending)] = pending
        got = len(pending)
        while got < size:
            n = sock.recv_into(view[got:size], size - got, socket.MSG_WAITALL)
            if n == 0:  # the client went away: as gunicorn's own reader, return what there is
                break
            got += n
        self.length -= size
        return got

    def read_length(self: body.LengthReader, size: int) -> bytes:
        if not isinstance(size, int) or size <= 0 or self.length <= 0:
            return length_read(self, size)
        block = bytearray(min(self.length, size))
        got = length_readinto(self, block)
        return bytes(block) if got == len(block) else bytes(block[:got])

    def read(self: body.Body, size: int | None = None) -> bytes:
        size = self.getsize(size)
        if size == 0:
            return b""
        if self.buf.tell() == 0:
            data: bytes = self.reader.read(size)
            return data
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

    def readinto(self: body.Body, buffer: bytearray | memoryview) -> int:
        if self.buf.tell() == 0 and isinstance(self.reader, body.LengthReader):
            return length_readinto(self.reader, buffer)
        data = read(self, len(buffer))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    read_length.layerdeck = True  # type: ignore[attr-defined]
    body.LengthReader.read = read_length  # type: ignore[method-assign]
    body.LengthReader.readinto = length_readinto  # type: ignore[attr-defined]
    body.Body.read = read  # type: ignore[method-assign]
    body.Body.readinto = readinto  # type: ignore[attr-defined]


def serve(host: str, port: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    read_bodies_in_large_blocks()

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
            app = create_app({"HOST": host, "PORT": port})  # what it is bound to, whatever the environment says
            start_background(app)
            token = open_setup(app)
            if token:
                shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
                print("\nNo account exists yet. Open this one-time link to create the first admin:\n"
                      f"    {base_url(shown, port)}/setup/{token}\n"
                      "(or run `layerdeck create-user NAME --role admin`)\n", flush=True)
            return app

    from webapp.auth import open_setup

    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: Layerdeck listens on {host}: everyone who can reach this port can try to sign in, and "
              "every account that can build or run controls the Docker engine, which is root on this host. "
              "Put it behind HTTPS (docs/DEPLOY.md) and give out member and admin accounts with care.",
              file=sys.stderr, flush=True)
    print(f"Layerdeck is serving on {base_url(host, port)}", flush=True)
    Server().run()


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def read_new_password(from_stdin: bool) -> str:
    """A new password typed twice at a prompt, or read from standard input (one line; if a second line
    follows, it must match)."""
    if from_stdin:
        lines = sys.stdin.read().splitlines()
        if not lines:
            raise ValueError("no password on standard input")
        if len(lines) > 1 and lines[1] != lines[0]:
            raise ValueError("the two passwords on standard input differ")
        return lines[0]
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def create_user_command(name: str, role: str, from_stdin: bool) -> int:
    from webapp import create_app
    from webapp.auth import accounts, audit
    from webapp.errors import LayerdeckError

    upgrade_database()
    app = create_app()
    with app.app_context():
        try:
            accounts.validate_name(name)
            accounts.validate_role(role)
            if accounts.user_by_name(name) is not None:
                raise LayerdeckError(f'There is already a user named "{accounts.normalise_name(name)}".')
            password = read_new_password(from_stdin)
            user = accounts.create_user(name, role, password)
        except (ValueError, LayerdeckError) as exc:
            print(f"layerdeck: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 1
        audit.record("user.create", f"user {user.name}", detail={"role": user.role}, via="cli")
        print(f"Created {user.role} {user.name}.")
    return 0


def set_password_command(name: str, from_stdin: bool) -> int:
    """A new password for an account (a forgotten one included), typed twice; signs it out everywhere."""
    from webapp import create_app
    from webapp.auth import accounts, audit
    from webapp.errors import LayerdeckError

    upgrade_database()
    app = create_app()
    with app.app_context():
        user = accounts.user_by_name(name)
        if user is None:
            print(f'layerdeck: there is no user named "{accounts.normalise_name(name)}".', file=sys.stderr)
            return 1
        try:
            user = accounts.set_password(user.id, read_new_password(from_stdin))
        except (ValueError, LayerdeckError) as exc:
            print(f"layerdeck: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 1
        audit.record("user.update", f"user {user.name}", detail={"password": "changed"}, via="cli")
        print(f"New password set for {user.name}; their sessions have ended.")
    return 0


def create_token_command(name: str, user_name: str | None) -> int:
    from sqlalchemy import select

    from webapp import create_app
    from webapp.auth import accounts, audit, credentials
    from webapp.errors import LayerdeckError
    from webapp.extensions import db
    from webapp.models import Role, User

    upgrade_database()
    app = create_app()
    with app.app_context():
        if user_name:
            user = accounts.user_by_name(user_name)
            if user is None:
                print(f'layerdeck: there is no user named "{user_name}".', file=sys.stderr)
                return 1
        else:
            user = db.session.scalars(select(User).where(User.role == Role.ADMIN, User.disabled.is_(False))
                                      .order_by(User.id).limit(1)).first()
            if user is None:
                print("layerdeck: there is no admin yet; create one with `layerdeck create-user NAME --role admin`, "
                      "or name the token's user with --user.", file=sys.stderr)
                return 1
        try:
            secret, token = credentials.create_token(user, name, None)
        except LayerdeckError as exc:
            print(f"layerdeck: {exc.message}", file=sys.stderr)
            return 1
        audit.record("token.create", f"token {token.name}", detail={"user": user.name, "prefix": token.prefix},
                     via="cli")
        # Both lines on standard output, in order: the token is the last line however the output is read.
        print(f"Token {token.name!r} for {user.role} {user.name}. It is shown only now; keep it safe:", flush=True)
        print(secret, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="layerdeck", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="apply migrations and serve the dashboard")
    p_serve.add_argument("--host", help="address to listen on (LAYERDECK_HOST)")
    p_serve.add_argument("--port", type=int, help="port to listen on (LAYERDECK_PORT)")
    p_serve.add_argument("--threads", type=int, help="request threads (LAYERDECK_THREADS)")
    p_user = sub.add_parser("create-user", help="add an account (asks for its password twice)")
    p_user.add_argument("name")
    p_user.add_argument("--role", default="member", help="admin, member or viewer (default: member)")
    p_user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p_pw = sub.add_parser("set-password", help="give an account a new password (asks for it twice)")
    p_pw.add_argument("name")
    p_pw.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p_token = sub.add_parser("create-token", help="make an API token; prints it alone on its last line")
    p_token.add_argument("name", help="what the token is for, such as 'ci deploy'")
    p_token.add_argument("--user", help="whose token it is (default: the first admin)")
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
    if args.command == "create-user":
        return create_user_command(args.name, args.role, args.password_stdin)
    if args.command == "set-password":
        return set_password_command(args.name, args.password_stdin)
    if args.command == "create-token":
        return create_token_command(args.name, args.user)
    host = args.host or settings["HOST"]
    port = args.port or settings["PORT"]
    upgrade_database()
    serve(host, port, args.threads or settings["THREADS"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
