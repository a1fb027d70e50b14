"""A stored context's files: listing, reading one, and an edited copy that keeps every other file as it was."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.helpers import MTIME, tar_bytes
from webapp.builds import context, edits
from webapp.errors import BadRequest, NotFound, TooLarge

FILES: dict[str, bytes | str] = {
    "Dockerfile": "FROM scratch\nCOPY requirements.txt .\nCOPY app ./app\n",
    "requirements.txt": "flask==3.0\n",
    "app/main.py": "print('héllo')\n",
    "app/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "app/" + "deep/" * 30 + "long-name.txt": "a GNU long name\n",
    "big.txt": "x" * (edits.MAX_EDIT_BYTES + 1),
}


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """A context as Layerdeck stores it: an upload cleaned by context.pack_archive."""
    upload = tmp_path / "upload.tar"
    upload.write_bytes(tar_bytes(FILES, mode=0o640))
    out = tmp_path / "stored.tar"
    context.pack_archive(upload, out, "Dockerfile", context.Limits())
    return out


def raw_members(path: Path) -> dict[str, bytes]:
    """Each member's bytes as they sit in the tar: its header block(s) and its padded data."""
    data = path.read_bytes()
    with tarfile.open(path, "r:") as tar:
        return {m.name: data[m.offset:m.offset_data + m.size + (-m.size % 512)] for m in tar}


def test_the_listing_says_which_files_are_text_and_which_can_be_edited(stored: Path) -> None:
    files, truncated = edits.list_files(stored)
    shown = {f.path: f.to_dict() for f in files}
    assert not truncated
    assert set(shown) == {name for name in FILES}
    assert shown["app/main.py"] == {"path": "app/main.py", "size": len("print('héllo')\n".encode()),
                                    "text": True, "editable": True}
    assert shown["app/logo.png"]["text"] is False and shown["app/logo.png"]["editable"] is False
    assert shown["big.txt"]["text"] is True and shown["big.txt"]["editable"] is False

    cut, truncated = edits.list_files(stored, limit=2)
    assert truncated and [f.path for f in cut] == [f.path for f in files][:2]


def test_reading_a_file_gives_its_text_or_says_why_not(stored: Path) -> None:
    found, text = edits.read_text(stored, "./app/main.py")
    assert found.path == "app/main.py" and text == "print('héllo')\n" and found.mode == 0o640
    with pytest.raises(BadRequest) as binary:
        edits.read_text(stored, "app/logo.png")
    assert binary.value.code == "not_text"
    with pytest.raises(TooLarge):
        edits.read_text(stored, "big.txt")
    with pytest.raises(NotFound):
        edits.read_text(stored, "app/missing.py")
    with pytest.raises(NotFound):
        edits.read_text(stored, "app")  # a directory is not a file
    for bad in ("../etc/passwd", "/etc/passwd", "app/../../x", "a\\b", ""):
        with pytest.raises(BadRequest) as unsafe:
            edits.read_text(stored, bad)
        assert unsafe.value.code == "unsafe_path"


def test_an_edit_replaces_only_the_named_files_and_keeps_every_other_byte(stored: Path, tmp_path: Path) -> None:
    out = tmp_path / "edited.tar"
    changes = edits.check_edits({"app/main.py": "print('hello, projector')\n"})
    result = edits.write_edited(stored, out, changes, dockerfile="Dockerfile", dockerfile_text="unchanged",
                                limits=context.Limits(), mtime=MTIME + 500)
    assert result.changed == ["app/main.py"]
    assert result.dockerfile_text == "unchanged"
    assert result.files == len(FILES)

    before, after = raw_members(stored), raw_members(out)
    assert list(before) == list(after)  # same members, same order
    assert [name for name in before if before[name] != after[name]] == ["app/main.py"]
    with tarfile.open(out, "r:") as tar:
        edited = tar.getmember("app/main.py")
        assert (edited.mode, edited.mtime) == (0o640, MTIME + 500)
        assert tar.extractfile(edited).read() == b"print('hello, projector')\n"  # type: ignore[union-attr]
        assert tar.getmember("requirements.txt").mtime == MTIME
    assert out.stat().st_size % (20 * 512) == 0

    # The edited tar is a context like any other: packing it again changes nothing.
    again = tmp_path / "again.tar"
    context.pack_archive(out, again, "Dockerfile", context.Limits())
    assert again.read_bytes() == out.read_bytes()


