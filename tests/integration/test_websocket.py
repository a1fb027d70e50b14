"""WS /ws/builds/<id>: live viewers, late joiners, resuming with ?after, many viewers, leaving mid-build."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import submit, tar_bytes, wait_for_build
from tests.wsclient import WSClient
from webapp.extensions import db
from webapp.models import BuildEvent

pytestmark = pytest.mark.engine


def ws_url(base: str, build_id: int, after: int | None = None) -> str:
    url = base.replace("http://", "ws://") + f"/ws/builds/{build_id}"
    return url if after is None else f"{url}?after={after}"


def read_all(url: str, stop_after: int | None = None, timeout: float = 120) -> list[dict[str, Any]]:
    """Every message until `end` (or until stop_after messages, then hang up)."""
    ws = WSClient(url, timeout=timeout)
    messages: list[dict[str, Any]] = []
    try:
        while True:
            data = ws.receive()
            if data is None:
                return messages
            messages.append(json.loads(data))
            if messages[-1]["type"] == "end" or (stop_after is not None and len(messages) >= stop_after):
                return messages
    finally:
        ws.close()


def stored(app: Flask, build_id: int) -> list[dict[str, Any]]:
    app.extensions["layerdeck.journal"].sync()
    with app.app_context():
        rows = db.session.scalars(
            db.select(BuildEvent).where(BuildEvent.build_id == build_id).order_by(BuildEvent.seq)
        )
        return [r.message() for r in rows]


def slow_context(base_image: str, tag: str) -> bytes:
    dockerfile = (
        f"FROM {base_image}\n"
        f"RUN echo start {tag}; sleep 1; echo middle; sleep 1; echo done\n"
        "RUN for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done\n"
        "COPY Dockerfile /Dockerfile.copy\n"
    )
    return tar_bytes({"Dockerfile": dockerfile})


def test_a_live_viewer_sees_every_step_in_order_then_the_end(
    app: Flask, client: FlaskClient, live_server: str, base_image: str
) -> None:
    build_id = submit(client, slow_context(base_image, f"live-{app.config['INSTANCE_ID']}")).get_json()["id"]
    messages = read_all(ws_url(live_server, build_id))

    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[-1] == {"type": "end", "seq": len(messages), "status": "succeeded"}
    first_seen = []
    for m in messages:
        if m["type"] == "step" and m["step"]["index"] not in first_seen:
            first_seen.append(m["step"]["index"])
    assert first_seen == [1, 2, 3, 4]
    ticks = [m["text"] for m in messages if m["type"] == "log" and m["text"].startswith("tick")]
    assert ticks == [f"tick {i}" for i in range(1, 6)]
    assert all(m["step"] == 3 for m in messages if m["type"] == "log" and m["text"].startswith("tick"))
    statuses = [m["build"]["status"] for m in messages if m["type"] == "status"]
    assert statuses == ["running", "succeeded"]  # a free worker took it at once: it never queued
    assert messages == stored(app, build_id)


def test_late_joiners_and_reconnects_receive_exactly_the_stored_log(
    app: Flask, client: FlaskClient, live_server: str, base_image: str
) -> None:
    build_id = submit(client, slow_context(base_image, f"late-{app.config['INSTANCE_ID']}")).get_json()["id"]
    # One viewer leaves after a few messages, mid-build, and comes back with ?after.
    early = read_all(ws_url(live_server, build_id), stop_after=4)
    assert len(early) == 4
    resumed = read_all(ws_url(live_server, build_id, after=early[-1]["seq"]))
    wait_for_build(client, build_id)
    everything = stored(app, build_id)

    assert early + resumed == everything  # no gap, no repeat
    late = read_all(ws_url(live_server, build_id))  # joins after the end: replayed from the database
    assert late == everything
    tail = read_all(ws_url(live_server, build_id, after=len(everything) - 3))
    assert tail == everything[-3:]


def test_many_viewers_at_once_each_get_the_whole_build_and_leaving_does_not_affect_it(
    app: Flask, client: FlaskClient, live_server: str, base_image: str
) -> None:
    build_id = submit(client, slow_context(base_image, f"many-{app.config['INSTANCE_ID']}")).get_json()["id"]
    results: dict[int, list[dict[str, Any]]] = {}

    def watch(n: int) -> None:
        results[n] = read_all(ws_url(live_server, build_id), stop_after=3 if n % 4 == 0 else None)

    threads = [threading.Thread(target=watch, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    build = wait_for_build(client, build_id)
    everything = stored(app, build_id)

    assert build["status"] == "succeeded"  # viewers hanging up mid-build changed nothing
    for n, messages in results.items():
        if n % 4 == 0:
            assert messages == everything[:3]
        else:
            assert messages == everything


def test_an_unknown_build_gets_an_error_message(live_server: str) -> None:
    messages = read_all(ws_url(live_server, 999))
    assert messages[0]["type"] == "error"
    assert "no build #999" in messages[0]["message"]


def test_idle_sockets_get_keep_alive_pings(make_app: Any, base_image: str) -> None:
    from werkzeug.serving import make_server

    app = make_app(WS_PING_INTERVAL=0.5)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = app.test_client()
        quiet = tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo {id(server)} && sleep 3\n"})
        build_id = submit(client, quiet, no_cache="true").get_json()["id"]
        ws = WSClient(ws_url(f"http://127.0.0.1:{server.server_port}", build_id),
                      headers=[("Authorization", f"Bearer {app.extensions['test.tokens']['admin']}")])
        while (data := ws.receive()) is not None and json.loads(data)["type"] != "end":
            pass
        ws.close()
        assert ws.pings >= 2  # the step printed nothing for 3 s; the server kept the socket alive
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_resuming_after_a_finished_builds_end_closes_at_once(
    app: Flask, client: FlaskClient, live_server: str, base_image: str
) -> None:
    build_id = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo {id(app)}\n"})).get_json()["id"]
    wait_for_build(client, build_id)
    everything = stored(app, build_id)
    # The server closes at once; a socket left waiting would trip the reader's 10 s timeout instead.
    assert read_all(ws_url(live_server, build_id, after=everything[-1]["seq"]), timeout=10) == []
