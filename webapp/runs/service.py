"""Runs: containers from built images, on the server's terms.

The user chooses the image, a name, a command, environment variables and container ports; everything
else about the container is fixed here (engine.ContainerSpec). Host ports come from a configured range
and are checked before the container is made; a container that cannot start is removed and its row
deleted, so a refused run leaves nothing behind. Every container's log is followed into the run journal
while it runs; its status is kept true to the engine whenever runs are read.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker
from flask import Flask
from sqlalchemy import delete, func, select

from webapp.builds.options import SECRET_MASK, is_secret_arg
from webapp.db import begin_write
from webapp.engine import ContainerSpec, Engine, EngineError, PortSpec
from webapp.errors import BadRequest, Conflict, EngineUnavailable, NotFound
from webapp.extensions import db
from webapp.models import Build, BuildStatus, Run, RunEvent, RunStatus
from webapp.runs.journal import RunJournal

log = logging.getLogger(__name__)

ALLOWED_FIELDS = ("build_id", "image", "name", "ports", "env", "command")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_CONTAINER_ID = re.compile(r"[0-9a-f]{12,64}\Z")
MAX_PORTS = 20


@dataclass(frozen=True)
class PortRequest:
    container_port: int
    protocol: str
    host_port: int | None


@dataclass(frozen=True)
class RunRequest:
    build_id: int | None
    image: str | None
    name: str | None
    ports: tuple[PortRequest, ...]
    env: dict[str, str]
    command: list[str] | None


def _bad(message: str, code: str = "invalid_run") -> BadRequest:
    return BadRequest(message, code=code)


def parse_run_request(body: Any) -> RunRequest:
    """The JSON a user sent -> a RunRequest; anything outside the allowlist is refused by name."""
    if not isinstance(body, dict):
        raise _bad('Send a JSON object such as {"build_id": 7, "ports": [{"container_port": 8080}]}.')
    extra = [key for key in body if key not in ALLOWED_FIELDS]
    if extra:
        raise BadRequest(
            f'"{extra[0]}" is not something a run may set: Layerdeck decides the container\'s settings itself. '
            f"A run takes only {', '.join(ALLOWED_FIELDS)}.", code="forbidden_field")
    build_id, image = body.get("build_id"), body.get("image")
    if (build_id is None) == (image is None):
        raise _bad("Say what to run: either build_id (a build's image) or image, not both.")
    if build_id is not None and (not isinstance(build_id, int) or isinstance(build_id, bool)):
        raise _bad("build_id must be a build's number.")
    if image is not None and (not isinstance(image, str) or not image.strip() or len(image) > 255):
        raise _bad("image must be an image reference or id.")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        raise _bad("A run's name uses letters, digits, '_', '.' and '-' (up to 63), starting with a letter "
                   "or digit.")
    return RunRequest(build_id, image.strip() if image else None, name or None, _parse_ports(body.get("ports")),
                      _parse_env(body.get("env")), _parse_command(body.get("command")))


def _parse_ports(raw: Any) -> tuple[PortRequest, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_PORTS:
        raise _bad(f"ports must be a list of at most {MAX_PORTS} objects.")
    ports = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise _bad('Each port is an object such as {"container_port": 8080, "host_port": null}.')
        extra = [k for k in entry if k not in ("container_port", "protocol", "host_port")]
        if extra:
            raise BadRequest(f'"{extra[0]}" is not something a port may set; a port takes container_port, '
                             "protocol and host_port.", code="forbidden_field")
        container_port, host_port = entry.get("container_port"), entry.get("host_port")
        protocol = entry.get("protocol") or "tcp"
        if not isinstance(container_port, int) or isinstance(container_port, bool) or \
                not 1 <= container_port <= 65535:
            raise _bad("container_port must be a port number from 1 to 65535.")
        if protocol not in ("tcp", "udp"):
            raise _bad(f"protocol must be tcp or udp, not {protocol!r}.")
        if host_port is not None and (not isinstance(host_port, int) or isinstance(host_port, bool)):
            raise _bad("host_port must be a port number, or null to have one chosen.")
        ports.append(PortRequest(container_port, protocol, host_port))
    return tuple(ports)


def _parse_env(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad('env must be an object such as {"MODE": "demo"}.')
    env = {}
    for key, value in raw.items():
        if not _ENV_NAME.match(key):
            raise _bad(f'"{key}" is not a valid environment variable name.')
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _bad(f'The environment variable "{key}" must have a text or number value.')
        env[key] = str(value)
    return env


def _parse_command(raw: Any) -> list[str] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list) or not all(isinstance(part, str) for part in raw):
        raise _bad('command must be a list of strings such as ["httpd", "-f", "-p", "8080"].')
    return list(raw)


# --- ports --------------------------------------------------------------------------------------------


def _bindable(address: str, port: int, protocol: str) -> bool:
    """Whether nothing on this host holds the port (docker-proxy holds every published one)."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


