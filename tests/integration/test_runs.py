"""Running what was built, on the real engine: ports, the container policy, logs, stop/remove, history."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import docker
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import build_ok, tar_bytes
from tests.wsclient import WSClient

pytestmark = pytest.mark.engine


@pytest.fixture
def web_build(client: FlaskClient, base_image: str) -> dict[str, Any]:
    """A built image that serves HTTP with busybox httpd on 8080 and logs each request."""
    dockerfile = (
        f"FROM {base_image}\n"
        f"RUN mkdir /www && echo hello-from-layerdeck > /www/index.html\n"
        "EXPOSE 8080\n"
        'CMD ["httpd", "-f", "-vv", "-p", "8080", "-h", "/www"]\n'
    )
    return build_ok(client, tar_bytes({"Dockerfile": dockerfile}), tag="layerdeck-test/web:1")


def start(client: FlaskClient, **body: Any) -> Any:
    """Ask for a run; every container Layerdeck starts in these tests is inspected for the policy."""
    response = client.post("/api/v1/runs", data=json.dumps(body), content_type="application/json")
    if response.status_code == 201:
        assert_policy(client.application, response.get_json())
    return response


def assert_policy(app: Flask, run: dict[str, Any]) -> None:
    """What the engine actually made (docker inspect), not what the code meant to send."""
    inspected = docker.from_env().api.inspect_container(run["container_id"])
    host = inspected["HostConfig"]
    assert host["Privileged"] is False
    assert not host["CapAdd"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert not host["Binds"] and not inspected["Mounts"] and not host.get("Devices") and not host.get("VolumesFrom")
    assert host["NetworkMode"] == "bridge" and host["PidMode"] == "" and host["IpcMode"] in ("", "private")
    assert host["Memory"] == app.config["RUN_MEMORY"] and host["PidsLimit"] == app.config["RUN_PIDS"]
    assert host["NanoCpus"] == int(app.config["RUN_CPUS"] * 1e9)
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    for bindings in (host["PortBindings"] or {}).values():
        assert all(b["HostIp"] == app.config["RUN_ADDRESS"] for b in bindings)
    labels = inspected["Config"]["Labels"]
    assert labels["layerdeck.run"] == str(run["id"]) and labels["layerdeck.instance"] == app.config["INSTANCE_ID"]


def get_page(url: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=2).text
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def free_port_in_range(app: Flask) -> int:
    low, high = app.config["RUN_PORTS"]
    for port in range(high, low, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port")


def test_a_run_with_an_automatic_port_serves_http_and_the_container_obeys_the_policy(
    app: Flask, client: FlaskClient, web_build: dict[str, Any], docker_client: docker.DockerClient
) -> None:
    defaults = client.get(f"/api/v1/builds/{web_build['id']}/run-defaults").get_json()
    assert defaults["ports"] == [{"container_port": 8080, "protocol": "tcp"}]
    response = start(client, build_id=web_build["id"], ports=[{"container_port": 8080, "host_port": None}],
                     env={"MODE": "demo"})
    assert response.status_code == 201, response.get_json()
    run = response.get_json()
    port = run["ports"][0]
    low, high = app.config["RUN_PORTS"]
    assert low <= port["host_port"] <= high and port["host_ip"] == "127.0.0.1"
    assert "hello-from-layerdeck" in get_page(port["url"])

    inspected = docker_client.api.inspect_container(run["container_id"])  # the policy: see start()
    host = inspected["HostConfig"]
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port["host_port"])}]}
    assert "MODE=demo" in inspected["Config"]["Env"]
    assert run["created_from"] == "127.0.0.1" and run["tag"] == "layerdeck-test/web:1"


def test_a_chosen_port_is_used_and_a_taken_one_is_refused_with_a_suggestion_leaving_nothing(
    app: Flask, client: FlaskClient, web_build: dict[str, Any], docker_client: docker.DockerClient
) -> None:
    chosen = free_port_in_range(app)
    first = start(client, build_id=web_build["id"], ports=[{"container_port": 8080, "host_port": chosen}])
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["ports"][0]["host_port"] == chosen
    assert "hello-from-layerdeck" in get_page(f"http://127.0.0.1:{chosen}/")

    containers_before = {c.id for c in docker_client.containers.list(all=True, sparse=True)}
    runs_before = [r["id"] for r in client.get("/api/v1/runs").get_json()["runs"]]
    again = start(client, build_id=web_build["id"], ports=[{"container_port": 8080, "host_port": chosen}])
    assert again.status_code == 409
    error = again.get_json()["error"]
    assert error["code"] == "port_taken" and f"Port {chosen} is already in use" in error["message"]
    assert error["suggested_port"] and error["suggested_port"] != chosen
    assert f"Port {error['suggested_port']} is free." in error["message"]
    assert {c.id for c in docker_client.containers.list(all=True, sparse=True)} == containers_before
    assert [r["id"] for r in client.get("/api/v1/runs").get_json()["runs"]] == runs_before

    # A port held by some other process on the host is just as taken.
    other = free_port_in_range(app)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", other))
        holder.listen()
        busy = start(client, build_id=web_build["id"], ports=[{"container_port": 8080, "host_port": other}])
    assert busy.status_code == 409 and busy.get_json()["error"]["code"] == "port_taken"


@pytest.mark.parametrize(("host_port", "words"), [(80, "below 1024"), (1500, "outside the run port range")])
def test_ports_outside_the_policy_are_refused(client: FlaskClient, web_build: dict[str, Any], host_port: int,
                                             words: str) -> None:
    response = start(client, build_id=web_build["id"], ports=[{"container_port": 8080, "host_port": host_port}])
    assert response.status_code == 400 and words in response.get_json()["error"]["message"]


def test_layerdecks_own_port_is_refused(make_app: Any, base_image: str) -> None:
    app = make_app(PORT=20500, RUN_PORTS=(20000, 20999))
    client = app.test_client()
    build = build_ok(client, dockerfile_text=f"FROM {base_image}\nCMD [\"sleep\", \"60\"]\n")
    response = start(client, build_id=build["id"], ports=[{"container_port": 80, "host_port": 20500}])
    assert response.status_code == 400 and "Layerdeck's own" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("field", ["privileged", "volumes", "network_mode", "cap_add", "host_config", "binds",
                                   "devices", "pid_mode", "mounts", "security_opt"])
def test_every_forbidden_option_gets_400_naming_it(
    client: FlaskClient, web_build: dict[str, Any], docker_client: docker.DockerClient, field: str
) -> None:
    before = {c.id for c in docker_client.containers.list(all=True, sparse=True)}
    response = start(client, build_id=web_build["id"], **{field: True})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "forbidden_field" and f'"{field}"' in error["message"]
    assert {c.id for c in docker_client.containers.list(all=True, sparse=True)} == before


def test_logs_stream_live_then_stop_and_remove_keep_the_history(
    app: Flask, client: FlaskClient, web_build: dict[str, Any], live_server: str
) -> None:
    run = start(client, build_id=web_build["id"], ports=[{"container_port": 8080, "host_port": None}]).get_json()
    url = live_server.replace("http://", "ws://") + run["ws_url"]
    ws = WSClient(url, timeout=30)
    get_page(run["ports"][0]["url"] + "/index.html")  # httpd -vv logs each request's url on stderr
    seen: list[dict[str, Any]] = []
    while not any("url:/index.html" in m.get("text", "") for m in seen):
        data = ws.receive()
        assert data is not None, seen
        seen.append(json.loads(data))
    line = next(m for m in seen if "url:/index.html" in m.get("text", ""))
    assert line["stream"] == "stderr" and line["time"].startswith("20")
    assert [m["seq"] for m in seen] == list(range(seen[0]["seq"], seen[0]["seq"] + len(seen)))

    stopped = client.post(f"/api/v1/runs/{run['id']}/stop")
    assert stopped.status_code == 200 and stopped.get_json()["status"] == "stopped"
    while (data := ws.receive()) is not None:
        seen.append(json.loads(data))
    ws.close()
    assert seen[-1]["type"] == "end" and seen[-1]["status"] == "stopped"

    restarted = client.post(f"/api/v1/runs/{run['id']}/restart").get_json()
    assert restarted["status"] == "running"
    assert "hello-from-layerdeck" in get_page(run["ports"][0]["url"])
    removed = client.delete(f"/api/v1/runs/{run['id']}")
    assert removed.status_code == 200 and removed.get_json()["status"] == "removed"
    after = client.get(f"/api/v1/runs/{run['id']}").get_json()
    assert after["status"] == "removed" and after["ports"][0]["host_port"] == run["ports"][0]["host_port"]
    replay = WSClient(url + "?after=0", timeout=30)
    messages = []
    while (data := replay.receive()) is not None:
        messages.append(json.loads(data))
    replay.close()
    assert any("url:/index.html" in m.get("text", "") for m in messages)  # the log outlives the container


def test_a_container_removed_behind_layerdecks_back_shows_gone(
    client: FlaskClient, web_build: dict[str, Any], docker_client: docker.DockerClient
) -> None:
    run = start(client, build_id=web_build["id"]).get_json()
    docker_client.api.remove_container(run["container_id"], force=True)
    deadline = time.monotonic() + 10
    while client.get(f"/api/v1/runs/{run['id']}").get_json()["status"] != "gone":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_container_that_exits_at_once_shows_its_code_and_last_lines(
    app: Flask, client: FlaskClient, web_build: dict[str, Any]
) -> None:
    run = start(client, build_id=web_build["id"], command=["sh", "-c", "echo about to exit; exit 3"]).get_json()
    deadline = time.monotonic() + 15
    while (current := client.get(f"/api/v1/runs/{run['id']}").get_json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert current["status"] == "exited" and current["exit_code"] == 3
    assert current["exit_meaning"] is None  # 3 is the program's own; common codes get a sentence
    app.extensions["layerdeck.runs"].journal.sync()
    page = client.get(f"/runs/{run['id']}").get_data(as_text=True)
    assert "exit" in page.lower()


def test_layerdeck_acts_only_on_containers_it_created(
    client: FlaskClient, base_image: str, docker_client: docker.DockerClient
) -> None:
    other = docker_client.containers.run(base_image, ["sleep", "30"], detach=True, labels={"layerdeck.test": "other"})
    try:
        for ref in (other.id, other.id[:12]):
            assert client.get(f"/api/v1/runs/{ref}").status_code == 404
            assert client.post(f"/api/v1/runs/{ref}/stop").status_code == 404
            assert client.delete(f"/api/v1/runs/{ref}").status_code == 404
        other.reload()
        assert other.status == "running"
    finally:
        other.remove(force=True)


def test_bad_run_requests_get_a_sentence(client: FlaskClient, web_build: dict[str, Any]) -> None:
    cases = [
        ({}, "either build_id"),
        ({"build_id": 9999}, "no build #9999"),
        ({"image": "layerdeck-test/no-such-image:1"}, "never pulls"),
        ({"build_id": web_build["id"], "ports": [{"container_port": 99999}]}, "1 to 65535"),
        ({"build_id": web_build["id"], "ports": [{"container_port": 80, "protocol": "sctp"}]}, "tcp or udp"),
        ({"build_id": web_build["id"], "env": {"1BAD": "x"}}, "not a valid environment variable"),
        ({"build_id": web_build["id"], "command": "httpd -f"}, "list of strings"),
        ({"build_id": web_build["id"], "name": "no spaces please"}, "run's name"),
    ]
    for body, words in cases:
        response = start(client, **body)
        assert 400 <= response.status_code < 500, body
        assert words in response.get_json()["error"]["message"], (body, response.get_json())
    assert client.get("/api/v1/runs").get_json()["runs"] == []


def test_after_a_layerdeck_restart_the_log_of_a_still_running_container_goes_on(
    app: Flask, client: FlaskClient, web_build: dict[str, Any], make_app: Any
) -> None:
    from webapp import start_background

    run = start(client, build_id=web_build["id"], ports=[{"container_port": 8080, "host_port": None}]).get_json()
    page = run["ports"][0]["url"]
    get_page(page + "/index.html")
    deadline = time.monotonic() + 10
    while not _log_has(app, run["id"], "url:/index.html"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    app.extensions["layerdeck.shutdown"]()  # Layerdeck goes away; the container does not

    again = make_app(start=False, DATA_DIR=app.config["DATA_DIR"], DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"])
    start_background(again)  # what the next `layerdeck serve` does
    assert again.test_client().get(f"/api/v1/runs/{run['id']}").get_json()["status"] == "running"
    get_page(page + "/after-restart.html")
    deadline = time.monotonic() + 10
    while not _log_has(again, run["id"], "url:/after-restart.html"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    lines = _log_lines(again, run["id"])
    assert lines.count("url:/index.html") == 1  # picked up where it left off: nothing twice


def _log_lines(app: Flask, run_id: int) -> list[str]:
    from webapp.extensions import db
    from webapp.models import RunEvent

    app.extensions["layerdeck.runs"].journal.sync()
    with app.app_context():
        rows = db.session.scalars(db.select(RunEvent.data).where(RunEvent.run_id == run_id, RunEvent.type == "log"))
        return [json.loads(r)["text"].split(": ", 1)[-1] for r in rows]


def _log_has(app: Flask, run_id: int, text: str) -> bool:
    return text in _log_lines(app, run_id)
