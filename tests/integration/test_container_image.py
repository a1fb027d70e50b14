"""Layerdeck's own image: the project's Dockerfile, built on the real engine FROM a Debian base made here
(scripts/base-image.sh: no registry can be pulled from), its dependencies from a wheelhouse (the build
reaches no package index), run the way docker-compose.yml runs it. The container serves /api/v1/health
with the engine reachable through the mounted socket, as a non-root user in the socket's group, and its
own HEALTHCHECK reports it healthy.

The first run makes the base image (about a minute of debootstrap); it is kept, labelled, for the next.
Everything else the test creates (image, container, volume) is labelled and removed.
Set LAYERDECK_TEST_BASE_IMAGE to build FROM another image instead (e.g. python:3.11-slim-bookworm where a
registry answers)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

pytestmark = [pytest.mark.engine, pytest.mark.image]

ROOT = Path(__file__).resolve().parents[2]
LABEL = "layerdeck.test"
SECOND = 1_000_000_000  # the engine counts healthcheck intervals in nanoseconds


def engine_socket() -> Path:
    """The engine's unix socket: the one the container gets mounted."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"DOCKER_HOST={host} is not a unix socket that could be mounted into a container")
    return Path(host.removeprefix("unix://"))


def run_script(*args: str, timeout: float) -> str:
    result = subprocess.run([str(ROOT / "scripts" / args[0]), *args[1:]], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"scripts/{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def debian_base() -> str:
    if os.environ.get("LAYERDECK_TEST_BASE_IMAGE"):
        return os.environ["LAYERDECK_TEST_BASE_IMAGE"]
    return run_script("base-image.sh", timeout=1200).strip().splitlines()[-1]


def new_image_ids(log: list[str]) -> list[str]:
    """Images the classic builder made in this build (the result of each step it ran), not those it found:
    the FROM image and cache hits. Only these are ours to remove when a build fails half-way."""
    made, step, cached = [], "", False
    for line in log:
        if match := re.match(r"Step \d+/\d+ : (\w+)", line):
            step, cached = match.group(1).upper(), False
        elif line.strip() == "---> Using cache":
            cached = True
        elif (match := re.fullmatch(r" ---> ([0-9a-f]{12})", line)) and step != "FROM" and not cached:
            made.append(match.group(1))
    return made


def remove_images(client: docker.DockerClient, ids: list[str]) -> None:
    for image_id in reversed(ids):
        with contextlib.suppress(docker.errors.APIError):  # still used by another image: not ours alone
            client.images.remove(image_id)


@pytest.fixture(scope="module")
def layerdeck_image(debian_base: str) -> Iterator[str]:
    """The project's Dockerfile built with BASE_IMAGE=debian_base, dependencies from wheels/."""
    run_script("wheelhouse.sh", timeout=600)
    tag = f"layerdeck-test/layerdeck:{uuid.uuid4().hex[:12]}"
    client = docker.from_env(timeout=900)  # pip inside a step can be quiet for a while
    log: list[str] = []
    try:
        error = None
        for chunk in client.api.build(path=str(ROOT), tag=tag, buildargs={"BASE_IMAGE": debian_base},
                                      labels={LABEL: "layerdeck-image"}, rm=True, forcerm=True, pull=False,
                                      decode=True):
            log.extend(chunk.get("stream", "").splitlines())
            error = error or chunk.get("error")
        if error:
            remove_images(client, new_image_ids(log))
            pytest.fail(f"the Dockerfile did not build: {error}\n" + "\n".join(log[-40:]))
        yield tag
    finally:
        if client.images.list(name=tag):
            client.images.remove(tag)  # and the untagged steps under it that nothing else uses
        client.close()


@pytest.fixture
def layerdeck_container(docker_client: docker.DockerClient, layerdeck_image: str) -> Iterator[Any]:
    """Run as docker-compose.yml runs it: the socket mounted, its group added, a named volume for /data,
    127.0.0.1 only, read-only root, no capabilities. The image's own user and health check command; only
    the check's interval is shortened, so that `healthy` comes in seconds rather than half a minute."""
    sock = engine_socket()
    name = f"layerdeck-test-{uuid.uuid4().hex[:12]}"
    volume = docker_client.volumes.create(name=f"{name}-data", labels={LABEL: "layerdeck-data"})
    container = None
    try:
        container = docker_client.containers.run(
            layerdeck_image, detach=True, name=name, labels={LABEL: "layerdeck-container"},
            volumes={str(sock): {"bind": "/var/run/docker.sock", "mode": "rw"},
                     volume.name: {"bind": "/data", "mode": "rw"}},
            group_add=[str(sock.stat().st_gid)],
            ports={"8000/tcp": ("127.0.0.1", None)},  # a free port the engine picks
            environment={"DOCKER_CONFIG": "/opt/layerdeck/docker-config"},
            read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
            healthcheck={"interval": SECOND, "timeout": 10 * SECOND, "start_period": 60 * SECOND, "retries": 3},
        )
        yield container
    finally:
        if container is not None:
            container.remove(force=True)
        volume.remove(force=True)


def wait_for_health(container: Any, bound: float = 120, token: str | None = None) -> dict[str, Any]:
    """Poll GET /api/v1/health on the published port until Layerdeck answers (as `token`'s user if given)."""
    container.reload()
    host_port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]
    assert host_port["HostIp"] == "127.0.0.1"
    url = f"http://127.0.0.1:{host_port['HostPort']}/api/v1/health"
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=5,
                                    headers={"Authorization": f"Bearer {token}"} if token else {})
            if response.status_code == 200:
                return response.json()  # type: ignore[no-any-return]
        except requests.ConnectionError:
            pass
        container.reload()
        if container.status != "running":
            break
        time.sleep(0.5)
    raise AssertionError(f"Layerdeck never answered on {url} (container {container.status}):\n"
                         + container.logs().decode(errors="replace")[-4000:])


