"""SpooledUpload: a raw request body hashed on a helper thread, held in memory while small, on disk past that."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from webapp import uploads
from webapp.uploads import SpooledUpload


def blocks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_a_small_upload_is_hashed_and_never_written_unless_asked(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    with SpooledUpload(tmp_path, spool_bytes=1_000_000) as upload:
        for block in blocks(data, 65536):
            upload.write(block)
        upload.finish()
        assert upload.sha256() == hashlib.sha256(data).hexdigest()
        assert upload.size == len(data)
        assert list(tmp_path.iterdir()) == []  # known by its digest alone: nothing on disk
        path = upload.path()  # needed after all (a new context to unpack): written out now
        assert path.read_bytes() == data and path.parent == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_a_large_upload_goes_to_disk_as_it_arrives(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    with SpooledUpload(tmp_path, spool_bytes=1_000_000) as upload:
        for block in blocks(data, 1024**2):
            upload.write(block)
        upload.finish()
        assert len(list(tmp_path.iterdir())) == 1  # spilled past the spool size, before anyone asked
        assert upload.sha256() == hashlib.sha256(data).hexdigest()
        assert upload.path().read_bytes() == data
    assert list(tmp_path.iterdir()) == []


def test_an_upload_abandoned_half_way_leaves_no_file_and_no_thread(tmp_path: Path) -> None:
    before = threading.active_count()
    with SpooledUpload(tmp_path, spool_bytes=10) as upload:
        upload.write(b"x" * 1000)
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == before


def test_a_failure_on_the_helper_thread_reaches_the_receiver(tmp_path: Path) -> None:
    missing = tmp_path / "gone"  # the spill file cannot be made here
    with SpooledUpload(missing, spool_bytes=10) as upload:
        upload.write(b"x" * 1000)
        with pytest.raises(FileNotFoundError):
            upload.finish()


def test_uploads_in_progress_share_one_memory_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "SPOOL_BUDGET", 100_000)
    first, second = SpooledUpload(tmp_path, spool_bytes=80_000), SpooledUpload(tmp_path, spool_bytes=80_000)
    with first, second:
        first.write(b"a" * 60_000)
        first.finish()
        second.write(b"b" * 60_000)  # would fit its own spool, not what is left of the budget
        second.finish()
        assert len(list(tmp_path.iterdir())) == 1
        assert second.path().read_bytes() == b"b" * 60_000
    assert uploads._spooled_total == 0  # all given back


def received(tmp_path: Path, data: bytes, spool_bytes: int = uploads.SPOOL_BYTES) -> tuple[bytes, str]:
    with SpooledUpload(tmp_path, spool_bytes=spool_bytes) as upload:
        uploads.receive(io.BytesIO(data), upload, len(data))
        upload.finish()
        return upload.path().read_bytes(), upload.sha256()


def test_received_blocks_go_back_to_the_pool_and_a_reused_block_never_shows_old_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uploads, "_pool", [])
    first = os.urandom(3 * uploads.BLOCK_BYTES)
    assert received(tmp_path, first) == (first, hashlib.sha256(first).hexdigest())
    pooled = list(uploads._pool)
    assert len(pooled) == 3  # held in memory, given back when the upload closed
    # A shorter upload into the same buffers: its last, partial block is a copy, never a stale tail.
    second = os.urandom(uploads.BLOCK_BYTES + 1000)
    assert received(tmp_path, second) == (second, hashlib.sha256(second).hexdigest())
    assert {id(b) for b in uploads._pool} == {id(b) for b in pooled}  # the same buffers, none lost or new
    # Spilled to disk as it arrives: each block goes back once written.
    third = os.urandom(3 * uploads.BLOCK_BYTES)
    assert received(tmp_path, third, spool_bytes=uploads.BLOCK_BYTES) == (third, hashlib.sha256(third).hexdigest())
    assert len(uploads._pool) == 3 and list(tmp_path.iterdir()) == []


def test_the_pool_keeps_no_more_than_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "_pool", [])
    monkeypatch.setattr(uploads, "POOL_BLOCKS", 2)
    data = os.urandom(5 * uploads.BLOCK_BYTES)
    assert received(tmp_path, data)[0] == data
    assert len(uploads._pool) == 2
    uploads.give_block(bytearray(10))  # not a whole block: never pooled
    assert all(len(b) == uploads.BLOCK_BYTES for b in uploads._pool)
