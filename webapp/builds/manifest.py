"""Per-context file manifests: the content digest and mode of every file a build context holds.

Cache insight needs to say which files a COPY or ADD saw change between two builds. Each stored context
`contexts/<id>.tar` gets a manifest next to it, `contexts/<id>.files.json.gz`: one gzip-compressed JSON
object `{"version": 1, "files": [[path, sha256 hex, mode], ...]}` sorted by path. It is written while the
context is packed (the bytes are hashed as they go into the tar), so it costs no second read; a context
stored before manifests existed gets one the first time it is needed, read from its tar. At the 50,000-file
cap that is about 2 MB compressed; contexts are never changed once stored, and neither is their manifest.

Pure apart from reading and writing those two files. Paths are the context's own ('/'-separated, no
leading './'), after .dockerignore: exactly what the engine saw.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import gzip
import hashlib
import json
import os
import posixpath
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

VERSION = 1
SUFFIX = ".files.json.gz"
#: Files listed per kind of change in a reason or a comparison; the counts are always exact.
LIST_LIMIT = 50

#: path -> (sha256 hex, mode)
Manifest = dict[str, tuple[str, int]]


def manifest_path(context: Path) -> Path:
    """`contexts/7.tar` -> `contexts/7.files.json.gz`."""
    name = context.name.removesuffix(".tar")
    return context.with_name(name + SUFFIX)


def write_manifest(path: Path, files: Mapping[str, tuple[str, int]]) -> None:
    rows = [[name, digest, mode] for name, (digest, mode) in sorted(files.items())]
    tmp = path.with_name(path.name + ".part")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as out:
        json.dump({"version": VERSION, "files": rows}, out, separators=(",", ":"))
    os.replace(tmp, path)


def read_manifest(path: Path) -> Manifest:
    with gzip.open(path, "rt", encoding="utf-8") as file:
        data = json.load(file)
    return {row[0]: (row[1], int(row[2])) for row in data["files"]}


def manifest_from_tar(context: Path) -> Manifest:
    """Hash every regular file of a context tar Layerdeck packed itself (never an upload: see context.py)."""
    files: Manifest = {}
    with tarfile.open(context, "r:") as tar:
        for member in tar:
            if not member.isreg():
                continue
            digest = hashlib.sha256()
            stream = tar.extractfile(member)
            assert stream is not None
            while chunk := stream.read(1024**2):
                digest.update(chunk)
            files[member.name] = (digest.hexdigest(), member.mode & 0o777)
    return files


def load_manifest(context: Path) -> Manifest | None:
    """The manifest of a stored context: read, or made from the tar once and kept; None if both are gone."""
    path = manifest_path(context)
    if path.is_file():
        try:
            return read_manifest(path)
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            pass  # damaged: make it again from the tar
    if not context.is_file():
        return None
    files = manifest_from_tar(context)
    with contextlib.suppress(OSError):  # a read-only data dir still answers, just more slowly next time
        write_manifest(path, files)
    return files


class HashingReader:
    """A read()-only view of a file that hashes what passes through (tarfile.addfile reads the data once)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._digest.update(data)
        return data

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


# --- Which files a COPY or ADD source names ----------------------------------------------------------


def source_pattern(source: str) -> str | None:
    """A COPY/ADD source as a context path ("" for the whole context); None where it names no context file
    (a URL, a git address, a heredoc) or cannot be known (a variable)."""
    if source.startswith("<<") or "://" in source or source.startswith("git@") or "$" in source:
        return None
    path = posixpath.normpath("/" + source.replace("\\", "/")).lstrip("/")
    return "" if path in (".", "") else path


def _has_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def selects(pattern: str, path: str) -> bool:
    """Whether a file at `path` is copied by a source `pattern`: the file itself, anything below a directory,
    or (with wildcards, matched per path component as Go's filepath.Match does) anything a match holds."""
    if pattern == "":
        return True
    if not _has_glob(pattern):
        return path == pattern or path.startswith(pattern + "/")
    wanted = pattern.split("/")
    parts = path.split("/")
    if len(parts) < len(wanted):
        return False
    return all(fnmatch.fnmatchcase(part, want) for part, want in zip(parts, wanted, strict=False))


@dataclass
class FileChanges:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    @property
    def count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.modified)

    def to_dict(self, limit: int = LIST_LIMIT) -> dict[str, object]:
        return {
            "added": self.added[:limit], "removed": self.removed[:limit], "modified": self.modified[:limit],
            "counts": {"added": len(self.added), "removed": len(self.removed), "modified": len(self.modified)},
        }


def diff(old: Manifest, new: Manifest, patterns: Iterable[str] | None = None) -> FileChanges:
    """Files added, removed or modified (content or mode) from `old` to `new`, limited to what `patterns`
    select (None: the whole context). Each list is sorted."""
    chosen = None if patterns is None else list(patterns)

    def wanted(path: str) -> bool:
        return chosen is None or any(selects(p, path) for p in chosen)

    changes = FileChanges()
    for path in sorted(set(old) | set(new)):
        if not wanted(path):
            continue
        before, after = old.get(path), new.get(path)
        if before is None:
            changes.added.append(path)
        elif after is None:
            changes.removed.append(path)
        elif before != after:
            changes.modified.append(path)
    return changes


@functools.lru_cache(maxsize=16)
def context_paths(context: str) -> frozenset[str] | None:
    """The file paths of a stored context (contexts never change once stored, so this is kept in memory
    for the most recently asked): what Dockerfile advice needs to know of it."""
    files = load_manifest(Path(context))
    return frozenset(files) if files is not None else None