def wait_for_health_status(container: Any, bound: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + bound
    while True:
        container.reload()
        health = container.attrs["State"].get("Health") or {}
        if health.get("Status") in ("healthy", "unhealthy") or time.monotonic() > deadline:
            return health  # type: ignore[no-any-return]
        time.sleep(0.5)


def test_the_image_serves_health_with_the_engine_reachable_as_a_non_root_user(
        docker_client: docker.DockerClient, layerdeck_container: Any, layerdeck_image: str) -> None:
    body = wait_for_health(layerdeck_container)
    assert body == {"status": "ok", "docker": {"ok": True}, "database": {"ok": True}}  # what anyone may see

    # The first admin made with the CLI inside the container, and a token for a script: signed in, health
    # names the engine it reaches, the host's own.
    made = layerdeck_container.exec_run(["sh", "-c", "printf 'container password\\ncontainer password\\n' | "
                                         "layerdeck create-user admin --role admin --password-stdin && "
                                         "layerdeck create-token 'container test' 2>/dev/null"])
    assert made.exit_code == 0, made.output.decode(errors="replace")
    token = made.output.decode().strip().splitlines()[-1]  # create-token's last line is the token alone
    assert token.startswith("ldk_")
    signed = wait_for_health(layerdeck_container, token=token)
    assert signed["docker"]["ok"] is True, signed["docker"]
    assert signed["docker"]["api_version"] == docker_client.version()["ApiVersion"]

    # The server process (pid 1: `layerdeck serve`) is the image's non-root user, in the socket's group.
    status = layerdeck_container.exec_run(["cat", "/proc/1/status", "/proc/1/cmdline"]).output.decode()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
    groups = re.search(r"^Groups:\s*(.*)$", status, re.MULTILINE)
    assert uids and groups, status
    assert set(uids.group(1).split()) == {"10001"}  # real, effective, saved and filesystem uid
    assert str(engine_socket().stat().st_gid) in groups.group(1).split()
    assert "layerdeck\0serve" in status
    assert layerdeck_container.exec_run(["id", "-u"]).output.decode().strip() == "10001"
    # The database is on the volume, written by that user; the empty DOCKER_CONFIG is what the SDK reads.
    listing = layerdeck_container.exec_run(["ls", "-n", "/data/layerdeck.db", "/opt/layerdeck/docker-config"])
    assert listing.exit_code == 0, listing.output
    assert re.search(r"^-\S+\s+\d+\s+10001\s+10001\s.*/data/layerdeck.db$", listing.output.decode(), re.MULTILINE)
    assert "total 0" in listing.output.decode()

    # What the engine created: no privilege, no capability, only the socket and the volume mounted.
    attrs = layerdeck_container.attrs
    assert attrs["Config"]["User"] == "10001:10001"
    assert attrs["HostConfig"]["Privileged"] is False
    assert attrs["HostConfig"]["CapAdd"] in (None, [])
    assert sorted(m["Destination"] for m in attrs["Mounts"]) == ["/data", "/var/run/docker.sock"]

    # The image's own HEALTHCHECK command (only its interval was changed) reports healthy.
    image_check = docker_client.images.get(layerdeck_image).attrs["Config"]["Healthcheck"]["Test"]
    assert attrs["Config"]["Healthcheck"]["Test"] == image_check
    assert "/api/v1/health" in " ".join(image_check)
    health = wait_for_health_status(layerdeck_container)
    assert health.get("Status") == "healthy", health