class PortPolicy:
    def __init__(self, app: Flask, engine: Engine) -> None:
        self.low, self.high = app.config["RUN_PORTS"]
        self.address: str = app.config["RUN_ADDRESS"]
        self.own: int = app.config["PORT"]
        self.engine = engine

    def free(self, port: int, protocol: str, taken: set[int]) -> bool:
        return port not in taken and port != self.own and _bindable(self.address, port, protocol)

    def suggest(self, protocol: str, taken: set[int]) -> int | None:
        for port in range(self.low, self.high + 1):
            if self.free(port, protocol, taken):
                return port
        return None

    def assign(self, requested: tuple[PortRequest, ...]) -> tuple[PortSpec, ...]:
        taken = self.engine.published_ports()
        chosen: list[PortSpec] = []
        for want in requested:
            if want.host_port is None:
                port = self.suggest(want.protocol, taken)
                if port is None:
                    raise Conflict(f"Every port from {self.low} to {self.high} is taken; stop a run to free one.",
                                   code="no_free_port")
            else:
                port = want.host_port
                self.check_allowed(port)
                if not self.free(port, want.protocol, taken):
                    raise self.taken(port, want.protocol, taken)
            taken.add(port)
            chosen.append(PortSpec(want.container_port, want.protocol, port))
        return tuple(chosen)

    def check_allowed(self, port: int) -> None:
        if port < 1024:
            raise _bad(f"Port {port} is below 1024; those are the host's own. Choose one from "
                       f"{self.low} to {self.high}.", code="port_not_allowed")
        if port == self.own:
            raise _bad(f"Port {port} is Layerdeck's own.", code="port_not_allowed")
        if not self.low <= port <= self.high:
            raise _bad(f"Port {port} is outside the run port range {self.low}-{self.high} "
                       "(LAYERDECK_RUN_PORTS).", code="port_not_allowed")

    def taken(self, port: int, protocol: str, taken: set[int]) -> Conflict:
        suggestion = self.suggest(protocol, taken | {port})
        hint = f" Port {suggestion} is free." if suggestion else ""
        error = Conflict(f"Port {port} is already in use on this host.{hint}", code="port_taken")
        error.extra = {"port": port, "suggested_port": suggestion}
        return error


# --- starting, acting, reading ------------------------------------------------------------------------


def _resolve_image(engine: Engine, req: RunRequest) -> tuple[str, str, int | None]:
    """(image id, what to show for it, build id)."""
    if req.build_id is not None:
        build = db.session.get(Build, req.build_id)
        if build is None:
            raise NotFound(f"There is no build #{req.build_id}.", code="no_such_build")
        if build.status != BuildStatus.SUCCEEDED or not build.image_id:
            raise Conflict(f"Build #{build.id} did not succeed ({build.status}), so it has no image to run.",
                           code="build_not_runnable")
        info = engine.inspect_image(build.image_id)
        if info is None:
            raise Conflict(f"Build #{build.id}'s image is no longer on the engine; rebuild it.", code="image_gone")
        return str(info["Id"]), build.tag or build.image_id[:19], build.id
    assert req.image is not None
    info = engine.inspect_image(req.image)
    if info is None:
        raise NotFound(f'There is no image "{req.image}" on the engine (Layerdeck never pulls one).',
                       code="no_such_image")
    return str(info["Id"]), req.image, None


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """The environment as stored and shown: values of secret-looking names masked (the container has them)."""
    return {k: SECRET_MASK if is_secret_arg(k) else v for k, v in env.items()}


