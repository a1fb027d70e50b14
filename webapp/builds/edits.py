"""A stored context's text files: listing them, reading one, and writing a copy with some of them changed.

Stored contexts are Layerdeck's own GNU tars (context.py wrote them: regular files and directories only,
sorted, safe names), so Python's tarfile reads them. An edited copy keeps every untouched member
byte-for-byte (its header blocks and data are copied raw, mode and mtime included) so the layer cache
still hits for it; a changed member keeps its mode and gets a new mtime.
"""

from __future__ import annotations

import codecs
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from webapp.builds.context import BLOCK, DOCKERIGNORE, Limits, _human, _normalise, _show
from webapp.errors import BadRequest, NotFound, TooLarge

# A file larger than this is listed but not offered for editing, and an edit may not make one larger.
MAX_EDIT_BYTES = 256 * 1024
# The listing stops after this many files (a context may hold 50,000); `truncated` says it did.
MAX_LISTED_FILES = 2000
# Whether a file is text is judged from its first bytes when listing, from all of it when it is read.
SNIFF_BYTES = 8192
# How many files one edit may change.
MAX_EDITED_FILES = 50
_RECORD = 20 * BLOCK  # tarfile pads an archive to whole records of this size; so do we


@dataclass(frozen=True)
class ContextFile:
    path: str
    size: int
    mode: int
    text: bool  # no NUL byte, valid UTF-8

    @property
    def editable(self) -> bool:
        return self.text and self.size <= MAX_EDIT_BYTES and self.path != DOCKERIGNORE

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "text": self.text, "editable": self.editable}


@dataclass(frozen=True)
class EditedContext:
    files: int
    bytes: int
    dockerfile_text: str
    changed: list[str]  # the paths whose content really changed, sorted


def is_text(data: bytes, *, complete: bool = True) -> bool:
    """UTF-8 without NUL bytes. A prefix (complete=False) may end in the middle of a character."""
    if b"\x00" in data:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def clean_path(raw: str) -> str:
    """A path as the API names a file in the context: relative, inside it, or a 400 saying why not."""
    path, problem = _normalise(raw)
    if problem is None and not path:
        problem = "is empty"
    if problem is not None:
        raise BadRequest(f"The path {_show(raw)} is not a file of the build context: it {problem}.",
                         code="unsafe_path")
    return path


def _open(context: Path) -> tarfile.TarFile:
    return tarfile.open(context, "r:", encoding="utf-8", errors="surrogateescape")


def _has_clean_name(member: tarfile.TarInfo) -> bool:
    try:
        member.name.encode("utf-8")
    except UnicodeEncodeError:
        return False  # not UTF-8 in the upload: no URL or JSON can name it exactly
    return True


def list_files(context: Path, limit: int = MAX_LISTED_FILES) -> tuple[list[ContextFile], bool]:
    """The context's regular files in tar order (sorted by path), and whether the list was cut at `limit`."""
    found: list[ContextFile] = []
    with _open(context) as tar:
        for member in tar:
            if not member.isfile() or not _has_clean_name(member):
                continue
            if len(found) == limit:
                return found, True
            reader = tar.extractfile(member)
            assert reader is not None
            head = reader.read(SNIFF_BYTES)
            text = is_text(head, complete=len(head) == member.size)
            found.append(ContextFile(member.name, member.size, member.mode, text))
    return found, False


def read_text(context: Path, raw_path: str) -> tuple[ContextFile, str]:
    """One text file of the context: 404 if there is none, 400 if it is binary, 413 if it is too big."""
    path = clean_path(raw_path)
    with _open(context) as tar:
        member = _find(tar, path)
        if member is None or not member.isfile():
            raise NotFound(f"The build context has no file {_show(path)}.", code="no_such_file")
        if member.size > MAX_EDIT_BYTES:
            raise TooLarge(f"{_show(path)} is {_human(member.size)}; Layerdeck shows and edits files of at most "
                           f"{_human(MAX_EDIT_BYTES)}.", code="file_too_large")
        reader = tar.extractfile(member)
        assert reader is not None
        data = reader.read()
    if not is_text(data):
        raise BadRequest(f"{_show(path)} is not a text file (it is not UTF-8, or holds NUL bytes), so it "
                         "cannot be shown or edited here.", code="not_text")
    return ContextFile(path, member.size, member.mode, True), data.decode("utf-8")


def _find(tar: tarfile.TarFile, path: str) -> tarfile.TarInfo | None:
    for member in tar:
        if member.name == path:
            return member
    return None


