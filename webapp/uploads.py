"""Uploads as they arrive: hashed on the way, to a temporary file (or, for a small raw body, held in memory)."""

from __future__ import annotations

import hashlib
import queue
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol


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


# A raw upload this small stays in memory until Layerdeck knows it needs the file: an identical re-upload,
# the everyday case, then never touches the disk. Past it the upload goes to a temporary file as it arrives.
SPOOL_BYTES = 16 * 1024**2
# What all uploads in progress may hold in memory together; past it, new blocks go to disk at once.
SPOOL_BUDGET = 48 * 1024**2
# Blocks received but not yet hashed; the receiving thread waits when the hasher is this far behind.
PENDING_BLOCKS = 4

# A raw body is received in blocks this large, each into a buffer of its own that the spool then keeps.
BLOCK_BYTES = 1024**2
# Blocks an upload is done with are kept for the next one, up to this many: a fresh megabyte costs the
# kernel 256 page faults and zeroing, about 5 ms of CPU for an 8 MB upload, while the engine builds.
POOL_BLOCKS = 16

_spooled_lock = threading.Lock()
_spooled_total = 0  # bytes held in memory by all SpooledUploads
_pool: list[bytearray] = []  # free blocks of BLOCK_BYTES, under _spooled_lock


def take_block() -> bytearray:
    """A BLOCK_BYTES buffer to receive into: one a finished upload gave back, or a new one. Its old bytes
    are overwritten before anything reads them (receive() hands on only what it filled)."""
    with _spooled_lock:
        if _pool:
            return _pool.pop()
    return bytearray(BLOCK_BYTES)


def give_block(block: bytes | bytearray) -> None:
    """A block nothing refers to any more (the caller's word), for take_block() to hand out again."""
    if isinstance(block, bytearray) and len(block) == BLOCK_BYTES:
        with _spooled_lock:
            if len(_pool) < POOL_BLOCKS:
                _pool.append(block)


def _hold(size: int) -> bool:
    """Take `size` bytes of the memory budget, if it has them."""
    global _spooled_total
    with _spooled_lock:
        if _spooled_total + size > SPOOL_BUDGET:
            return False
        _spooled_total += size
        return True


def _give_back(size: int) -> None:
    global _spooled_total
    with _spooled_lock:
        _spooled_total -= size


class ReadsInto(Protocol):
    def readinto(self, buffer: bytearray | memoryview, /) -> int | None: ...


def receive(stream: ReadsInto, spool: SpooledUpload, length: int | None) -> None:
    """Read a request body of `length` bytes (None: until the end) into `spool`. Each whole block is
    received in place into a buffer (from the pool) that the spool then keeps: no byte is copied after the
    socket's own copy, which for a megabytes-large archive is what a cached rebuild's request mostly cost."""
    remaining = length
    while remaining is None or remaining > 0:
        size = BLOCK_BYTES if remaining is None else min(BLOCK_BYTES, remaining)
        block = take_block() if size == BLOCK_BYTES else bytearray(size)
        view = memoryview(block)
        got = 0
        try:
            while got < size and (n := stream.readinto(view[got:])):
                got += n
        finally:
            view.release()
        if got == size:
            spool.write(block)
        else:  # the end of a body of unknown length, or a client that stopped short: hand on a copy
            if got:
                spool.write(block[:got])
            give_block(block)
            return
        if remaining is not None:
            remaining -= got


class SpooledUpload:
    """A request body as it arrives: hashed (and, past SPOOL_BYTES or the shared SPOOL_BUDGET, written to a
    temporary file) on a helper thread while the next block is received, so receiving and hashing overlap
    on two cores (hashlib lets go of the GIL for large blocks). write() what arrives, finish() when it is
    all there."""

    def __init__(self, folder: Path, spool_bytes: int = SPOOL_BYTES) -> None:
        self._folder = folder
        self._spool_bytes = spool_bytes
        self._blocks: queue.Queue[bytes | bytearray | None] = queue.Queue(maxsize=PENDING_BLOCKS)
        self._hash = hashlib.sha256()
        self._memory: list[bytes | bytearray] = []
        self._file: IO[bytes] | None = None
        self._error: BaseException | None = None
        self.size = 0
        self._helper: threading.Thread | None = threading.Thread(target=self._consume, name="layerdeck-upload",
                                                                 daemon=True)
        self._helper.start()

    def _consume(self) -> None:
        while (block := self._blocks.get()) is not None:
            if self._error is not None:
                continue  # keep taking blocks so the receiver never waits on a dead helper
            try:
                self._hash.update(block)
                if self._file is None and (self.size + len(block) > self._spool_bytes or not _hold(len(block))):
                    self._file = self._spill()
                if self._file is not None:
                    self._file.write(block)
                    give_block(block)
                else:
                    self._memory.append(block)
                self.size += len(block)
            except BaseException as exc:  # raised again in the receiving thread
                self._error = exc

    def _spill(self) -> IO[bytes]:
        file = tempfile.NamedTemporaryFile(dir=self._folder, prefix="upload-", suffix=".part")  # noqa: SIM115
        for block in self._memory:
            file.write(block)
        self._release()
        return file

    def _release(self) -> None:
        _give_back(sum(len(b) for b in self._memory))
        for block in self._memory:
            give_block(block)
        self._memory.clear()

    def write(self, data: bytes | bytearray) -> None:
        """Take a block (kept as it is: the caller must not change it afterwards; a bytearray of BLOCK_BYTES
        goes back to the pool once it is written out or the upload is closed)."""
        if self._error is not None:
            raise self._error
        self._blocks.put(data)

    def finish(self) -> None:
        """Wait until everything written is hashed (and stored)."""
        if self._helper is not None:
            self._blocks.put(None)
            self._helper.join()
            self._helper = None
        if self._error is not None:
            raise self._error

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def path(self) -> Path:
        """The upload as a file (written out now if it was only held in memory); removed by close()."""
        if self._file is None:
            self._file = self._spill()
        self._file.flush()
        return Path(self._file.name)

    def close(self) -> None:
        if self._helper is not None:  # an upload abandoned half-way: let the helper end
            self._error = self._error or RuntimeError("upload abandoned")
            self._blocks.put(None)
            self._helper.join()
            self._helper = None
        self._release()
        if self._file is not None:
            self._file.close()  # a NamedTemporaryFile: closing removes it

    def __enter__(self) -> SpooledUpload:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
