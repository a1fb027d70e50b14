"""Uploads as they arrive: straight to a temporary file, hashed on the way."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any


class HashingFile:
    """A temporary file that hashes what is written to it: the upload's digest comes for free."""

    def __init__(self, folder: Path) -> None:
        self._file = tempfile.NamedTemporaryFile(dir=folder, prefix="upload-", suffix=".part")  # noqa: SIM115
        self._hash = hashlib.sha256()
        self.name = self._file.name

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self._file.write(data)

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def __getattr__(self, name: str) -> Any:  # read, seek, tell, close, flush, ...
        return getattr(self._file, name)

    def __enter__(self) -> HashingFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._file.close()  # a NamedTemporaryFile: closing removes it
