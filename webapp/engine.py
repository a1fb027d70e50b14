"""The only module that talks to the Docker engine.

Builds go through the low-level API client's raw `POST /build`, not `APIClient.build()`: that way the
body is our own re-packed tar streamed from disk, the response comes back as raw byte chunks for our
own parser (which survives chunks split anywhere), the caller can close the stream to stop a build, and
no registry credentials are attached (`build()` sends the server user's whole credential file).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import docker
import requests
from docker.transport import UnixHTTPAdapter
from docker.utils import parse_repository_tag

from webapp.errors import EngineUnavailable, LayerdeckError

# Requests to the engine that should answer at once (ping, inspect) give up after this long.
QUICK_TIMEOUT = 10
VERSION_TTL = 60.0
# A build submitted this soon after the engine answered does not ask again: a busy form or a script
# submitting builds back to back saves a round trip each, and an engine that died in between is
# reported by the build itself.
PING_TTL = 1.0


class EngineError(LayerdeckError):
    """The engine answered, but refused what we asked."""

    status = 502
    code = "engine_error"


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    builder: str = "classic"
    tag: str | None = None
    dockerfile: str = "Dockerfile"
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    build_id: str | None = None  # BuildKit: lets /build/cancel find the build


class BuildStream:
    """The engine's response to one build: iterate for raw byte chunks; close() from any thread stops it."""

    def __init__(self, response: Any, chunks: Iterator[bytes],
                 connection: http.client.HTTPConnection | None = None) -> None:
        self._response = response
        self._chunks = chunks
        self._connection = connection  # our own, when the stream came over one (closed with the stream)
        self._socket = connection.sock if connection is not None else _response_socket(response)

    @classmethod
    def of_plain(cls, connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> BuildStream:
        def chunks() -> Iterator[bytes]:
            while data := response.read1(65536):
                yield data

        return cls(response, chunks(), connection)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        # Closing the response alone does not wake a thread blocked reading it (a RUN step that prints
        # nothing for a minute); shutting the socket down does, and the engine sees the client go away,
        # which is how either builder is cancelled.
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._response.close()
        if self._connection is not None:
            self._connection.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _plain_connection(client: docker.APIClient) -> http.client.HTTPConnection | None:
    """A connection of our own to the engine the client talks to, when that is a unix socket or plain TCP
    (TLS, ssh and named pipes stay with the client's own transport)."""
    adapter = client.get_adapter(client.base_url)
    path = getattr(adapter, "socket_path", None)
    if isinstance(adapter, UnixHTTPAdapter) and isinstance(path, str):
        return _UnixConnection(path)
    url = urlsplit(client.base_url)
    if url.scheme == "http" and url.hostname:
        return http.client.HTTPConnection(url.hostname, url.port or 80)
    return None


def _response_socket(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed response (unix socket or TCP), if it can be found."""
    try:
        raw = response.raw._fp.fp.raw  # type: ignore[union-attr]
    except AttributeError:
        return None
    sock = getattr(raw, "_sock", raw)
    return sock if isinstance(sock, socket.socket) else None


class Engine:
    """A small facade over docker.APIClient; the client is made lazily so start-up never needs the engine."""

    def __init__(self, base_url: str | None = None) -> None:
        self._base_url = base_url
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()
        self._buildkit: tuple[float, bool] | None = None
        self._answered = float("-inf")  # when the engine last answered a ping

    def client(self) -> docker.APIClient:
        with self._lock:
            if self._client is None:
                try:
                    kwargs = docker.utils.kwargs_from_env()
                    if self._base_url:
                        kwargs["base_url"] = self._base_url
                    self._client = docker.APIClient(version="auto", timeout=QUICK_TIMEOUT, **kwargs)
                except docker.errors.DockerException as exc:
                    raise EngineUnavailable(describe_unreachable(exc)) from exc
            return self._client

    def version(self) -> dict[str, Any]:
        """The engine's version; raises EngineUnavailable when it does not answer."""
        try:
            info: dict[str, Any] = self.client().version()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            self._forget()
            raise EngineUnavailable(describe_unreachable(exc)) from exc
        return info

    def ping(self) -> None:
        """Raise EngineUnavailable unless the engine answers (any answer, to a ping or not, is trusted for
        PING_TTL)."""
        if time.monotonic() - self._answered < PING_TTL:
            return
        try:
            self.client().ping()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            self._forget()
            raise EngineUnavailable(describe_unreachable(exc)) from exc
        self._answered = time.monotonic()

    def _forget(self) -> None:
        # A client made while the engine was down (or before it restarted) may hold a stale API version.
        with self._lock:
            self._client = None
            self._answered = float("-inf")
            self._buildkit = None

    def start_build(self, req: BuildRequest) -> BuildStream:
        """Send the context and return the streaming response. The engine reports build errors inside the
        stream; an HTTP error here means it refused the request itself (e.g. a Dockerfile parse error)."""
        params: dict[str, Any] = {
            "dockerfile": req.dockerfile,
            "rm": "1",
            "forcerm": "1",
            "nocache": "1" if req.no_cache else "0",
            "pull": "1" if req.pull else "0",
            "buildargs": json.dumps(dict(req.build_args)),
            "labels": json.dumps(dict(req.labels)),
        }
        if req.tag:
            params["t"] = req.tag
        if req.target:
            params["target"] = req.target
        if req.builder == "buildkit":
            # BuildKit without a client session: the context is our uploaded tar (GNU format: BuildKit
            # misreads pax tars), progress comes back as protobuf trace messages.
            params["version"] = "2"
            if req.build_id:
                params["buildid"] = req.build_id
        client = self.client()
        connection = _plain_connection(client)
        if connection is not None:
            return self._send_build(connection, f"/v{client.api_version}/build?{urlencode(params)}", req.context)
        try:
            with req.context.open("rb") as body:
                response = client._post(
                    client._url("/build"),
                    params=params,
                    data=body,
                    headers={"Content-Type": "application/x-tar"},
                    stream=True,
                    timeout=None,  # a RUN step may print nothing for a long time
                )
        except requests.RequestException as exc:
            self._forget()
            raise EngineUnavailable(describe_unreachable(exc)) from exc
        self._answered = time.monotonic()
        if response.status_code >= 400:
            message = _error_message(response)
            response.close()
            raise EngineError(message)
        return BuildStream(response, client._stream_helper(response, decode=False))

    def _send_build(self, connection: http.client.HTTPConnection, path: str, context: Path) -> BuildStream:
        """POST /build over a plain connection, the context handed to the kernel with sendfile(): no Python
        loop over 8 KiB blocks competing with the server's other threads while the engine reads it."""
        try:
            with context.open("rb") as body:
                connection.putrequest("POST", path, skip_accept_encoding=True)
                connection.putheader("Content-Type", "application/x-tar")
                connection.putheader("Content-Length", str(os.fstat(body.fileno()).st_size))
                connection.endheaders()
                assert connection.sock is not None
                connection.sock.sendfile(body)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            self._forget()
            raise EngineUnavailable(describe_unreachable(exc)) from exc
        self._answered = time.monotonic()
        if response.status >= 400:
            body_text = response.read().decode("utf-8", "replace")
            connection.close()
            raise EngineError(_message_of(body_text, response.status))
        return BuildStream.of_plain(connection, response)

    def cancel_build(self, build_id: str) -> None:
        """Ask BuildKit to stop a build started with `buildid`; closing its stream stops it too."""
        client = self.client()
        # On failure: the caller closes the stream as well, which cancels the build on its own.
        with contextlib.suppress(requests.RequestException):
            client._post(client._url("/build/cancel"), params={"id": build_id}, timeout=QUICK_TIMEOUT).close()

    def tag_image(self, image: str, tag: str) -> None:
        """Give an image a name (`repository[:tag]`, `latest` when none is given), as `docker tag` does."""
        repository, version = parse_repository_tag(tag)
        query = urlencode({"repo": repository, "tag": version or "latest"})
        answer = self._plain("POST", f"/images/{quote(image, safe=':')}/tag?{query}")
        if answer is None:
            try:
                self._call(self.client().tag, image, repository, version or "latest")
            except docker.errors.NotFound as exc:
                raise EngineError(f"The engine has no image {image}.") from exc
            return
        status, text = answer
        if status >= 400:
            raise EngineError(_message_of(text, status))

    def _plain(self, method: str, path: str) -> tuple[int, str] | None:
        """A small request on a connection of our own (None when the engine is reached over TLS or ssh):
        what a build asks on its way costs a millisecond rather than the several the client's requests
        stack takes on a busy machine, time the engine itself would have had."""
        client = self.client()
        connection = _plain_connection(client)
        if connection is None:
            return None
        try:
            connection.request(method, f"/v{client.api_version}{path}")
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            self._forget()
            raise EngineUnavailable(describe_unreachable(exc)) from exc
        finally:
            connection.close()
        self._answered = time.monotonic()
        return response.status, text

    def supports_buildkit(self) -> bool:
        """BuildKit answers `POST /build?version=2` on Linux engines from API 1.39 (Docker 18.09) on."""
        # Asked on every submit: an engine does not change version under us often, so keep the answer
        # for a while rather than add a round trip to each build.
        cached = self._buildkit
        if cached is not None and time.monotonic() - cached[0] < VERSION_TTL:
            return cached[1]
        info = self.version()
        major, minor = (int(x) for x in str(info.get("ApiVersion", "0.0")).split(".")[:2])
        supported = (major, minor) >= (1, 39) and str(info.get("Os", "linux")).lower() == "linux"
        self._buildkit = (time.monotonic(), supported)
        return supported

    # --- containers ------------------------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """An engine call; NotFound passes through, a dead engine becomes EngineUnavailable, any other
        refusal EngineError with the engine's own explanation."""
        try:
            result = fn(*args, **kwargs)
        except docker.errors.NotFound:
            self._answered = time.monotonic()
            raise
        except docker.errors.APIError as exc:
            raise EngineError(str(exc.explanation or exc)) from exc
        except (docker.errors.DockerException, requests.RequestException) as exc:
            self._forget()
            raise EngineUnavailable(describe_unreachable(exc)) from exc
        self._answered = time.monotonic()
        return result

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        answer = self._plain("GET", f"/images/{quote(ref, safe=':@/')}/json")
        if answer is None:
            try:
                info: dict[str, Any] = self._call(self.client().inspect_image, ref)
            except docker.errors.NotFound:
                return None
            return info
        status, text = answer
        if status == 404:
            return None
        if status >= 400:
            raise EngineError(_message_of(text, status))
        found: dict[str, Any] = json.loads(text)
        return found

    def run_container(self, spec: ContainerSpec) -> str:
        """Create and start a container from settings the server chose; a container that cannot start is
        removed before the error is raised, so none is ever left behind."""
        api = self.client()
        host_config = api.create_host_config(
            port_bindings={f"{p.container_port}/{p.protocol}": (spec.address, p.host_port) for p in spec.ports},
            privileged=False,
            cap_add=None,
            security_opt=["no-new-privileges"],
            network_mode="bridge",
            mem_limit=spec.memory,
            nano_cpus=int(spec.cpus * 1e9),
            pids_limit=spec.pids,
            log_config=docker.types.LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
        )
        created = self._call(
            api.create_container, spec.image, command=spec.command, environment=dict(spec.env), name=spec.name,
            labels=dict(spec.labels), ports=[(p.container_port, p.protocol) for p in spec.ports],
            host_config=host_config, detach=True, tty=False, stdin_open=False,
        )
        container_id = str(created["Id"])
        try:
            self._call(api.start, container_id)
        except BaseException:
            with contextlib.suppress(Exception):
                api.remove_container(container_id, force=True)
            raise
        return container_id

    def inspect_container(self, container_id: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self._call(self.client().inspect_container, container_id)
        except docker.errors.NotFound:
            return None
        return info

    def containers(self, label: str) -> list[dict[str, Any]]:
        """Every container, running or not, carrying `label` (key=value)."""
        found: list[dict[str, Any]] = self._call(self.client().containers, all=True, filters={"label": label})
        return found

    def published_ports(self) -> set[int]:
        """Host ports any container on the engine publishes (ours or not)."""
        taken: set[int] = set()
        for container in self._call(self.client().containers):
            for port in container.get("Ports") or []:
                if port.get("PublicPort"):
                    taken.add(int(port["PublicPort"]))
        return taken

    def stop_container(self, container_id: str, timeout: int = 10) -> None:
        self._call(self.client().stop, container_id, timeout=timeout)

    def restart_container(self, container_id: str, timeout: int = 10) -> None:
        self._call(self.client().restart, container_id, timeout=timeout)

    def remove_container(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._call(self.client().remove_container, container_id, force=True)

    def container_logs(self, container_id: str, *, since: float | None, tail: int | None) -> LogStream:
        """Follow a container's log: (stream, engine timestamp, raw bytes) frames until it stops."""
        api = self.client()
        params: dict[str, Any] = {"follow": 1, "stdout": 1, "stderr": 1, "timestamps": 1}
        if since is not None:
            params["since"] = f"{since:.9f}"
        if tail is not None:
            params["tail"] = str(tail)
        response = self._call(api._get, api._url("/containers/{0}/logs", container_id), params=params,
                              stream=True, timeout=None)
        if response.status_code == 404:
            response.close()
            raise docker.errors.NotFound(f"no container {container_id}")
        if response.status_code >= 400:
            message = _error_message(response)
            response.close()
            raise EngineError(message)
        return LogStream(response)


@dataclass(frozen=True)
class PortSpec:
    container_port: int
    protocol: str
    host_port: int


@dataclass(frozen=True)
class ContainerSpec:
    """All a container gets. Nothing here comes from the user but the image, name, command, environment
    and ports; the rest is the server's policy (docs/API.md, SECURITY)."""

    image: str
    name: str | None
    command: list[str] | None
    env: Mapping[str, str]
    ports: tuple[PortSpec, ...]
    address: str
    labels: Mapping[str, str]
    memory: int
    cpus: float
    pids: int


class LogStream:
    """A container's multiplexed log stream: iterate for (stream name, payload bytes); close() to stop."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self._socket = _response_socket(response)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        raw = self._response.raw
        while True:
            header = raw.read(8)
            if len(header) < 8:
                return
            size = int.from_bytes(header[4:8], "big")
            payload = raw.read(size)
            yield ("stderr" if header[0] == 2 else "stdout"), payload

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._response.close()


def _error_message(response: requests.Response) -> str:
    return _message_of(response.text, response.status_code)


def _message_of(text: str, status: int) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip() or f"The Docker engine answered {status}."
    return str(body.get("message") or body) if isinstance(body, dict) else str(body)


def describe_unreachable(exc: BaseException) -> str:
    return (
        "The Docker engine does not answer, so nothing can be built right now. "
        "Start it (on Debian: `dockerd`, or run scripts/dev.sh) or point DOCKER_HOST at it. "
        f"({type(exc).__name__}: {str(exc)[:200]})"
    )