def test_an_edit_of_the_dockerfile_changes_its_text_and_an_unchanged_edit_changes_nothing(
    stored: Path, tmp_path: Path
) -> None:
    new = "FROM scratch\nCOPY app ./app\n"
    result = edits.write_edited(stored, tmp_path / "a.tar", {"Dockerfile": new.encode()}, dockerfile="Dockerfile",
                                dockerfile_text="old", limits=context.Limits(), mtime=MTIME)
    assert result.dockerfile_text == new and result.changed == ["Dockerfile"]

    same = edits.write_edited(stored, tmp_path / "b.tar", {"requirements.txt": b"flask==3.0\n"},
                              dockerfile="Dockerfile", dockerfile_text="old", limits=context.Limits(), mtime=MTIME)
    assert same.changed == [] and same.dockerfile_text == "old"


@pytest.mark.parametrize(("files", "code"), [
    ({"app/nope.py": "x"}, "no_such_file"),
    ({"app/logo.png": "not a png"}, "not_text"),
    ({"big.txt": "small now"}, "not_text"),
    ({"app": "a directory"}, "no_such_file"),
])
def test_a_refused_edit_leaves_no_file(stored: Path, tmp_path: Path, files: dict[str, str], code: str) -> None:
    out = tmp_path / "edited.tar"
    with pytest.raises(BadRequest) as refused:
        edits.write_edited(stored, out, edits.check_edits(files), dockerfile="Dockerfile", dockerfile_text="",
                           limits=context.Limits(), mtime=MTIME)
    assert refused.value.code == code
    assert not out.exists()


def test_an_edit_over_the_context_cap_is_refused(stored: Path, tmp_path: Path) -> None:
    out = tmp_path / "edited.tar"
    size = stored.stat().st_size
    with pytest.raises(TooLarge):
        edits.write_edited(stored, out, {"app/main.py": b"y" * 1000}, dockerfile="Dockerfile", dockerfile_text="",
                           limits=context.Limits(max_unpacked_bytes=size // 2), mtime=MTIME)
    assert not out.exists()


@pytest.mark.parametrize(("body", "code"), [
    (None, "invalid_edit"),
    ({}, "invalid_edit"),
    (["app/main.py"], "invalid_edit"),
    ({"app/main.py": 3}, "invalid_edit"),
    ({"../x": "y"}, "unsafe_path"),
    ({"/etc/passwd": "y"}, "unsafe_path"),
    ({".dockerignore": "*"}, "not_editable"),
    ({"a.txt": "nul\x00byte"}, "not_text"),
    ({"a.txt": "x", "./a.txt": "y"}, "invalid_edit"),
    ({f"f{i}": "x" for i in range(edits.MAX_EDITED_FILES + 1)}, "invalid_edit"),
])
def test_edits_are_checked_before_anything_is_read(body: object, code: str) -> None:
    with pytest.raises(BadRequest) as refused:
        edits.check_edits(body)
    assert refused.value.code == code


def test_an_edited_file_has_a_size_cap() -> None:
    with pytest.raises(TooLarge) as refused:
        edits.check_edits({"a.txt": "z" * (edits.MAX_EDIT_BYTES + 1)})
    assert refused.value.code == "file_too_large"


def test_is_text_accepts_a_cut_character_only_in_a_prefix() -> None:
    cut = "é".encode()[:1]
    assert edits.is_text(b"abc" + cut, complete=False)
    assert not edits.is_text(b"abc" + cut)
    assert not edits.is_text(b"a\x00b", complete=False)
    assert not edits.is_text(b"\xff\xfe")
