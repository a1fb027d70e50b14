"""What each builder can and cannot do here, said before a build starts rather than after it fails."""

from __future__ import annotations

import re

from webapp.builds.buildkit import parse_dockerfile
from webapp.errors import BadRequest

_MOUNT = re.compile(r"--mount(?:=|\s+)(\S+)")
_MOUNT_TYPE = re.compile(r"(?:^|,)type=(\w+)")
_HEREDOC = re.compile(r"(?<!<)<<-?\s*[\"']?[A-Za-z_]")
_BUILDKIT_FLAGS = ("--chmod", "--link", "--parents", "--exclude", "--network", "--security")
_REGISTRY_TROUBLE = ("failed to do request", "failed to resolve source metadata", "pull access denied",
                     "no such host", "i/o timeout", "connection refused")


def _refuse(message: str) -> BadRequest:
    return BadRequest(message, code="builder_unsupported")


def check_dockerfile(text: str, builder: str) -> None:
    """Refuse, with what to do instead, a Dockerfile the chosen builder cannot build over the Engine API."""
    for instruction in parse_dockerfile(text):
        words = instruction.text.split()[1:]
        flags = []  # the instruction's own options come first: RUN --mount=... cmd --not-an-option
        for word in words:
            if not word.startswith("--"):
                break
            flags.append(word)
        where = f"step {instruction.index} ({_short(instruction.text)})"
        if builder == "classic":
            if instruction.keyword == "RUN" and any(f.startswith("--mount") for f in flags):
                raise _refuse(f"The classic builder cannot run RUN --mount, used at {where}. "
                              "Choose BuildKit for this Dockerfile.")
            if instruction.keyword in ("RUN", "COPY", "ADD") and _HEREDOC.search(instruction.text):
                raise _refuse(f"The classic builder does not understand heredocs (<<EOF), used at {where}. "
                              "Choose BuildKit for this Dockerfile.")
            bad = [f for f in flags if f.split("=")[0] in _BUILDKIT_FLAGS]
            if bad:
                raise _refuse(f"The classic builder does not know {bad[0].split('=')[0]}, used at {where}. "
                              "Choose BuildKit for this Dockerfile.")
        elif instruction.keyword == "RUN":
            for mount in _MOUNT.findall(instruction.text):
                kind = _MOUNT_TYPE.search(mount)
                if kind and kind.group(1) in ("secret", "ssh"):
                    raise _refuse(
                        f"RUN --mount=type={kind.group(1)} at {where} needs a client session (docker build "
                        f"--{kind.group(1)}), which a build started through the Engine API cannot have. "
                        "Pass what the step needs as a build arg or a file in the context instead."
                    )


def explain_engine_error(message: str, *, pull: bool) -> str:
    """The engine's error, with a sentence of what to do when the cause is a registry it cannot reach."""
    lowered = message.lower()
    if not any(marker in lowered for marker in _REGISTRY_TROUBLE):
        return message
    hints = []
    if "docker/dockerfile" in lowered or "gateway.v0" in lowered:
        hints.append("a '# syntax=' line asks for a Dockerfile frontend image from a registry: remove it "
                     "to use the engine's built-in frontend")
    if pull:
        hints.append("'Always pull' makes the engine ask a registry for every base image: turn it off to use "
                     "the images the engine already has")
    if not hints:
        hints.append("a base image is not on the engine, so it asked a registry: build or load that image "
                     "on the engine first")
    return f"{message}\nThe engine could not reach a registry. " + "; ".join(hints) + "."


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