def start_run(app: Flask, req: RunRequest, created_from: str | None, created_by: int | None = None) -> Run:
    runs: RunManager = app.extensions["layerdeck.runs"]
    engine = runs.engine
    engine.ping()
    image_id, image_ref, build_id = _resolve_image(engine, req)
    policy = PortPolicy(app, engine)
    ports = policy.assign(req.ports)
    published = [{"container_port": p.container_port, "protocol": p.protocol, "host_ip": policy.address,
                  "host_port": p.host_port} for p in ports]
    begin_write()
    run = Run(build_id=build_id, image=image_id, image_ref=image_ref, name=req.name, status=RunStatus.RUNNING,
              ports=json.dumps(published), env=json.dumps(masked_env(req.env)),
              command=json.dumps(req.command) if req.command else None, created_at=time.time(),
              created_from=created_from, created_by=created_by)
    db.session.add(run)
    db.session.commit()  # the row first: its id goes on the container's label
    spec = ContainerSpec(
        image=image_id, name=req.name, command=req.command, env=req.env, ports=ports, address=policy.address,
        labels={"layerdeck.run": str(run.id), "layerdeck.instance": app.config["INSTANCE_ID"]},
        memory=app.config["RUN_MEMORY"], cpus=app.config["RUN_CPUS"], pids=app.config["RUN_PIDS"],
    )
    try:
        container_id = engine.run_container(spec)
    except BaseException as exc:
        _forget_run(run.id)
        if isinstance(exc, EngineError):
            raise _explain_start_failure(exc, policy, ports) from exc
        raise
    begin_write()
    run.container_id = container_id
    run.started_at = time.time()
    db.session.commit()
    runs.journal.status(run.id)
    runs.follow(run.id, container_id, since=None)
    return run


def _forget_run(run_id: int) -> None:
    begin_write()
    db.session.execute(delete(Run).where(Run.id == run_id))
    db.session.commit()


def _explain_start_failure(exc: EngineError, policy: PortPolicy, ports: tuple[PortSpec, ...]) -> Exception:
    text = exc.message
    lowered = text.lower()
    if "port is already allocated" in lowered or "address already in use" in lowered:
        port = next((p for p in ports if str(p.host_port) in text), ports[0] if ports else None)
        if port is not None:
            return policy.taken(port.host_port, port.protocol, {p.host_port for p in ports})
    if "is already in use by container" in lowered or "conflict. the container name" in lowered:
        return Conflict("A container with that name already exists on the engine; choose another name.",
                        code="name_taken")
    return BadRequest(f"The container could not start: {text}", code="start_failed")


def find_run(ref: str) -> Run:
    """A run by its number, or by its container's id (or a 12+ digit prefix) — only if Layerdeck made it."""
    run: Run | None = None
    if ref.isdigit() and len(ref) < 12:
        run = db.session.get(Run, int(ref))
    elif _CONTAINER_ID.match(ref):
        run = db.session.scalars(select(Run).where(Run.container_id.startswith(ref)).limit(1)).first()
    if run is None:
        raise NotFound(f"There is no run {ref} (Layerdeck acts only on containers it started).", code="no_such_run")
    return run


def _own_container(engine: Engine, app: Flask, run: Run) -> dict[str, Any] | None:
    """The run's container as the engine has it, if it still carries this Layerdeck's labels."""
    if not run.container_id:
        return None
    info = engine.inspect_container(run.container_id)
    if info is None:
        return None
    labels = info.get("Config", {}).get("Labels") or {}
    if labels.get("layerdeck.run") != str(run.id) or labels.get("layerdeck.instance") != app.config["INSTANCE_ID"]:
        return None
    return info


def stop_run(app: Flask, run: Run) -> Run:
    runs: RunManager = app.extensions["layerdeck.runs"]
    if run.status != RunStatus.RUNNING:
        raise Conflict(f"Run #{run.id} is not running ({run.status}).", code="not_running")
    if _own_container(runs.engine, app, run) is None:
        raise NotFound(f"Run #{run.id}'s container is gone.", code="container_gone")
    _set(run, status=RunStatus.STOPPED)  # first, so the log follower sees it was stopped, not that it exited
    runs.engine.stop_container(run.container_id or "")
    runs.wait_for_follower(run.id)
    return refreshed(app, run)


