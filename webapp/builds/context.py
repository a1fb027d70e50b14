"""Uploads -> a clean build-context tar, on disk, streaming.

An upload (tar, tar.gz, zip, a browser folder the page packed as a tar, or a pasted Dockerfile) is
untrusted: it is never unpacked onto the host. Its members are read one by one, checked, and copied into
a fresh GNU tar that holds only regular files and directories with safe names, trimmed by `.dockerignore`.
Sizes are counted from the bytes actually read, never from what a header claims. See SECURITY.md,
"Uploads".
"""

from __future__ import annotations

import calendar
import dataclasses
import gzip
import io
import lzma
import math
import re
import stat
import struct
import tarfile
import tempfile
import time
import typing
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from webapp.builds.dockerignore import DockerIgnore, DockerIgnoreError
from webapp.builds.manifest import HashingReader, manifest_path, write_manifest
from webapp.errors import BadRequest, LayerdeckError, TooLarge

CHUNK = 1024 * 1024
DOCKERIGNORE = ".dockerignore"

# The Dockerfile and .dockerignore are read into memory (the Dockerfile's text goes into ContextInfo).
MAX_TEXT_FILE_BYTES = 1024 * 1024
# Pax and GNU long-name records are read whole into memory; real ones hold a path or two.
MAX_TAR_HEADER_RECORD_BYTES = 1024 * 1024
# What a tar stream may hold beyond the file data, per member: headers, padding, long names.
TAR_STREAM_BYTES_PER_MEMBER = 4096

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_OCTAL = re.compile(rb"[0-7]+")
_DIRECTORY = b"5"
_FILE_TYPES = (b"0", b"\x00", b"7")  # regular, pre-POSIX regular, contiguous
_TAR_RECORDS = (b"L", b"K", b"x", b"X", b"g")  # GNU long name and link, pax (and Solaris) records
_TAR_LINKS = {b"1": "a hard link", b"2": "a symbolic link"}
_TAR_SPECIALS = {
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO (named pipe)",
    b"S": "a sparse file",
}
_LARGEST_OCTAL_MTIME = 8**11 - 1  # what an 11-digit tar field holds; later mtimes are clamped
_DRIVE_PREFIX = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 512 * 1024**2
    max_unpacked_bytes: int = 2 * 1024**3
    max_files: int = 50_000


@dataclass(frozen=True)
class ContextInfo:
    source: str  # "tar" | "tar.gz" | "zip" | "dockerfile" (a browser folder arrives as a tar)
    files: int  # regular files written to the output tar
    bytes: int  # sum of their sizes
    dockerfile: str  # normalised path of the Dockerfile inside the context
    dockerfile_text: str  # its text (decoded utf-8 with errors="replace")
    ignored: int  # members dropped by .dockerignore


def normalise_dockerfile_path(path: str | None) -> str:
    """'' or None -> 'Dockerfile'; otherwise a clean relative path that stays inside the context."""
    if not path:
        return "Dockerfile"
    normalised, problem = _normalise(path)
    if problem is not None:
        raise BadRequest(
            f"The Dockerfile path {_show(path)} must stay inside the build context, but it {problem}.",
            code="dockerfile_outside_context",
        )
    return normalised or "Dockerfile"


def pack_archive(upload: Path, out: Path, dockerfile: str, limits: Limits) -> ContextInfo:
    """Re-pack a saved tar, tar.gz or zip upload (recognised by its bytes, not its name) into `out`."""
    with _ContextWriter(out, dockerfile, limits) as writer:
        source = _detect_format(upload)
        if source == "zip":
            _read_zip(upload, writer, limits)
        else:
            _read_tar(upload, source, writer, limits)
        return writer.finish(source)


def pack_dockerfile_text(text: str, out: Path, dockerfile: str = "Dockerfile") -> ContextInfo:
    """A pasted Dockerfile: a context holding only that file."""
    with _ContextWriter(out, dockerfile, Limits()) as writer:
        if not text.strip():
            raise BadRequest("The pasted Dockerfile is empty.", code="no_dockerfile")
        data = text.encode("utf-8", "replace")
        writer.add_file(writer.dockerfile, io.BytesIO(data), 0o644, None)
        return writer.finish("dockerfile")


# --- The one writer every source goes through ---------------------------------------------------------


