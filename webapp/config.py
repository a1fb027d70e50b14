"""Every setting once: its name, default and meaning, read from LAYERDECK_* environment variables.

docs/CONFIGURATION.md is generated from SETTINGS (`layerdeck settings --markdown`), and a test fails
when the two disagree, so a setting cannot be added without being documented.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingError(ValueError):
    """A setting has a value Layerdeck cannot use; the message names the variable."""


_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """'512M', '2G', '16MiB' or a plain number of bytes -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError("expected a size such as 512M, 2G or a number of bytes")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_positive_int(text: str) -> int:
    value = int(text.strip())
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def parse_port(text: str) -> int:
    value = int(text.strip())
    if not 1 <= value <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return value


def parse_builder(text: str) -> str:
    value = text.strip().lower()
    if value not in ("auto", "buildkit", "classic"):
        raise ValueError("expected auto, buildkit or classic")
    return value


def parse_port_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.strip().split("-"))
    except ValueError:
        raise ValueError("expected a range such as 20000-20999") from None
    if not 1024 <= low <= high <= 65535:
        raise ValueError("expected a range within 1024-65535, low to high")
    return low, high


def parse_tag_policy(text: str) -> str:
    value = text.strip().lower()
    if value not in ("protect-foreign", "protect-others", "open"):
        raise ValueError("expected protect-foreign, protect-others or open")
    return value


def parse_count(text: str) -> int:
    value = int(text.strip())
    if value < 0:
        raise ValueError("expected a whole number of 0 or more")
    return value


def parse_public_url(text: str) -> str:
    value = text.strip().rstrip("/")
    if value and not re.match(r"^https?://[^/\s]+\Z", value):
        raise ValueError("expected the address people open, such as https://layerdeck.example.com")
    return value


def parse_cpus(text: str) -> float:
    value = float(text.strip())
    if not 0 < value <= 1024:
        raise ValueError("expected a number of CPUs above 0, such as 0.5 or 2")
    return value


def parse_seconds(text: str) -> float:
    value = float(text.strip())
    if value <= 0:
        raise ValueError("expected a number of seconds above 0")
    return value


@dataclass(frozen=True)
class Setting:
    name: str  # the key in app.config; the environment variable is LAYERDECK_<name>
    default: str  # as it would be written in the environment
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        return f"LAYERDECK_{self.name}"


SETTINGS: tuple[Setting, ...] = (
    Setting("HOST", "127.0.0.1", str.strip, "Address `layerdeck serve` listens on."),
    Setting("PORT", "8000", parse_port, "Port `layerdeck serve` listens on."),
    Setting("THREADS", "128", parse_positive_int,
            "Request threads of `layerdeck serve`; every open build page holds one for its websocket."),
    Setting("DATA_DIR", "instance", str.strip,
            "Folder for the SQLite database, stored build contexts and uploads in progress."),
    Setting("DATABASE_URL", "", str.strip,
            "SQLAlchemy database URL; empty means SQLite at `<DATA_DIR>/layerdeck.db`."),
    Setting("MAX_UPLOAD_SIZE", "512M", parse_size,
            "Largest upload accepted (compressed size as sent); larger ones get 413."),
    Setting("MAX_CONTEXT_SIZE", "2G", parse_size,
            "Largest build context once unpacked, counted while reading; larger ones get 413."),
    Setting("MAX_CONTEXT_FILES", "50000", parse_positive_int, "Most files a build context may hold."),
    Setting("CONCURRENT_BUILDS", "2", parse_positive_int,
            "Builds that run at once; more wait as `queued`."),
    Setting("BUILD_TIMEOUT", "3600", parse_seconds,
            "Wall-clock seconds a build may run before it is stopped."),
    Setting("LOG_CAP", "16M", parse_size,
            "Stored log bytes per build; past it a truncation line is stored and the build goes on."),
    Setting("DEFAULT_BUILDER", "auto", parse_builder,
            "Builder used when a request names none: `auto` (BuildKit where the engine has it, else "
            "classic), `buildkit` or `classic`."),
    Setting("RUN_PORTS", "20000-20999", parse_port_range,
            "Host ports containers may publish on; ports left to Layerdeck are chosen from this range."),
    Setting("RUN_ADDRESS", "127.0.0.1", str.strip,
            "Host address containers' ports are published on; `0.0.0.0` exposes them to the network."),
    Setting("RUN_MEMORY", "512M", parse_size, "Memory limit of every container Layerdeck runs."),
    Setting("RUN_CPUS", "1", parse_cpus, "CPU limit of every container Layerdeck runs."),
    Setting("RUN_PIDS", "256", parse_positive_int, "Most processes a container Layerdeck runs may have."),
    Setting("SESSION_HOURS", "12", parse_seconds,
            "Hours a sign-in lasts; then the browser is asked to sign in again."),
    Setting("PUBLIC_URL", "", parse_public_url,
            "The address people open Layerdeck at (e.g. `https://layerdeck.example.com`). When set, Layerdeck "
            "answers only to that host name (and loopback) and takes pages of that origin as its own. Unset, "
            "it answers to any name when it listens on a network address, and only to loopback names when "
            "it listens on loopback (against DNS rebinding)."),
    Setting("PROXIES", "0", parse_count,
            "Reverse proxies in front of Layerdeck whose X-Forwarded-For/-Proto/-Host are trusted (0: none). "
            "Set it to 1 behind one proxy, so addresses in the audit log and Secure cookies are right."),
    Setting("TAG_POLICY", "protect-foreign", parse_tag_policy,
            "Which tags a build may write: `protect-foreign` refuses a tag held by an image Layerdeck did not "
            "build; `protect-others` also refuses one last built by another person (admins excepted); "
            "`open` allows any."),
    Setting("WS_PING_INTERVAL", "20", parse_seconds,
            "Seconds between keep-alive pings on idle websockets, so proxies keep them open."),
)


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from the environment, refusing bad values with a message naming the variable."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env, setting.default)
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise SettingError(f"{setting.env}={raw!r} is not valid: {exc}.") from None
    return values


def database_url(settings: Mapping[str, Any]) -> str:
    if settings["DATABASE_URL"]:
        return str(settings["DATABASE_URL"])
    path = Path(settings["DATA_DIR"]).resolve() / "layerdeck.db"
    return f"sqlite:///{path}"


def settings_markdown() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        lines.append(f"| `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines) + "\n"