def restart_run(app: Flask, run: Run) -> Run:
    runs: RunManager = app.extensions["layerdeck.runs"]
    if run.status in (RunStatus.REMOVED, RunStatus.GONE, RunStatus.FAILED):
        raise Conflict(f"Run #{run.id}'s container is {run.status}; start a new run instead.", code="not_restartable")
    if _own_container(runs.engine, app, run) is None:
        raise NotFound(f"Run #{run.id}'s container is gone.", code="container_gone")
    since = time.time()
    runs.stop_following(run.id)
    runs.engine.restart_container(run.container_id or "")
    _set(run, status=RunStatus.RUNNING, started_at=time.time(), finished_at=None, exit_code=None)
    runs.follow(run.id, run.container_id or "", since=since)
    return run


def remove_run(app: Flask, run: Run) -> Run:
    runs: RunManager = app.extensions["layerdeck.runs"]
    if run.status in (RunStatus.REMOVED, RunStatus.GONE):
        raise Conflict(f"Run #{run.id}'s container is already {run.status}.", code="already_removed")
    was_running = run.status == RunStatus.RUNNING
    _set(run, status=RunStatus.REMOVED, finished_at=run.finished_at or time.time())
    if _own_container(runs.engine, app, run) is not None:
        runs.engine.remove_container(run.container_id or "")
    if was_running:
        runs.wait_for_follower(run.id)
    return run


def _set(run: Run, **changes: Any) -> None:
    begin_write()
    for key, value in changes.items():
        setattr(run, key, value)
    db.session.commit()
    db.session.refresh(run)


def refreshed(app: Flask, run: Run) -> Run:
    refresh_runs(app, [run])
    return run


def refresh_runs(app: Flask, runs: list[Run]) -> None:
    """Bring runs' statuses in line with the engine (one call for all); a dead engine changes nothing."""
    live = [r for r in runs if r.status in (RunStatus.RUNNING, RunStatus.EXITED, RunStatus.STOPPED)]
    if not live:
        return
    manager: RunManager = app.extensions["layerdeck.runs"]
    try:
        found = {c["Id"]: c for c in manager.engine.containers(f"layerdeck.instance={app.config['INSTANCE_ID']}")}
    except (EngineUnavailable, EngineError):
        return
    changed = False
    for run in live:
        container = found.get(run.container_id or "")
        if container is None:
            new: dict[str, Any] = {"status": RunStatus.GONE, "finished_at": run.finished_at or time.time()}
        elif container.get("State") == "running":
            new = {"status": RunStatus.RUNNING}
        else:
            info = manager.engine.inspect_container(run.container_id or "") or {}
            state = info.get("State", {})
            status = RunStatus.STOPPED if run.status == RunStatus.STOPPED else RunStatus.EXITED
            new = {"status": status, "exit_code": state.get("ExitCode"),
                   "finished_at": _engine_time(state.get("FinishedAt")) or run.finished_at or time.time()}
        if any(getattr(run, k) != v for k, v in new.items() if k != "finished_at" or run.finished_at is None):
            if not changed:
                begin_write()
                changed = True
            for key, value in new.items():
                setattr(run, key, value)
    if changed:
        db.session.commit()


def _engine_time(text: str | None) -> float | None:
    """The engine's RFC 3339 time with nanoseconds -> UNIX seconds; its zero time -> None."""
    if not text or text.startswith("0001-"):
        return None
    main, _, rest = text.rstrip("Z").partition(".")
    fraction = float(f"0.{rest[:9]}") if rest else 0.0
    return datetime.fromisoformat(main + "+00:00").timestamp() + fraction


# --- following container logs ----------------------------------------------------------------------------


