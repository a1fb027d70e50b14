"""A real `layerdeck serve` in a subprocess, with an admin, a member and a viewer (each with an API
token), for the browser tests and the benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import docker
import requests

from tests.helpers import add_user

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("admin", "member", "viewer")


@dataclass
class Served:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)  # user name (= role) -> API token

    def session(self, user: str = "admin") -> requests.Session:
        """A requests session that sends this user's token."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return session

    def auth(self, user: str = "admin") -> list[tuple[str, str]]:
        """The same token as websocket handshake headers."""
        return [("Authorization", f"Bearer {self.tokens[user]}")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_accounts(data_dir: Path) -> dict[str, str]:
    """Migrate the database in data_dir and add one account per role, named after it."""
    from flask_migrate import upgrade

    from webapp import create_app

    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": f"sqlite:///{data_dir / 'layerdeck.db'}"})
    with app.app_context():
        upgrade()
    return {role: add_user(app, role, role) for role in ROLES}


@contextmanager
def layerdeck_serve(data_dir: Path, log_path: Path | None = None, **env: str) -> Iterator[Served]:
    """Serve data_dir on a free port until the block ends; then remove the images it made."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tokens = prepare_accounts(data_dir)
    port = free_port()
    environ = {**os.environ, "LAYERDECK_DATA_DIR": str(data_dir), "LAYERDECK_PORT": str(port),
               "LAYERDECK_DATABASE_URL": "", **env}
    log = (log_path or data_dir / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve"], env=environ, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(url + "/api/v1/health", timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError(f"layerdeck serve exited; see {log.name}") from None
                time.sleep(0.1)
        else:
            raise RuntimeError(f"layerdeck serve did not start; see {log.name}")
        yield Served(url, data_dir, proc, tokens)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # still clean up after it: its images would block later runs' tags
            proc.kill()
            proc.wait(timeout=30)
        log.close()
        instance = data_dir / "instance-id"
        if instance.exists():
            client = docker.from_env()
            label = f"layerdeck.instance={instance.read_text().strip()}"
            for container in client.containers.list(all=True, filters={"label": label}):
                with suppress(docker.errors.APIError):
                    container.remove(force=True)
            for image in client.images.list(filters={"label": label}):
                with suppress(docker.errors.APIError):
                    client.images.remove(image.id, force=True)
            client.close()
