"""Browser tests: Debian's Chromium driven by Playwright against a real `layerdeck serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("LAYERDECK_SHOTS", "/tmp/layerdeck-shots"))


@dataclass
class Served:
    url: str
    data_dir: Path


@pytest.fixture
def served(tmp_path: Path, base_image: str) -> Iterator[Served]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = tmp_path / "data"
    env = {**os.environ, "LAYERDECK_DATA_DIR": str(data_dir), "LAYERDECK_PORT": str(port)}
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve"], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                requests.get(url + "/api/v1/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield Served(url, data_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        instance = (data_dir / "instance-id").read_text().strip()
        client = docker.from_env()
        for image in client.images.list(filters={"label": f"layerdeck.instance={instance}"}):
            try:
                client.images.remove(image.id, force=True)
            except docker.errors.APIError:
                pass


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    yield page
    context.close()


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # the build page follows the running step; shoot from the top
    page.screenshot(path=str(path), full_page=True)
    return path