class _Readable(typing.Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class _Entry:
    is_dir: bool
    mode: int
    mtime: int
    offset: int = 0  # where a file's data starts in the spool
    size: int = 0  # bytes actually read
    implicit: bool = False  # a parent directory the upload did not list


class _ContextWriter:
    """Collects checked members, then writes them sorted into a GNU tar.

    File data goes to an anonymous spool file first: the output must be sorted by path (so the same files
    give the same bytes whatever the upload format) and `.dockerignore` may come last in the upload, while
    the input can only be read once, in its own order.
    """

    def __init__(self, out: Path, dockerfile: str | None, limits: Limits) -> None:
        self._out = out
        self._dockerfile_option = dockerfile
        self.dockerfile = "Dockerfile"
        self._limits = limits
        self._entries: dict[str, _Entry] = {}
        self._parents: set[str] = set()  # every directory implied by an entry's path
        self._members = 0
        self._bytes_read = 0
        self._now = int(time.time())
        self._spool: typing.BinaryIO | None = None

    def __enter__(self) -> _ContextWriter:
        try:
            self.dockerfile = normalise_dockerfile_path(self._dockerfile_option)
            # Unlinked at once on Linux: nothing is left behind even if the process dies.
            self._spool = typing.cast(typing.BinaryIO, tempfile.TemporaryFile(dir=self._out.parent))
        except BaseException:
            self._out.unlink(missing_ok=True)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._spool is not None:
            self._spool.close()
        if error is not None:
            self._out.unlink(missing_ok=True)
            manifest_path(self._out).unlink(missing_ok=True)

    def add_directory(self, raw_name: str, mode: int, mtime: float | None) -> None:
        name = _member_name(raw_name, allow_root=True)
        self._count_member()  # even "./": a million of them must not come free
        if not name:
            return  # "./", the context root itself
        self._check_no_file_above(name)
        existing = self._entries.get(name)
        if existing is not None and not existing.is_dir:
            raise _file_and_directory(name)
        # A repeated directory entry is harmless; the last one wins, as when tar extracts.
        self._entries[name] = _Entry(is_dir=True, mode=mode & 0o777, mtime=self._mtime(mtime))
        self._note_parents(name)

    def add_file(self, raw_name: str, data: _Readable, mode: int, mtime: float | None) -> None:
        name = _member_name(raw_name)
        self._count_member()
        self._check_no_file_above(name)
        existing = self._entries.get(name)
        if existing is not None:
            if existing.is_dir:
                raise _file_and_directory(name)
            raise BadRequest(f"The upload contains {_show(name)} more than once.", code="duplicate_member")
        if name in self._parents:
            raise _file_and_directory(name)
        assert self._spool is not None
        offset = self._spool.tell()
        size = 0
        while chunk := data.read(CHUNK):
            size += len(chunk)
            self._bytes_read += len(chunk)
            if self._bytes_read > self._limits.max_unpacked_bytes:
                raise _context_too_large(self._limits)
            self._spool.write(chunk)
        self._entries[name] = _Entry(
            is_dir=False, mode=mode & 0o777, mtime=self._mtime(mtime), offset=offset, size=size
        )
        self._note_parents(name)

    def finish(self, source: str) -> ContextInfo:
        """Apply .dockerignore, check the Dockerfile and write the output tar."""
        dockerfile = self._entries.get(self.dockerfile)
        if dockerfile is None or dockerfile.is_dir:
            raise BadRequest(
                f"There is no Dockerfile at {_show(self.dockerfile)} in the uploaded context.",
                code="no_dockerfile",
            )
        kept, ignored = self._apply_dockerignore()
        text = self._read_text(dockerfile, "Dockerfile").decode("utf-8", errors="replace")
        self._write(kept)
        files = [entry for entry in kept.values() if not entry.is_dir]
        return ContextInfo(
            source=source,
            files=len(files),
            bytes=sum(entry.size for entry in files),
            dockerfile=self.dockerfile,
            dockerfile_text=text,
            ignored=ignored,
        )

    def _apply_dockerignore(self) -> tuple[dict[str, _Entry], int]:
        ignore_file = self._entries.get(DOCKERIGNORE)
        if ignore_file is None or ignore_file.is_dir:
            rules = DockerIgnore([])
        else:
            text = self._read_text(ignore_file, DOCKERIGNORE).decode("utf-8", errors="replace")
            try:
                rules = DockerIgnore.parse(text)
            except DockerIgnoreError as error:
                raise BadRequest(
                    f"Line {error.line_number} of .dockerignore, {_show(error.line.strip())}, "
                    f"is not a valid pattern: {error.reason}.",
                    code="invalid_dockerignore",
                ) from None
        # Like the docker CLI, never drop the Dockerfile or the .dockerignore itself.
        always = {self.dockerfile, DOCKERIGNORE}
        kept = {
            name: entry for name, entry in self._entries.items() if name in always or not rules.ignores(name)
        }
        # Every parent of a kept entry is written explicitly, even inside an ignored directory.
        for name in list(kept):
            for parent in _parents_of(name):
                if parent not in kept:
                    kept[parent] = self._entries.get(parent) or _Entry(
                        is_dir=True, mode=0o755, mtime=0, implicit=True
                    )
        # A directory the upload did not list takes the newest mtime below it: deterministic, and not 1970.
        for name, entry in list(kept.items()):
            if entry.implicit:
                continue
            for parent in _parents_of(name):
                implied = kept[parent]
                if implied.implicit and entry.mtime > implied.mtime:
                    kept[parent] = dataclasses.replace(implied, mtime=entry.mtime)
        return kept, len(self._entries) - sum(1 for name in kept if name in self._entries)

    def _write(self, kept: dict[str, _Entry]) -> None:
        """Write the tar, and next to it the manifest of every file's digest (hashed as it is copied)."""
        assert self._spool is not None
        digests: dict[str, tuple[str, int]] = {}
        # GNU format: BuildKit misreads pax tars. Sorting by the encoded name puts parents first.
        with (
            open(self._out, "wb") as file,
            tarfile.open(
                fileobj=file, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
            ) as tar,
        ):
            for name in sorted(kept, key=lambda name: name.encode("utf-8", "surrogateescape")):
                entry = kept[name]
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE if entry.is_dir else tarfile.REGTYPE
                info.mode = entry.mode
                info.mtime = entry.mtime
                info.size = entry.size
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if entry.is_dir:
                    tar.addfile(info)
                else:
                    self._spool.seek(entry.offset)
                    reader = HashingReader(self._spool)
                    tar.addfile(info, reader)  # type: ignore[arg-type]
                    digests[name] = (reader.hexdigest(), entry.mode)
        write_manifest(manifest_path(self._out), digests)

    def _read_text(self, entry: _Entry, label: str) -> bytes:
        if entry.size > MAX_TEXT_FILE_BYTES:
            raise TooLarge(
                f"The {label} is {_human(entry.size)}; Layerdeck reads a {label} of at most "
                f"{_human(MAX_TEXT_FILE_BYTES)}.",
                code="build_file_too_large",
            )
        assert self._spool is not None
        self._spool.seek(entry.offset)
        data = self._spool.read(entry.size)
        self._spool.seek(0, 2)  # later files are appended
        return data

    def _count_member(self) -> None:
        self._members += 1
        if self._members > self._limits.max_files:
            raise _too_many_files(self._limits)

    def _check_no_file_above(self, name: str) -> None:
        for parent in _parents_of(name):
            entry = self._entries.get(parent)
            if entry is not None and not entry.is_dir:
                raise _file_and_directory(parent)

    def _note_parents(self, name: str) -> None:
        self._parents.update(_parents_of(name))

    def _mtime(self, mtime: float | None) -> int:
        if mtime is None or not math.isfinite(mtime):
            return self._now
        return min(max(int(mtime), 0), _LARGEST_OCTAL_MTIME)


# --- Recognising and reading the upload formats --------------------------------------------------------


def _detect_format(upload: Path) -> str:
    """'tar', 'tar.gz' or 'zip', from the first bytes; the client's file name and Content-Type are ignored."""
    with open(upload, "rb") as file:
        head = file.read(2 * BLOCK)
    if not head:
        raise BadRequest("The upload is empty.", code="empty_upload")
    if head.startswith(b"\x1f\x8b"):
        with _reading("tar.gz"), gzip.open(upload, "rb") as inner:
            if not _looks_like_tar(inner.read(2 * BLOCK)):
                raise BadRequest(
                    "The upload is gzip-compressed, but what it holds is not a tar archive.",
                    code="not_an_archive",
                )
        return "tar.gz"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if _looks_like_tar(head):
        return "tar"
    raise BadRequest("The upload is not a tar, tar.gz or zip archive.", code="not_an_archive")


def _looks_like_tar(head: bytes) -> bool:
    """A first header whose checksum is right (ustar, GNU and v7 all carry one), or an empty archive."""
    if len(head) < BLOCK:
        return False
    if head[:BLOCK] == _ZERO_BLOCK:
        # An empty tar is just its two zero end-of-archive blocks.
        return head == _ZERO_BLOCK * 2
    return _checksum_ok(head[:BLOCK])


def _checksum_ok(header: bytes) -> bool:
    # The checksum is the sum of the header's bytes with its own field counted as spaces; some old tars
    # summed them as signed bytes.
    field = header[148:156].replace(b"\x00", b" ").strip()
    if not _OCTAL.fullmatch(field):
        return False
    summed = header[:148] + b" " * 8 + header[156:]
    return int(field, 8) in (sum(summed), sum(struct.unpack(f"{BLOCK}b", summed)))


def _read_tar(upload: Path, source: str, writer: _ContextWriter, limits: Limits) -> None:
    # The decompressed stream may exceed the file data by headers and padding; past this it is a bomb made
    # of header records, which hold no file data for add_file to count.
    stream_cap = limits.max_unpacked_bytes + (limits.max_files + 1) * TAR_STREAM_BYTES_PER_MEMBER
    with open(upload, "rb") as raw, _reading(source):
        stream: _Readable = raw
        if source == "tar.gz":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        reader = _TarReader(_CappedReader(stream, stream_cap, limits), source)
        for member in reader.members():
            if member.type == _DIRECTORY:
                writer.add_directory(member.name, member.mode, member.mtime)
            elif member.type in _FILE_TYPES:
                data = _MemberReader(reader, source, member.name)
                writer.add_file(member.name, data, member.mode, member.mtime)
            elif member.type in _TAR_LINKS:
                raise _link(member.name, _TAR_LINKS[member.type])
            else:
                unknown = f"an entry of unknown tar type {member.type.decode('latin-1')!r}"
                raise _special(member.name, _TAR_SPECIALS.get(member.type, unknown))


@dataclass(frozen=True)
class _TarMember:
    name: str
    type: bytes
    mode: int
    mtime: float


class _TarReader:
    """A forward-only tar reader (v7, ustar, GNU long names, pax) for the few fields a context needs.

    Not tarfile: Python 3.11.7's tarfile parses pax records with regexps that take quadratic time on
    crafted input (CVE-2024-6232: 64 KiB of digits costs 11 s), reads long-name and pax records whole
    whatever their size, and keeps every member it has seen in memory. This reader is linear, holds one
    header record at a time, and reads a member's data only through read().
    """

    def __init__(self, stream: _Readable, source: str) -> None:
        self._stream = stream
        self._source = source
        self._name = ""
        self._remaining = 0  # data bytes of the current member not read yet
        self._padding = 0  # zero bytes that round the current member's data up to a block

    def members(self) -> Iterator[_TarMember]:
        long_name: bytes | None = None
        pax: dict[bytes, bytes] = {}
        while True:
            self._skip(self._remaining + self._padding)
            self._remaining = self._padding = 0
            header = self._read(BLOCK, end_allowed=True)
            if not header or header == _ZERO_BLOCK:
                return  # the end-of-archive block, or the file ends between members (tar accepts that too)
            if not _checksum_ok(header):
                raise _damaged(self._source)
            kind = header[156:157]
            size = self._number(header[124:136])
            if size < 0:
                raise _damaged(self._source)
            if kind in _TAR_RECORDS:
                if size > MAX_TAR_HEADER_RECORD_BYTES:
                    raise BadRequest(
                        f"The tar archive has a {_human(size)} header record; Layerdeck reads header "
                        f"records of at most {_human(MAX_TAR_HEADER_RECORD_BYTES)}.",
                        code="corrupt_archive",
                    )
                record = self._read(size)
                self._padding = -size % BLOCK
                if kind == b"L":
                    long_name = record.split(b"\x00", 1)[0]
                elif kind in (b"x", b"X"):
                    pax = self._pax_records(record)
                elif kind == b"g":
                    self._pax_records(record)  # checked, not used: git archive puts its commit id here
                # A "K" record (a long link target) is skipped: links are refused anyway.
                continue
            raw_name = pax.get(b"path") or long_name or _ustar_name(header)
            self._name = raw_name.decode("utf-8", "surrogateescape")
            if kind == b"\x00" and self._name.endswith("/"):
                kind = _DIRECTORY  # how pre-POSIX tars mark a directory
            if any(key.startswith(b"GNU.sparse.") for key in pax):
                kind = b"S"
            mtime: float = self._number(header[136:148])
            if b"size" in pax:
                size = self._pax_size(pax[b"size"])
            if b"mtime" in pax:
                mtime = self._pax_mtime(pax[b"mtime"])
            if kind in _FILE_TYPES:
                self._remaining, self._padding = size, -size % BLOCK
            yield _TarMember(self._name, kind, self._number(header[100:108]), mtime)
            long_name, pax = None, {}

    def read(self, size: int = -1, /) -> bytes:
        """The current member's data; short reads, b"" at its end."""
        if self._remaining == 0:
            return b""
        wanted = self._remaining if size < 0 else min(size, self._remaining)
        chunk = self._stream.read(min(wanted, CHUNK))
        if not chunk:
            raise _damaged(self._source, self._name)
        self._remaining -= len(chunk)
        return chunk

    def _read(self, size: int, *, end_allowed: bool = False) -> bytes:
        parts: list[bytes] = []
        missing = size
        while missing:
            chunk = self._stream.read(min(missing, CHUNK))
            if not chunk:
                if end_allowed and missing == size:
                    return b""
                raise _damaged(self._source)
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def _skip(self, size: int) -> None:
        while size:
            chunk = self._stream.read(min(size, CHUNK))
            if not chunk:
                raise _damaged(self._source, self._name)
            size -= len(chunk)

    def _number(self, field: bytes) -> int:
        """A numeric header field: octal text, or GNU's base-256 for values that do not fit."""
        if field[:1] in (b"\x80", b"\xff"):
            value = int.from_bytes(field[1:], "big")
            if field[:1] == b"\xff":
                value -= 256 ** (len(field) - 1)
        else:
            text = field.split(b"\x00", 1)[0].strip()
            if text and not _OCTAL.fullmatch(text):
                raise _damaged(self._source)
            value = int(text or b"0", 8)
        return value

    def _pax_records(self, record: bytes) -> dict[bytes, bytes]:
        """Pax records, "<length> <keyword>=<value>\\n" each, parsed by their lengths in one pass."""
        values: dict[bytes, bytes] = {}
        position = 0
        while position < len(record) and record[position] != 0:
            space = record.find(b" ", position, position + 21)
            length = record[position:space]
            if space < 0 or not length.isdigit():
                raise _damaged(self._source)
            end = position + int(length)
            keyword, equals, value = record[space + 1 : end - 1].partition(b"=")
            framed = space + 1 < end <= len(record) and record[end - 1 : end] == b"\n"
            if not framed or not keyword or not equals:
                raise _damaged(self._source)
            values[keyword] = value
            position = end
        return values

    def _pax_size(self, value: bytes) -> int:
        if not value.isdigit():
            raise _damaged(self._source)
        return int(value)

    def _pax_mtime(self, value: bytes) -> float:
        try:
            return float(value)  # may carry a fraction; the writer clamps what a tar header cannot hold
        except ValueError:
            raise _damaged(self._source) from None


def _ustar_name(header: bytes) -> bytes:
    name = header[:100].split(b"\x00", 1)[0]
    if header[257:263] == b"ustar\x00":
        # POSIX ustar keeps leading directories of a long name in a prefix field; GNU tars use those bytes
        # for other things and say so with a different magic ("ustar  ").
        prefix = header[345:500].split(b"\x00", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name


def _read_zip(upload: Path, writer: _ContextWriter, limits: Limits) -> None:
    with open(upload, "rb") as file, _reading("zip"):
        _check_zip_entry_count(file, limits)
        with zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
            _check_zip_entries_do_not_overlap(file, archive, infos)
            for info in infos:
                _copy_zip_member(archive, info, writer)


def _copy_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, writer: _ContextWriter) -> None:
    # ZipInfo.filename is cut at the first NUL; check the name as the archive really spells it.
    name = info.orig_filename
    unix_mode = info.external_attr >> 16
    kind = stat.S_IFMT(unix_mode)
    if kind == stat.S_IFLNK:
        raise _link(name, "a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _special(name, _ZIP_SPECIAL_KINDS.get(kind, "a special file"))
    is_dir = name.endswith("/") or kind == stat.S_IFDIR
    # Zips made on Windows carry no unix mode; give them the usual defaults.
    mode = unix_mode & 0o777 or (0o755 if is_dir else 0o644)
    mtime = _zip_mtime(info.date_time)
    if is_dir:
        writer.add_directory(name, mode, mtime)
        return
    if info.flag_bits & 0x1:
        raise BadRequest(
            f"The zip entry {_show(name)} is encrypted; encrypted zip files are not supported.",
            code="corrupt_archive",
        )
    with _reading("zip", name), archive.open(info) as data:
        # ZipFile.open reads no more than the declared size and checks the CRC at the end; the count that
        # matters is still the one add_file makes of the bytes that really come out.
        writer.add_file(name, _MemberReader(data, "zip", name), mode, mtime)


_ZIP_SPECIAL_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def _zip_mtime(date_time: tuple[int, int, int, int, int, int]) -> int:
    """A zip's date_time has no time zone; read it as UTC so the same zip always gives the same tar."""
    try:
        return calendar.timegm((*date_time, 0, 0, 0))
    except ValueError:
        return calendar.timegm((1980, 1, 1, 0, 0, 0, 0, 0, 0))  # an impossible date: the zip epoch


def _check_zip_entry_count(file: typing.BinaryIO, limits: Limits) -> None:
    """Count the central directory's records before ZipFile builds an object for each one of them.

    A 512 MiB zip of empty records would otherwise cost gigabytes of memory before any cap applied.
    zipfile's end-record reader is private but handles zip64 and comments, so it is reused.
    """
    try:
        end = zipfile._EndRecData(file)  # type: ignore[attr-defined]
    except OSError:  # shorter than an end record: it cannot seek back far enough
        end = None
    if not end:
        raise _damaged("zip")
    size, location = end[zipfile._ECD_SIZE], end[zipfile._ECD_LOCATION]  # type: ignore[attr-defined]
    start = location - size
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    if start < 0:
        raise _damaged("zip")
    position, records = start, 0
    while position < start + size:
        file.seek(position)
        record = file.read(46)
        if len(record) < 46 or not record.startswith(b"PK\x01\x02"):
            return  # malformed: ZipFile reports it
        records += 1
        if records > limits.max_files:
            raise _too_many_files(limits)
        name_length, extra_length, comment_length = struct.unpack("<3H", record[28:34])
        position += 46 + name_length + extra_length + comment_length


def _check_zip_entries_do_not_overlap(
    file: typing.BinaryIO, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]
) -> None:
    """Refuse entries that share or overlap their data (a small zip read as many big files).

    Python 3.11.7's zipfile does not check this. Each entry's data must end before the next local
    header begins, and the last before the central directory.
    """
    previous_end = 0
    for info in sorted(infos, key=lambda info: info.header_offset):
        if info.header_offset < 0:
            raise _damaged("zip", info.orig_filename)
        if info.header_offset < previous_end:
            raise BadRequest(
                "The zip file has entries whose data overlap, which Layerdeck does not accept "
                f"(at {_show(info.orig_filename)}).",
                code="corrupt_archive",
            )
        file.seek(info.header_offset)
        header = file.read(30)
        if len(header) < 30 or not header.startswith(b"PK\x03\x04"):
            raise _damaged("zip", info.orig_filename)
        name_length, extra_length = struct.unpack("<2H", header[26:30])
        previous_end = info.header_offset + 30 + name_length + extra_length + info.compress_size
    if previous_end > archive.start_dir:
        raise BadRequest(
            "The zip file has an entry whose data runs into its table of contents.", code="corrupt_archive"
        )


class _CappedReader:
    """A read()-only view of a stream that stops after `cap` bytes, whatever the stream holds."""

    def __init__(self, stream: _Readable, cap: int, limits: Limits) -> None:
        self._stream = stream
        self._cap = cap
        self._limits = limits
        self._total = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > CHUNK:
            size = CHUNK  # callers loop on short reads; never hand out an unbounded one
        data = self._stream.read(size)
        self._total += len(data)
        if self._total > self._cap:
            raise _context_too_large(self._limits)
        return data


class _MemberReader:
    """A member's data as it is decoded; a decoding failure becomes corrupt_archive naming the member.

    Decompressors report bad data as OSError (bz2) among others. Catching OSError only here, around the
    archive's reads, keeps a real I/O error on our side (a full disk) from passing for a damaged upload.
    """

    def __init__(self, stream: _Readable, source: str, name: str) -> None:
        self._stream = stream
        self._source = source
        self._name = name

    def read(self, size: int = -1, /) -> bytes:
        with _reading(self._source, self._name, decoding=True):
            return self._stream.read(size)


_DAMAGED = (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError)


@contextmanager
def _reading(source: str, member: str | None = None, *, decoding: bool = False) -> Iterator[None]:
    """Turn the many ways a damaged archive fails into one corrupt_archive error."""
    try:
        yield
    except LayerdeckError:
        raise
    except _DAMAGED:
        raise _damaged(source, member) from None
    except OSError:
        if not decoding:
            raise
        raise _damaged(source, member) from None
    except NotImplementedError:
        # zipfile: a compression method it does not know (e.g. Deflate64).
        where = f"the zip entry {_show(member)}" if member else "the zip file"
        raise BadRequest(
            f"Layerdeck cannot read {where}: it uses an unsupported compression method.",
            code="corrupt_archive",
        ) from None
    except UnicodeDecodeError:
        raise BadRequest(
            f"The {source} archive has a file name that is marked UTF-8 but is not.", code="corrupt_archive"
        ) from None


# --- Names ---------------------------------------------------------------------------------------------


def _normalise(path: str) -> tuple[str, str | None]:
    """(clean relative path, None), or ('', what is wrong with it). Leading "./", "." and "//" are dropped."""
    if "\x00" in path:
        return "", "contains a NUL byte"
    if "\\" in path:
        return "", "contains a backslash"
    if path.startswith("/"):
        return "", "is an absolute path"
    if _DRIVE_PREFIX.match(path):
        return "", "starts with a drive letter"
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        return "", 'contains a ".." component'
    return "/".join(parts), None


def _member_name(raw: str, *, allow_root: bool = False) -> str:
    name, problem = _normalise(raw)
    if problem is None and not name and not allow_root:
        problem = "is empty"
    if problem is not None:
        raise BadRequest(
            f"The path {_show(raw)} in the upload is not allowed: it {problem}.", code="unsafe_member"
        )
    return name


def _parents_of(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# --- Messages ------------------------------------------------------------------------------------------


def _show(name: str | None, limit: int = 200) -> str:
    """A name quoted for a message, with control characters and undecodable bytes made visible."""
    text = (name or "").encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return f'"{text}"'


def _human(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"


def _damaged(source: str, member: str | None = None) -> BadRequest:
    if member:
        message = (
            f"The uploaded {source} archive is damaged or cut short: {_show(member)} cannot be read in full."
        )
    else:
        message = f"The uploaded {source} archive is damaged or cut short and cannot be read."
    return BadRequest(message, code="corrupt_archive")


def _link(name: str, kind: str) -> BadRequest:
    return BadRequest(
        f"{_show(name)} in the upload is {kind}; {_ONLY_FILES_AND_DIRECTORIES}", code="link_member"
    )


def _special(name: str, kind: str) -> BadRequest:
    return BadRequest(
        f"{_show(name)} in the upload is {kind}; {_ONLY_FILES_AND_DIRECTORIES}", code="special_member"
    )


_ONLY_FILES_AND_DIRECTORIES = "only regular files and directories are accepted."


def _file_and_directory(name: str) -> BadRequest:
    return BadRequest(
        f"The upload contains {_show(name)} both as a file and as a directory.", code="duplicate_member"
    )


def _too_many_files(limits: Limits) -> TooLarge:
    return TooLarge(
        f"The upload has more than {limits.max_files:,} files and directories, the limit for a "
        "build context.",
        code="too_many_files",
    )


def _context_too_large(limits: Limits) -> TooLarge:
    return TooLarge(
        f"The upload unpacks to more than {_human(limits.max_unpacked_bytes)}, the limit for a "
        "build context.",
        code="context_too_large",
    )
