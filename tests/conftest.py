"""Fixtures: a fresh Layerdeck (database migrated, workers running) per test, a real Docker engine,
a busybox base image made locally (no registry here), and removal of exactly what a test created."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests.helpers import TokenClient, add_user, ensure_base_image
from tests.wsclient import SERVER_HEADERS
from webapp import create_app, start_background

BUSYBOX = Path("/bin/busybox")
TEST_LABEL = "layerdeck.test"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=30)
    try:
        client.ping()
    except Exception as exc:  # the suite's own script starts an engine; without one these tests cannot run
        pytest.fail(f"No Docker engine answers ({exc}). Run the tests with scripts/test.sh, which starts one.")
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    """A tiny base image with a shell and httpd (see tests.helpers.ensure_base_image)."""
    return ensure_base_image(docker_client.api)


def _make_app(tmp_path: Path, **config: Any) -> Flask:
    from flask_migrate import upgrade

    data = tmp_path / "data"
    settings = {"DATA_DIR": str(data), "DATABASE_URL": f"sqlite:///{data / 'layerdeck.db'}", "TESTING": True}
    settings.update(config)
    app = create_app(settings)
    with app.app_context():
        upgrade()
    # Every test client signs its requests as this admin unless a test asks otherwise (tests/helpers.py).
    app.test_client_class = TokenClient
    app.extensions["test.tokens"] = {"admin": add_user(app, "admin", "admin")}
    return app


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """Make a Layerdeck with its workers running; stopped, and its engine objects removed, after the test."""
    apps: list[Flask] = []

    def factory(start: bool = True, **config: Any) -> Flask:
        app = _make_app(tmp_path, **config)
        if start:
            start_background(app)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        shutdown = app.extensions.get("layerdeck.shutdown")
        if shutdown:
            shutdown()
        remove_engine_objects(app)


def remove_engine_objects(app: Flask) -> None:
    """Remove images (and any container) carrying this Layerdeck instance's label, and nothing else."""
    label = f"layerdeck.instance={app.config['INSTANCE_ID']}"
    try:
        client = docker.from_env(timeout=30)
    except Exception:
        return
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for image in client.images.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image.id, force=True)
    client.close()


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app on a real threaded HTTP server (websockets need one); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    netloc = f"127.0.0.1:{server.server_port}"
    SERVER_HEADERS[netloc] = [("Authorization", f"Bearer {app.extensions['test.tokens']['admin']}")]
    yield f"http://{netloc}"
    SERVER_HEADERS.pop(netloc, None)
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def busybox_context(base_image: str) -> dict[str, str]:
    """The requirements-first layout the projector demo uses."""
    return {
        "Dockerfile": (
            f"FROM {base_image}\n"
            "WORKDIR /app\n"
            "COPY requirements.txt .\n"
            "RUN echo installing && cat requirements.txt > /installed.txt\n"
            "COPY ./app ./app\n"
            "RUN ls app > /app-files.txt\n"
        ),
        "requirements.txt": "flask==3.0\n",
        "app/main.py": "print('hello')\n",
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(Path("/tmp/layerdeck-test-scratch"), ignore_errors=True)
