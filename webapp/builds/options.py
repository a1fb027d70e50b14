"""Validation of build options: what a user may ask of a build, refused with a sentence when wrong."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from webapp.errors import BadRequest

# The Docker reference grammar (distribution/reference), without digests: a build produces a tag.
# Patterns end in \Z, not $: $ also matches before a final newline, letting "name\n" through.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"^{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*\Z")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?\Z")
_TAG = re.compile(r"^[\w][\w.-]{0,127}\Z", re.ASCII)
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_STAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")

BUILDERS = ("buildkit", "classic")

# Build args whose names look like they hold a secret (SECURITY.md, "Builds"): their values are never shown.
_SECRET_ARG = re.compile(r"PASS|SECRET|TOKEN|KEY|CRED|AUTH", re.IGNORECASE)


def is_secret_arg(name: str) -> bool:
    """Whether a build arg's value must never be shown (its name contains PASS, SECRET, TOKEN, KEY, CRED, AUTH)."""
    return _SECRET_ARG.search(name) is not None


def validate_tag(tag: str) -> str:
    """Return the tag if it is a valid image reference, else raise BadRequest saying what is wrong."""
    def bad(why: str) -> BadRequest:
        return BadRequest(f'The tag "{tag}" is not a valid image name: {why}.', code="invalid_tag")

    if len(tag) > 255:
        raise bad("it is longer than 255 characters")
    if "@" in tag:
        raise bad("a build produces a tag, so it cannot name a digest (@sha256:...)")
    name, tag_part = tag, None
    last = tag.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag_part = tag.rsplit(":", 1)
    if tag_part is not None and not _TAG.match(tag_part):
        raise bad("the part after ':' must be 1 to 128 letters, digits, '_', '.' or '-', "
                  "not starting with '.' or '-'")
    components = name.split("/")
    first = components[0]
    if len(components) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.match(first):
            raise bad(f'"{first}" is not a valid registry host')
        components = components[1:]
    for comp in components:
        if not _PATH_COMPONENT.match(comp):
            raise bad(
                "names use lowercase letters, digits and single separators ('.', '_', '__' or '-') "
                f'between them; "{comp or "(empty)"}" does not'
            )
    return tag


def parse_build_args(text: str | None) -> dict[str, str]:
    if text is None or not text.strip():
        return {}
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            'Build args must be a JSON object such as {"VERSION": "1.2"}; '
            f"this is not valid JSON ({exc.msg}).",
            code="invalid_build_args",
        ) from None
    if not isinstance(value, dict):
        raise BadRequest(
            'Build args must be a JSON object such as {"VERSION": "1.2"}, not a list or a single value.',
            code="invalid_build_args",
        )
    out: dict[str, str] = {}
    for key, val in value.items():
        if not _ARG_NAME.match(key):
            raise BadRequest(
                f'"{key}" is not a valid build arg name: '
                "use letters, digits and _, not starting with a digit.",
                code="invalid_build_args",
            )
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            raise BadRequest(
                f'The build arg "{key}" must have a text or number value.', code="invalid_build_args"
            )
        out[key] = str(val)
    return out


def parse_bool(text: str | None, name: str) -> bool:
    if text is None or text.strip().lower() in ("", "0", "false", "no", "off"):
        return False
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    raise BadRequest(f"{name} must be true or false, not {text!r}.", code="invalid_option")


def validate_target(target: str | None) -> str | None:
    if target is None or not target.strip():
        return None
    target = target.strip()
    if not _STAGE.match(target):
        raise BadRequest(
            f'"{target}" is not a valid stage name: use letters, digits, "_", "." and "-".',
            code="invalid_target",
        )
    return target


def validate_builder(builder: str | None) -> str | None:
    """The builder asked for, or None for the server's default."""
    if builder is None or not builder.strip() or builder.strip().lower() == "auto":
        return None
    builder = builder.strip().lower()
    if builder not in BUILDERS:
        raise BadRequest(
            f'"{builder}" is not a builder Layerdeck offers; choose one of: {", ".join(BUILDERS)}.',
            code="invalid_builder",
        )
    return builder


@dataclass(frozen=True)
class BuildOptions:
    builder: str | None = None  # None: the server's default (see service.default_builder)
    tag: str | None = None
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