def check_edits(raw: object) -> dict[str, bytes]:
    """{"path": "new text"} from a request body -> {clean path: UTF-8 bytes}, or a 400/413 saying why not."""
    if not isinstance(raw, dict) or not raw:
        raise BadRequest('Send the changed files as {"files": {"path/in/context": "new text", ...}}.',
                         code="invalid_edit")
    if len(raw) > MAX_EDITED_FILES:
        raise BadRequest(f"One edit changes at most {MAX_EDITED_FILES} files.", code="invalid_edit")
    edits: dict[str, bytes] = {}
    for raw_path, text in raw.items():
        path = clean_path(str(raw_path))
        if not isinstance(text, str):
            raise BadRequest(f"The new content of {_show(path)} must be text.", code="invalid_edit")
        if path == DOCKERIGNORE:
            raise BadRequest(".dockerignore was applied when the context was uploaded, so editing it here "
                             "would change nothing; upload the context again instead.", code="not_editable")
        if path in edits:
            raise BadRequest(f"{_show(path)} is named twice.", code="invalid_edit")
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > MAX_EDIT_BYTES:
            raise TooLarge(f"The new {_show(path)} is {_human(len(data))}; an edited file may be at most "
                           f"{_human(MAX_EDIT_BYTES)}.", code="file_too_large")
        if not is_text(data):
            raise BadRequest(f"The new content of {_show(path)} holds a NUL byte or a lone surrogate: "
                             "only text can be written.", code="not_text")
        edits[path] = data
    return edits


def write_edited(context: Path, out: Path, edits: dict[str, bytes], *, dockerfile: str, dockerfile_text: str,
                 limits: Limits, mtime: int) -> EditedContext:
    """Copy `context` to `out` with the files in `edits` replaced. Every path must be an editable text file
    already in the context. Nothing is written (and `out` is removed) if any of that fails."""
    try:
        return _write_edited(context, out, edits, dockerfile, dockerfile_text, limits, mtime)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _write_edited(context: Path, out: Path, edits: dict[str, bytes], dockerfile: str, dockerfile_text: str,
                  limits: Limits, mtime: int) -> EditedContext:
    pending = dict(edits)
    changed: list[str] = []
    files = total = 0
    with _open(context) as tar, context.open("rb") as raw, out.open("wb") as sink:
        for member in tar:
            end = member.offset_data + member.size + (-member.size % BLOCK) if member.isfile() else member.offset_data
            new = pending.pop(member.name, None) if member.isfile() else None
            if member.isfile():
                files += 1
            if new is not None:
                old = _read_member(tar, member)
                if member.size > MAX_EDIT_BYTES or not is_text(old):
                    raise BadRequest(f"{_show(member.name)} is not a text file Layerdeck can edit (binary, or "
                                     f"over {_human(MAX_EDIT_BYTES)}).", code="not_text")
                if new != old:
                    changed.append(member.name)
                    total += len(new)
                    _write_member(sink, member, new, mtime)
                    continue
            if member.isfile():
                total += member.size
            _copy(raw, sink, member.offset, end)
        if pending:
            names = ", ".join(_show(p) for p in sorted(pending))
            raise BadRequest(f"The build context has no file {names}: only files already in it can be edited.",
                             code="no_such_file")
        if total > limits.max_unpacked_bytes:
            raise TooLarge(f"With these edits the context would be over {_human(limits.max_unpacked_bytes)}, "
                           "the limit for a build context.", code="context_too_large")
        written = sink.tell() + 2 * BLOCK
        sink.write(bytes(2 * BLOCK + (-written % _RECORD)))
    if dockerfile in edits and dockerfile in changed:
        dockerfile_text = edits[dockerfile].decode("utf-8")
    return EditedContext(files=files, bytes=total, dockerfile_text=dockerfile_text, changed=sorted(changed))


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    reader = tar.extractfile(member)
    assert reader is not None
    return reader.read(MAX_EDIT_BYTES + 1)


def _write_member(sink: BinaryIO, member: tarfile.TarInfo, data: bytes, mtime: int) -> None:
    """A changed file, with the header context.py would write for it: same name and mode, a new mtime."""
    info = tarfile.TarInfo(member.name)
    info.type = tarfile.REGTYPE
    info.mode = member.mode
    info.mtime = mtime
    info.size = len(data)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    sink.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    sink.write(data)
    sink.write(bytes(-len(data) % BLOCK))


def _copy(raw: BinaryIO, sink: BinaryIO, start: int, end: int) -> None:
    raw.seek(start)
    left = end - start
    while left:
        chunk = raw.read(min(left, 1024**2))
        if not chunk:
            raise OSError("the stored context ended early")
        sink.write(chunk)
        left -= len(chunk)