class RunManager:
    """Log followers, one thread per running container, writing through the run journal."""

    def __init__(self, app: Flask, engine: Engine, journal: RunJournal) -> None:
        self.app = app
        self.engine = engine
        self.journal = journal
        self._lock = threading.Lock()
        self._followers: dict[int, tuple[threading.Thread, Any]] = {}

    def follow(self, run_id: int, container_id: str, *, since: float | None) -> None:
        holder: dict[str, Any] = {}
        thread = threading.Thread(target=self._follow, args=(run_id, container_id, since, holder),
                                  name=f"layerdeck-run-{run_id}-logs", daemon=True)
        with self._lock:
            self._followers[run_id] = (thread, holder)
        thread.start()

    def stop_following(self, run_id: int) -> None:
        with self._lock:
            entry = self._followers.pop(run_id, None)
        if entry is not None:
            thread, holder = entry
            holder["quiet"] = True  # a restart: no end message for this stream
            stream = holder.get("stream")
            if stream is not None:
                stream.close()
            thread.join(timeout=10)

    def wait_for_follower(self, run_id: int, timeout: float = 15) -> None:
        with self._lock:
            entry = self._followers.get(run_id)
        if entry is not None:
            entry[0].join(timeout=timeout)
        self.journal.sync()

    def stop(self) -> None:
        with self._lock:
            entries = list(self._followers.values())
            self._followers.clear()
        for thread, holder in entries:
            holder["quiet"] = True
            stream = holder.get("stream")
            if stream is not None:
                stream.close()
            thread.join(timeout=5)

    def resume(self) -> None:
        """At start-up: follow the containers still running, settle the rest."""
        with self.app.app_context():
            runs = list(db.session.scalars(select(Run).where(Run.status == RunStatus.RUNNING)))
            refresh_runs(self.app, runs)
            for run in runs:
                if run.status == RunStatus.RUNNING and run.container_id:
                    last = db.session.scalar(select(func.max(RunEvent.id)).where(RunEvent.run_id == run.id))
                    since = None if last is None else _last_line_time(run.id)
                    self.follow(run.id, run.container_id, since=since)

    def _follow(self, run_id: int, container_id: str, since: float | None, holder: dict[str, Any]) -> None:
        buffers: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        try:
            stream = self.engine.container_logs(container_id, since=since, tail=None)
            holder["stream"] = stream
            for name, payload in stream:
                data = buffers[name] + payload
                *lines, buffers[name] = data.split(b"\n")
                for line in lines:
                    self._line(run_id, name, line)
        except docker.errors.NotFound:
            pass
        except Exception:  # the stream was closed, or the engine went away: settle below
            if not holder.get("quiet"):
                log.info("log stream of run %s ended", run_id, exc_info=True)
        for name, rest in buffers.items():
            if rest:
                self._line(run_id, name, rest)
        if holder.get("quiet"):
            return
        with self._lock:
            if self._followers.get(run_id, (None, None))[1] is holder:
                del self._followers[run_id]
        self._settle(run_id, container_id)

    def _line(self, run_id: int, stream: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        when, _, rest = text.partition(" ")
        if when[:4].isdigit() and "T" in when:
            self.journal.log(run_id, stream, rest, when)
        else:
            self.journal.log(run_id, stream, text, None)

    def _settle(self, run_id: int, container_id: str) -> None:
        """The container's log ended: it stopped, exited or was removed. Record how, then `end`."""
        try:
            info = self.engine.inspect_container(container_id)
        except (EngineUnavailable, EngineError):
            info = {}
        with self.app.app_context():
            run = db.session.get(Run, run_id)
            if run is None:
                return
            changes: dict[str, Any] = {}
            if info is None:  # removed: by us (the row says so), or behind our back
                if run.status != RunStatus.REMOVED:
                    changes["status"] = RunStatus.GONE
                changes["finished_at"] = run.finished_at or time.time()
            elif info:
                state = info.get("State", {})
                if state.get("Running"):
                    return  # restarted meanwhile; its new follower reports
                if run.status not in (RunStatus.STOPPED, RunStatus.REMOVED):
                    changes["status"] = RunStatus.EXITED
                changes["exit_code"] = state.get("ExitCode")
                changes["finished_at"] = _engine_time(state.get("FinishedAt")) or time.time()
            db.session.rollback()
        self.journal.finish(run_id, **changes)


def _last_line_time(run_id: int) -> float | None:
    rows = db.session.scalars(
        select(RunEvent.data).where(RunEvent.run_id == run_id, RunEvent.type == "log")
        .order_by(RunEvent.seq.desc()).limit(1)
    ).all()
    if not rows:
        return None
    when = json.loads(rows[0]).get("time")
    stamp = _engine_time(when)
    return None if stamp is None else stamp + 1e-6
