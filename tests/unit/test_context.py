"""Uploads become a clean build-context tar, or a clear 4xx that leaves nothing behind."""

from __future__ import annotations

import gzip
import io
import random
import stat
import struct
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from webapp.builds.context import (
    ContextInfo,
    Limits,
    normalise_dockerfile_path,
    pack_archive,
    pack_dockerfile_text,
)
from webapp.builds.manifest import manifest_path
from webapp.errors import LayerdeckError

MIB = 1024 * 1024
MTIME = 1_700_000_000  # even, so a zip's two-second clock holds it exactly
DOCKERFILE = b"FROM busybox\nCOPY . /app\n"


# --- Building uploads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One archive member as a test describes it; `kind` is a tarfile type byte."""

    name: str
    data: bytes = b""
    mode: int = 0o644
    mtime: int = MTIME
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""


def file(name: str, data: bytes = b"hello\n", mode: int = 0o644, mtime: int = MTIME) -> Member:
    return Member(name, data, mode, mtime)


def directory(name: str, mode: int = 0o755, mtime: int = MTIME) -> Member:
    return Member(name, b"", mode, mtime, tarfile.DIRTYPE)


def dockerfile(name: str = "Dockerfile") -> Member:
    return file(name, DOCKERFILE)


def tar_bytes(*members: Member, compress: bool = False, format: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w", format=format) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.mode = member.mode
            info.mtime = member.mtime
            info.linkname = member.linkname
            info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(member.data) if info.size else None)
    return buffer.getvalue()


def browser_tar(*members: Member) -> bytes:
    """A folder as the page packs it (static/js/tar.js): GNU headers, mode 0644, uid and gid 0, the file's
    own mtime, a "././@LongLink" record of type L before a name over 100 bytes, and no directory entries.

    Names are written as given: the page has already stripped the folder's own name from them.
    """

    def octal(value: int, width: int) -> bytes:  # width includes the terminating NUL
        field = f"{value:0{width - 1}o}\0".encode()
        assert len(field) == width
        return field

    def header(name: bytes, size: int, mtime: int, kind: bytes) -> bytes:
        block = bytearray(512)
        block[: min(len(name), 100)] = name[:100]
        block[100:108] = octal(0o644, 8)
        block[108:116] = octal(0, 8)  # uid
        block[116:124] = octal(0, 8)  # gid
        block[124:136] = octal(size, 12)
        block[136:148] = octal(max(0, mtime), 12)
        block[148:156] = b" " * 8  # the checksum is computed with its own field as spaces
        block[156:157] = kind
        block[257:265] = b"ustar  \0"  # GNU magic and version
        block[148:156] = f"{sum(block):06o}\0 ".encode()
        assert len(block) == 512
        return bytes(block)

    def padded(data: bytes) -> bytes:
        return data + bytes(-len(data) % 512)

    parts = []
    for member in members:
        assert member.kind == tarfile.REGTYPE and member.mode == 0o644, "the page sends only plain files"
        name = member.name.encode()
        if len(name) > 100:
            parts += [header(b"././@LongLink", len(name) + 1, 0, b"L"), padded(name + b"\0")]
        parts += [header(name, len(member.data), member.mtime, b"0"), padded(member.data)]
    return b"".join(parts) + bytes(2 * 512)


def zip_bytes(*members: Member, unix_modes: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            is_dir = member.kind == tarfile.DIRTYPE
            name = member.name + "/" if is_dir and not member.name.endswith("/") else member.name
            info = zipfile.ZipInfo(name, date_time=time.gmtime(member.mtime)[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            kind = {
                tarfile.DIRTYPE: stat.S_IFDIR,
                tarfile.SYMTYPE: stat.S_IFLNK,
                tarfile.FIFOTYPE: stat.S_IFIFO,
            }.get(member.kind, stat.S_IFREG)
            if unix_modes:
                info.external_attr = (kind | member.mode) << 16
            else:
                info.create_system = 0  # MS-DOS attributes only: directory or archive bit
            info.external_attr |= 0x10 if is_dir else 0x20
            archive.writestr(
                info, member.linkname.encode() if member.kind == tarfile.SYMTYPE else member.data
            )
    return buffer.getvalue()


def patch_zip(data: bytes, name: str, **fields: int) -> bytes:
    """Overwrite header fields of one zip entry, in its local header and its central directory record."""
    local_offsets = {"flag_bits": (6, "<H"), "compress_type": (8, "<H"), "file_size": (22, "<L")}
    central_offsets = {
        "flag_bits": (8, "<H"),
        "compress_type": (10, "<H"),
        "file_size": (24, "<L"),
        "header_offset": (42, "<L"),
    }
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        local = archive.getinfo(name).header_offset
        position = archive.start_dir
    patched = bytearray(data)
    while True:
        name_length, extra_length, comment_length = struct.unpack_from("<3H", patched, position + 28)
        if patched[position + 46 : position + 46 + name_length] == name.encode():
            break
        position += 46 + name_length + extra_length + comment_length
    for field, value in fields.items():
        for base, offsets in ((local, local_offsets), (position, central_offsets)):
            if field in offsets:
                offset, layout = offsets[field]
                struct.pack_into(layout, patched, base + offset, value)
    return bytes(patched)


# --- Running the packer and reading its output ---------------------------------------------------------


@dataclass(frozen=True)
class Packed:
    info: ContextInfo
    members: dict[str, tuple[str, int, int, int]]  # name -> (type, mode, mtime, size)
    contents: dict[str, bytes]
    raw: bytes


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """Where the context tar goes, alone in its folder so a test can see that nothing else is left there."""
    folder = tmp_path / "contexts"
    folder.mkdir()
    return folder / "context.tar"


def read_back(out: Path, info: ContextInfo) -> Packed:
    raw = out.read_bytes()
    members: dict[str, tuple[str, int, int, int]] = {}
    contents: dict[str, bytes] = {}
    with tarfile.open(out, encoding="utf-8", errors="surrogateescape") as tar:
        names = tar.getnames()
        assert names == sorted(names, key=lambda name: name.encode("utf-8", "surrogateescape"))
        for member in tar:
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
            assert member.isfile() or member.isdir()
            members[member.name] = (
                "dir" if member.isdir() else "file",
                member.mode,
                int(member.mtime),
                member.size,
            )
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                contents[member.name] = extracted.read()
    return Packed(info, members, contents, raw)


def pack(
    tmp_path: Path, out: Path, upload: bytes, dockerfile: str = "Dockerfile", limits: Limits | None = None
) -> Packed:
    path = tmp_path / "upload.bin"
    path.write_bytes(upload)
    info = pack_archive(path, out, dockerfile, limits or Limits())
    return read_back(out, info)


def rejected(out: Path, action: Callable[[], object], code: str, status: int, *words: str) -> LayerdeckError:
    """The action fails with this code and status, its message names the problem, and no file is left."""
    with pytest.raises(LayerdeckError) as caught:
        action()
    error = caught.value
    assert (error.code, error.status) == (code, status), error.message
    for word in words:
        assert word in error.message, error.message
    assert error.message.endswith("."), error.message
    assert not out.exists()
    assert list(out.parent.iterdir()) == []
    return error


def rejects_upload(
    tmp_path: Path,
    out: Path,
    upload: bytes,
    code: str,
    status: int,
    *words: str,
    dockerfile: str = "Dockerfile",
    limits: Limits | None = None,
) -> LayerdeckError:
    path = tmp_path / "upload.bin"
    path.write_bytes(upload)
    return rejected(
        out, lambda: pack_archive(path, out, dockerfile, limits or Limits()), code, status, *words
    )


# --- A good upload -------------------------------------------------------------------------------------


def test_a_tar_upload_becomes_a_sorted_gnu_tar_of_files_and_their_directories(
    tmp_path: Path, out: Path
) -> None:
    packed = pack(tmp_path, out, tar_bytes(file("src/main.py", b"print(1)\n"), dockerfile(), file("README")))

    assert list(packed.members) == ["Dockerfile", "README", "src", "src/main.py"]
    assert packed.members["src"] == ("dir", 0o755, MTIME, 0)
    assert packed.contents["src/main.py"] == b"print(1)\n"
    assert packed.raw[257:265] == b"ustar  \x00"  # the GNU magic, not pax's "ustar\x0000"
    assert packed.info == ContextInfo(
        source="tar",
        files=3,
        bytes=len(DOCKERFILE) + 9 + 6,
        dockerfile="Dockerfile",
        dockerfile_text=DOCKERFILE.decode(),
        ignored=0,
    )


def test_permission_bits_and_mtimes_from_a_tar_are_kept_without_setuid(tmp_path: Path, out: Path) -> None:
    packed = pack(
        tmp_path,
        out,
        tar_bytes(
            dockerfile(),
            directory("bin", mode=0o700, mtime=MTIME - 100),
            file("bin/run.sh", mode=0o755, mtime=MTIME - 50),
            file("bin/su", mode=0o4755),
            file("secret", mode=0o600, mtime=1),
        ),
    )

    assert packed.members["bin"] == ("dir", 0o700, MTIME - 100, 0)
    assert packed.members["bin/run.sh"][:3] == ("file", 0o755, MTIME - 50)
    assert packed.members["bin/su"][1] == 0o755
    assert packed.members["secret"][1:3] == (0o600, 1)


def test_zip_modes_are_kept_and_its_date_time_is_read_as_utc(tmp_path: Path, out: Path) -> None:
    packed = pack(
        tmp_path,
        out,
        zip_bytes(
            dockerfile(),
            directory("bin", mode=0o750, mtime=MTIME + 2),
            file("bin/run.sh", mode=0o755, mtime=MTIME - 20),
        ),
    )

    assert packed.info.source == "zip"
    assert packed.members["bin"] == ("dir", 0o750, MTIME + 2, 0)
    assert packed.members["bin/run.sh"][:3] == ("file", 0o755, MTIME - 20)


def test_a_zip_made_on_windows_gets_the_usual_default_modes(tmp_path: Path, out: Path) -> None:
    packed = pack(
        tmp_path, out, zip_bytes(dockerfile(), directory("conf"), file("conf/app.ini"), unix_modes=False)
    )

    assert packed.members["conf"][:2] == ("dir", 0o755)
    assert packed.members["conf/app.ini"][:2] == ("file", 0o644)


def test_the_same_files_from_tar_tar_gz_zip_and_a_browser_packed_folder_give_byte_identical_contexts(
    tmp_path: Path, out: Path
) -> None:
    files = [
        dockerfile(),
        file("src/app.py", b"import os\n" * 100, mtime=MTIME - 86_400),
        file("src/lib/util.py", b"", mtime=MTIME + 6),
        file("requirements.txt", b"flask\n"),
    ]
    results = [
        pack(tmp_path, out.with_name("from.tar"), tar_bytes(*files)),
        pack(tmp_path, out.with_name("from.tar.gz"), tar_bytes(*reversed(files), compress=True)),
        pack(tmp_path, out.with_name("from.zip"), zip_bytes(*files)),
        pack(tmp_path, out.with_name("from-folder.tar"), browser_tar(*files)),
    ]

    assert [packed.info.source for packed in results] == ["tar", "tar.gz", "zip", "tar"]
    first = results[0]
    assert list(first.members) == [
        "Dockerfile",
        "requirements.txt",
        "src",
        "src/app.py",
        "src/lib",
        "src/lib/util.py",
    ]
    for packed in results[1:]:
        assert packed.members == first.members
        assert packed.contents == first.contents
        assert packed.raw == first.raw
        assert dict(vars(packed.info), source="tar") == vars(first.info)


def test_a_parent_the_upload_did_not_list_gets_mode_755_and_the_newest_mtime_below_it(
    tmp_path: Path, out: Path
) -> None:
    packed = pack(
        tmp_path,
        out,
        tar_bytes(
            dockerfile(), file("a/b/old", mtime=100), file("a/b/new", mtime=300), file("a/other", mtime=200)
        ),
    )

    assert packed.members["a"] == ("dir", 0o755, 300, 0)
    assert packed.members["a/b"] == ("dir", 0o755, 300, 0)


def test_leading_dot_slash_is_stripped_and_the_root_entry_dropped(tmp_path: Path, out: Path) -> None:
    # What `tar -C project -cf context.tar .` writes.
    packed = pack(
        tmp_path,
        out,
        tar_bytes(directory("."), directory("./src"), dockerfile("./Dockerfile"), file("./src/app.py")),
    )

    assert list(packed.members) == ["Dockerfile", "src", "src/app.py"]


def test_a_repeated_directory_entry_is_accepted(tmp_path: Path, out: Path) -> None:
    packed = pack(tmp_path, out, tar_bytes(directory("src"), dockerfile(), directory("src/", mode=0o700)))

    assert packed.members["src"][:2] == ("dir", 0o700)


def test_a_dockerfile_in_a_subdirectory_is_found_by_its_path(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(file("docker/app.Dockerfile", b"FROM scratch\n"), file("main.go"))
    packed = pack(tmp_path, out, upload, dockerfile="./docker//app.Dockerfile")

    assert packed.info.dockerfile == "docker/app.Dockerfile"
    assert packed.info.dockerfile_text == "FROM scratch\n"


def test_a_dockerfile_that_is_not_utf8_is_read_with_replacement_characters(tmp_path: Path, out: Path) -> None:
    packed = pack(tmp_path, out, tar_bytes(file("Dockerfile", b"FROM busybox\n# caf\xe9\n")))

    assert packed.info.dockerfile_text == "FROM busybox\n# caf\ufffd\n"


def test_long_and_non_utf8_names_come_out_byte_for_byte(tmp_path: Path, out: Path) -> None:
    long_name = "deep/" * 30 + "file.txt"
    latin1 = "caf\udce9.txt"  # the byte 0xE9 as tarfile's surrogateescape shows it
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for member in (dockerfile(), file(long_name), file(latin1)):
            info = tarfile.TarInfo(member.name)
            info.size = len(member.data)
            tar.addfile(info, io.BytesIO(member.data))
    packed = pack(tmp_path, out, buffer.getvalue())

    assert long_name in packed.members
    assert latin1 in packed.members
    assert b"caf\xe9.txt" in packed.raw


@pytest.mark.parametrize("format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_every_tar_format_is_read_as_tarfile_reads_it(tmp_path: Path, out: Path, format: int) -> None:
    names = ["Dockerfile", "d/" * 60 + "deep.txt", "x" * 99, "prefix/" * 20 + "y" * 90]
    if format == tarfile.PAX_FORMAT:
        names.append("ünïcödé/名前.txt")
    members = [
        file(name, name.encode() * 3, mode=0o640 + number, mtime=MTIME + number)
        for number, name in enumerate(names)
    ]
    upload = tar_bytes(directory("d", mode=0o711), *members, format=format)
    packed = pack(tmp_path, out, upload)

    with tarfile.open(fileobj=io.BytesIO(upload)) as tar:
        for member in tar:
            assert packed.members[member.name][1:] == (member.mode, member.mtime, member.size)
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None and packed.contents[member.name] == extracted.read()


def test_the_format_is_recognised_by_its_bytes_not_its_file_name(tmp_path: Path, out: Path) -> None:
    upload = tmp_path / "context.zip"
    upload.write_bytes(tar_bytes(dockerfile()))

    assert pack_archive(upload, out, "Dockerfile", Limits()).source == "tar"


def test_an_old_v7_tar_is_recognised_by_its_checksum(tmp_path: Path, out: Path) -> None:
    upload = bytearray(tar_bytes(dockerfile()))
    upload[257:265] = bytes(8)  # no ustar magic, as in v7 tars
    header = upload[:512]
    header[148:156] = b" " * 8
    upload[148:156] = b"%06o\x00 " % sum(header)

    assert pack(tmp_path, out, bytes(upload)).info.source == "tar"


# --- Not an archive ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "upload",
    [b"FROM busybox\n", b"\x89PNG\r\n\x1a\n" + bytes(2000), bytes(700), b"PK", b"x" * 5000],
    ids=["a-dockerfile", "a-png", "zeros-that-are-no-tar", "two-bytes", "text"],
)
def test_something_that_is_no_tar_gzip_or_zip_is_not_an_archive(
    tmp_path: Path, out: Path, upload: bytes
) -> None:
    rejects_upload(tmp_path, out, upload, "not_an_archive", 400, "not a tar, tar.gz or zip archive")


def test_a_gzip_that_holds_no_tar_is_not_an_archive(tmp_path: Path, out: Path) -> None:
    rejects_upload(
        tmp_path,
        out,
        gzip.compress(b"FROM busybox\n" * 100),
        "not_an_archive",
        400,
        "gzip-compressed",
        "not a tar archive",
    )


def test_an_empty_upload_file_is_refused(tmp_path: Path, out: Path) -> None:
    rejects_upload(tmp_path, out, b"", "empty_upload", 400, "empty")


@pytest.mark.parametrize(
    "upload",
    [tar_bytes(), tar_bytes(compress=True), zip_bytes()],
    ids=["empty-tar", "empty-tar.gz", "empty-zip"],
)
def test_an_empty_archive_has_no_dockerfile(tmp_path: Path, out: Path, upload: bytes) -> None:
    rejects_upload(tmp_path, out, upload, "no_dockerfile", 400, '"Dockerfile"')


# --- Unsafe names, links, special files, duplicates ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/passwd", "absolute"),
        ("../outside", '".."'),
        ("src/../../outside", '".."'),
        ("src\\..\\outside", "backslash"),
        ("C:/Windows/evil.exe", "drive letter"),
        ("c:evil", "drive letter"),
    ],
)
@pytest.mark.parametrize("archive", [tar_bytes, zip_bytes])
def test_an_unsafe_member_name_is_refused_and_named(
    tmp_path: Path, out: Path, name: str, reason: str, archive: Callable[..., bytes]
) -> None:
    rejects_upload(
        tmp_path, out, archive(dockerfile(), file(name)), "unsafe_member", 400, f'"{name}"', reason
    )


def test_a_nul_byte_in_a_pax_name_is_refused(tmp_path: Path, out: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("placeholder")
        info.pax_headers = {"path": "evil\x00.txt"}
        tar.addfile(info)
    rejects_upload(tmp_path, out, buffer.getvalue(), "unsafe_member", 400, "NUL", '"evil\\x00.txt"')


def test_a_nul_byte_in_a_zip_name_is_refused(tmp_path: Path, out: Path) -> None:
    # zipfile cuts ZipInfo.filename at the NUL (and cannot write one); the name as stored must be refused.
    upload = zip_bytes(dockerfile(), file("evil#.txt")).replace(b"evil#.txt", b"evil\x00.txt")
    rejects_upload(tmp_path, out, upload, "unsafe_member", 400, "NUL")


def test_a_file_with_an_empty_name_is_refused(tmp_path: Path, out: Path) -> None:
    rejects_upload(tmp_path, out, tar_bytes(dockerfile(), file("./")), "unsafe_member", 400, "empty")


@pytest.mark.parametrize(
    ("member", "code", "words"),
    [
        (Member("link", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), "link_member", "symbolic link"),
        (Member("hard", kind=tarfile.LNKTYPE, linkname="Dockerfile"), "link_member", "hard link"),
        (Member("dev/null", kind=tarfile.CHRTYPE), "special_member", "character device"),
        (Member("dev/sda", kind=tarfile.BLKTYPE), "special_member", "block device"),
        (Member("pipe", kind=tarfile.FIFOTYPE), "special_member", "FIFO"),
        (Member("volume", kind=b"V"), "special_member", "unknown tar type"),
    ],
    ids=["symlink", "hard-link", "char-device", "block-device", "fifo", "unknown-type"],
)
def test_a_tar_member_that_is_not_a_file_or_directory_is_refused(
    tmp_path: Path, out: Path, member: Member, code: str, words: str
) -> None:
    rejects_upload(tmp_path, out, tar_bytes(dockerfile(), member), code, 400, f'"{member.name}"', words)


def test_a_gnu_sparse_file_is_refused(tmp_path: Path, out: Path) -> None:
    rejects_upload(
        tmp_path,
        out,
        tar_bytes(dockerfile(), Member("holes", kind=tarfile.GNUTYPE_SPARSE)),
        "special_member",
        400,
        "sparse",
    )


@pytest.mark.parametrize(
    ("member", "code", "words"),
    [
        (Member("link", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), "link_member", "symbolic link"),
        (Member("pipe", kind=tarfile.FIFOTYPE), "special_member", "FIFO"),
    ],
    ids=["symlink", "fifo"],
)
def test_a_zip_entry_that_is_not_a_file_or_directory_is_refused(
    tmp_path: Path, out: Path, member: Member, code: str, words: str
) -> None:
    rejects_upload(tmp_path, out, zip_bytes(dockerfile(), member), code, 400, f'"{member.name}"', words)


@pytest.mark.parametrize("archive", [tar_bytes, zip_bytes])
def test_a_name_that_appears_twice_after_normalising_is_refused(
    tmp_path: Path, out: Path, archive: Callable[..., bytes]
) -> None:
    upload = archive(dockerfile(), file("app.py"), file("./app.py"))
    rejects_upload(tmp_path, out, upload, "duplicate_member", 400, '"app.py"', "more than once")


@pytest.mark.parametrize(
    "members",
    [
        (file("src"), file("src/app.py")),
        (file("src/app.py"), file("src")),
        (directory("src"), file("src")),
        (file("src"), directory("src")),
    ],
    ids=["file-then-child", "child-then-file", "dir-then-file", "file-then-dir"],
)
def test_a_name_that_is_both_a_file_and_a_directory_is_refused(
    tmp_path: Path, out: Path, members: tuple[Member, ...]
) -> None:
    rejects_upload(
        tmp_path,
        out,
        tar_bytes(dockerfile(), *members),
        "duplicate_member",
        400,
        '"src"',
        "both as a file and as a directory",
    )


# --- Caps ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("archive", [tar_bytes, zip_bytes])
def test_more_members_than_the_cap_is_too_many_files(
    tmp_path: Path, out: Path, archive: Callable[..., bytes]
) -> None:
    upload = archive(dockerfile(), *(file(f"f{number}") for number in range(5)))
    rejects_upload(
        tmp_path, out, upload, "too_many_files", 413, "more than 4 files", limits=Limits(max_files=4)
    )


def test_exactly_the_cap_of_members_is_accepted(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(dockerfile(), directory("d"), file("d/a"), file("d/b"))
    assert pack(tmp_path, out, upload, limits=Limits(max_files=4)).info.files == 3


def test_a_gzip_bomb_stops_at_the_unpacked_cap(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(dockerfile(), file("zeros", bytes(64 * MIB)), compress=True)
    assert len(upload) < MIB // 4

    rejects_upload(
        tmp_path,
        out,
        upload,
        "context_too_large",
        413,
        "more than 1 MiB",
        limits=Limits(max_unpacked_bytes=MIB),
    )


def test_a_zip_bomb_stops_at_the_unpacked_cap(tmp_path: Path, out: Path) -> None:
    upload = zip_bytes(dockerfile(), file("zeros", bytes(64 * MIB)))
    assert len(upload) < MIB

    rejects_upload(
        tmp_path,
        out,
        upload,
        "context_too_large",
        413,
        "more than 1 MiB",
        limits=Limits(max_unpacked_bytes=MIB),
    )


def test_many_small_files_add_up_to_the_unpacked_cap(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(dockerfile(), *(file(f"part{number}", bytes(300 * 1024)) for number in range(4)))
    rejects_upload(tmp_path, out, upload, "context_too_large", 413, limits=Limits(max_unpacked_bytes=MIB))


def test_a_zip_whose_header_lies_about_size_is_counted_by_real_bytes(tmp_path: Path, out: Path) -> None:
    # The header claims 2 GiB, over the cap; the data is 5 bytes. Only what is read counts.
    upload = patch_zip(zip_bytes(dockerfile(), file("small", b"12345")), "small", file_size=2**31 - 1)
    packed = pack(tmp_path, out, upload, limits=Limits(max_unpacked_bytes=MIB))

    assert packed.contents["small"] == b"12345"
    assert packed.info.bytes == len(DOCKERFILE) + 5


def test_a_zip_whose_header_understates_its_size_is_refused_not_truncated(tmp_path: Path, out: Path) -> None:
    # The header claims 10 bytes of what is really 4 MiB; zipfile stops at 10 and the CRC no longer fits.
    upload = patch_zip(zip_bytes(dockerfile(), file("zeros", bytes(4 * MIB))), "zeros", file_size=10)
    rejects_upload(
        tmp_path, out, upload, "corrupt_archive", 400, '"zeros"', limits=Limits(max_unpacked_bytes=MIB)
    )


def pax_record(keyword: str, value: str) -> bytes:
    """One "<length> <keyword>=<value>\\n" record; its length counts its own digits."""
    body = f" {keyword}={value}\n".encode()
    length = len(body) + len(str(len(body)))
    if len(str(length)) > len(str(len(body))):
        length += 1
    return str(length).encode() + body


def tar_with_records(kind: bytes, *records: bytes, then: Member = Member("Dockerfile")) -> bytes:
    """Header records of one kind (pax, global pax, GNU long name) before an ordinary member."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for number, record in enumerate(records):
            info = tarfile.TarInfo(f"record{number}")
            info.type = kind
            info.size = len(record)
            tar.addfile(info, io.BytesIO(record))
        info = tarfile.TarInfo(then.name)
        info.size = len(then.data)
        info.mode = then.mode
        info.mtime = then.mtime
        tar.addfile(info, io.BytesIO(then.data))
    return buffer.getvalue()


def test_the_pax_record_helper_counts_the_length_right() -> None:
    assert pax_record("comment", "x" * 93) == b"106 comment=" + b"x" * 93 + b"\n"
    assert pax_record("a", "") == b"5 a=\n"


def test_a_tar_made_mostly_of_header_records_still_stops_at_the_cap(tmp_path: Path, out: Path) -> None:
    # Global pax records hold no file data for the byte count to see; the stream itself is capped too.
    records = [pax_record("comment", "x" * (700 * 1024)) for _ in range(4)]
    upload = gzip.compress(tar_with_records(tarfile.XGLTYPE, *records))
    rejects_upload(
        tmp_path, out, upload, "context_too_large", 413, limits=Limits(max_unpacked_bytes=MIB, max_files=10)
    )


def test_a_pax_record_that_makes_python_311_tarfile_take_minutes_is_read_at_once(
    tmp_path: Path, out: Path
) -> None:
    # CVE-2024-6232: tarfile's pax regexps backtrack quadratically over a run of digits (64 KiB: 11 s).
    upload = tar_with_records(tarfile.XHDTYPE, pax_record("comment", "1" * (900 * 1024)), then=dockerfile())
    started = time.monotonic()
    packed = pack(tmp_path, out, upload)

    assert time.monotonic() - started < 5
    assert list(packed.members) == ["Dockerfile"]


def test_a_pax_record_with_a_wrong_length_is_corrupt(tmp_path: Path, out: Path) -> None:
    upload = tar_with_records(tarfile.XHDTYPE, b"99 path=short\n", then=dockerfile())
    rejects_upload(tmp_path, out, upload, "corrupt_archive", 400, "damaged")


def test_a_pax_path_and_mtime_override_the_header(tmp_path: Path, out: Path) -> None:
    records = pax_record("path", "from/pax/Dockerfile") + pax_record("mtime", "1600000000.75")
    upload = tar_with_records(tarfile.XHDTYPE, records, then=dockerfile("header-name"))
    packed = pack(tmp_path, out, upload, dockerfile="from/pax/Dockerfile")

    assert packed.members["from/pax/Dockerfile"] == ("file", 0o644, 1_600_000_000, len(DOCKERFILE))


def test_a_gnu_long_name_record_names_the_next_member(tmp_path: Path, out: Path) -> None:
    long_name = "a/" * 80 + "Dockerfile"
    upload = tar_with_records(
        tarfile.GNUTYPE_LONGNAME, long_name.encode() + b"\x00", then=dockerfile("short")
    )

    assert list(pack(tmp_path, out, upload, dockerfile=long_name).members)[-1] == long_name


def test_the_global_header_git_archive_writes_is_accepted(tmp_path: Path, out: Path) -> None:
    buffer = io.BytesIO()
    commit = "0123456789abcdef0123456789abcdef01234567"
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit}
    ) as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
    assert b"comment=" + commit.encode() in buffer.getvalue()

    assert list(pack(tmp_path, out, buffer.getvalue()).members) == ["Dockerfile"]


def test_root_entries_count_towards_the_member_cap(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(*(directory("./") for _ in range(50)), dockerfile(), compress=True)
    rejects_upload(tmp_path, out, upload, "too_many_files", 413, limits=Limits(max_files=10))


def test_a_header_record_over_1_mib_is_refused(tmp_path: Path, out: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.pax_headers = {"comment": "x" * (2 * MIB)}
        tar.addfile(info)
    rejects_upload(tmp_path, out, buffer.getvalue(), "corrupt_archive", 400, "header record")


def test_a_dockerfile_over_1_mib_is_refused(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(file("Dockerfile", b"# padding\n" * (MIB // 10 + 1)))
    rejects_upload(tmp_path, out, upload, "build_file_too_large", 413, "Dockerfile")


# --- Damaged archives ----------------------------------------------------------------------------------


def incompressible(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@pytest.mark.parametrize(
    ("archive", "source"),
    [(tar_bytes, "tar"), (lambda *members: tar_bytes(*members, compress=True), "tar.gz"), (zip_bytes, "zip")],
    ids=["tar", "tar.gz", "zip"],
)
def test_an_archive_cut_in_half_is_corrupt(
    tmp_path: Path, out: Path, archive: Callable[..., bytes], source: str
) -> None:
    upload = archive(dockerfile(), file("blob", incompressible(200_000)))
    rejects_upload(tmp_path, out, upload[: len(upload) // 2], "corrupt_archive", 400, source, "damaged")


def test_a_tar_cut_inside_a_header_is_corrupt(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(file("first", bytes(512)), dockerfile())
    rejects_upload(tmp_path, out, upload[: 512 + 512 + 100], "corrupt_archive", 400, "tar", "cut short")


def test_a_gzip_with_a_broken_header_is_corrupt(tmp_path: Path, out: Path) -> None:
    upload = bytearray(tar_bytes(dockerfile(), compress=True))
    upload[2] = 7  # a compression method gzip does not define
    rejects_upload(tmp_path, out, bytes(upload), "corrupt_archive", 400, "tar.gz")


def test_an_encrypted_zip_is_refused(tmp_path: Path, out: Path) -> None:
    upload = patch_zip(zip_bytes(dockerfile(), file("secret.txt")), "secret.txt", flag_bits=0x1)
    rejects_upload(tmp_path, out, upload, "corrupt_archive", 400, '"secret.txt"', "encrypted")


def test_zip_entries_that_share_their_data_are_refused(tmp_path: Path, out: Path) -> None:
    # Two directory records pointing at one local header: the classic way to make a small zip big.
    upload = zip_bytes(dockerfile(), file("a.bin", bytes(1000)), file("b.bin", bytes(1000)))
    with zipfile.ZipFile(io.BytesIO(upload)) as archive:
        offset = archive.getinfo("a.bin").header_offset
    rejects_upload(
        tmp_path, out, patch_zip(upload, "b.bin", header_offset=offset), "corrupt_archive", 400, "overlap"
    )


def test_a_zip_compression_method_zipfile_cannot_read_is_refused(tmp_path: Path, out: Path) -> None:
    upload = patch_zip(zip_bytes(dockerfile(), file("data")), "data", compress_type=9)  # Deflate64
    rejects_upload(tmp_path, out, upload, "corrupt_archive", 400, "compression method")


def mutations(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    chance = random.Random(seed)
    for _ in range(count):
        mutated = bytearray(data)
        action = chance.choice(["flip", "zero", "cut"])
        position = chance.randrange(len(data))
        if action == "flip":
            mutated[position] ^= 1 << chance.randrange(8)
        elif action == "zero":
            mutated[position : position + 16] = bytes(len(mutated[position : position + 16]))
        else:
            del mutated[position:]
        yield bytes(mutated)


@pytest.mark.parametrize(
    "upload",
    [
        tar_bytes(dockerfile(), directory("src"), file("src/a.py", b"x" * 3000), file("b" * 120)),
        tar_bytes(dockerfile(), file("src/a.py", b"x" * 3000), compress=True),
        tar_bytes(dockerfile(), file("src/a.py", b"x" * 3000), format=tarfile.PAX_FORMAT),
        zip_bytes(dockerfile(), directory("src"), file("src/a.py", b"x" * 3000)),
    ],
    ids=["gnu-tar", "tar.gz", "pax-tar", "zip"],
)
def test_a_damaged_archive_never_fails_with_anything_but_a_clear_error(
    tmp_path: Path, out: Path, upload: bytes
) -> None:
    path = tmp_path / "upload.bin"
    for mutated in mutations(upload, 300, seed=len(upload)):
        path.write_bytes(mutated)
        try:
            pack_archive(path, out, "Dockerfile", Limits(max_unpacked_bytes=MIB, max_files=100))
        except LayerdeckError as error:
            assert error.status in (400, 413)
            assert not out.exists()
        else:
            out.unlink()
            manifest_path(out).unlink()  # a good context comes with its file manifest
        assert list(out.parent.iterdir()) == []


# --- The Dockerfile option -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "Dockerfile"),
        ("", "Dockerfile"),
        ("Dockerfile.dev", "Dockerfile.dev"),
        ("./build/Dockerfile", "build/Dockerfile"),
        ("././build//Dockerfile", "build/Dockerfile"),
        ("build/./Dockerfile", "build/Dockerfile"),
    ],
)
def test_the_dockerfile_path_is_normalised(given: str | None, expected: str) -> None:
    assert normalise_dockerfile_path(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("/Dockerfile", "absolute"),
        ("../Dockerfile", '".."'),
        ("build/../../Dockerfile", '".."'),
        ("build\\Dockerfile", "backslash"),
        ("Docker\x00file", "NUL"),
        ("C:/Dockerfile", "drive letter"),
    ],
)
def test_a_dockerfile_path_leaving_the_context_is_refused(given: str, reason: str) -> None:
    with pytest.raises(LayerdeckError) as caught:
        normalise_dockerfile_path(given)
    assert (caught.value.code, caught.value.status) == ("dockerfile_outside_context", 400)
    assert reason in caught.value.message


def test_packing_with_a_dockerfile_path_outside_the_context_leaves_nothing(tmp_path: Path, out: Path) -> None:
    rejects_upload(
        tmp_path,
        out,
        tar_bytes(dockerfile()),
        "dockerfile_outside_context",
        400,
        '"../Dockerfile"',
        dockerfile="../Dockerfile",
    )


def test_a_context_without_the_chosen_dockerfile_is_refused_with_its_path(tmp_path: Path, out: Path) -> None:
    error = rejects_upload(
        tmp_path, out, tar_bytes(dockerfile()), "no_dockerfile", 400, dockerfile="build/Dockerfile"
    )
    assert error.message == 'There is no Dockerfile at "build/Dockerfile" in the uploaded context.'


def test_a_dockerfile_path_naming_a_directory_has_no_dockerfile(tmp_path: Path, out: Path) -> None:
    rejects_upload(
        tmp_path,
        out,
        tar_bytes(directory("build"), file("build/x")),
        "no_dockerfile",
        400,
        '"build"',
        dockerfile="build",
    )


# --- .dockerignore -------------------------------------------------------------------------------------


def test_dockerignore_drops_matching_files_and_counts_them(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(
        dockerfile(),
        file(".dockerignore", b"node_modules\n*.log\n"),
        file("app.js"),
        directory("node_modules"),
        file("node_modules/x/index.js"),
        file("debug.log"),
    )
    packed = pack(tmp_path, out, upload)

    assert list(packed.members) == [".dockerignore", "Dockerfile", "app.js"]
    assert packed.info.ignored == 3  # node_modules, node_modules/x/index.js and debug.log
    assert packed.info.files == 3


def test_the_dockerfile_and_dockerignore_are_kept_even_when_a_pattern_matches_them(
    tmp_path: Path, out: Path
) -> None:
    upload = tar_bytes(
        file(".dockerignore", b"*\nbuild\n"),
        file("build/Dockerfile", DOCKERFILE),
        file("build/other"),
        file("app.py"),
    )
    packed = pack(tmp_path, out, upload, dockerfile="build/Dockerfile")

    assert list(packed.members) == [".dockerignore", "build", "build/Dockerfile"]
    assert packed.info.ignored == 2


def test_an_exception_brings_back_a_file_inside_an_ignored_directory(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(
        dockerfile(),
        file(".dockerignore", b"docs\n!docs/README.md\n"),
        directory("docs", mode=0o750),
        file("docs/README.md"),
        file("docs/guide.md"),
    )
    packed = pack(tmp_path, out, upload)

    assert list(packed.members) == [".dockerignore", "Dockerfile", "docs", "docs/README.md"]
    assert packed.members["docs"][:2] == ("dir", 0o750)  # the upload's own entry for the parent
    assert packed.info.ignored == 1


def test_an_invalid_dockerignore_pattern_is_refused_with_its_line(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(dockerfile(), file(".dockerignore", b"# ok\nbuild\n[oops\n"))
    rejects_upload(tmp_path, out, upload, "invalid_dockerignore", 400, "Line 3", '"[oops"')


def test_ignored_files_still_count_towards_the_caps(tmp_path: Path, out: Path) -> None:
    upload = tar_bytes(dockerfile(), file(".dockerignore", b"big\n"), file("big", bytes(2 * MIB)))
    rejects_upload(tmp_path, out, upload, "context_too_large", 413, limits=Limits(max_unpacked_bytes=MIB))


# --- Folder uploads: a tar the page packs (static/js/tar.js) -------------------------------------------


def test_a_browser_packed_folder_keeps_a_name_over_100_bytes_in_full(tmp_path: Path, out: Path) -> None:
    # The 100-byte header field cuts this name inside "ï"; only the long-name record holds all of it.
    long_name = "app/src/" + "ünïcödé-directory/" * 6 + "main.py"
    assert len(long_name.encode()) > 100
    upload = browser_tar(dockerfile(), file(long_name, b"print()\n", mtime=MTIME + 4))
    with tarfile.open(fileobj=io.BytesIO(upload)) as tar:
        assert tar.getnames() == ["Dockerfile", long_name]  # the helper writes what tarfile reads

    packed = pack(tmp_path, out, upload)

    assert packed.info.source == "tar"
    assert packed.info.files == 2
    assert packed.members[long_name] == ("file", 0o644, MTIME + 4, len(b"print()\n"))
    assert packed.contents[long_name] == b"print()\n"
    assert long_name.encode() in packed.raw


# --- Pasted Dockerfiles --------------------------------------------------------------------------------


def test_a_pasted_dockerfile_becomes_a_context_of_that_one_file(out: Path) -> None:
    info = pack_dockerfile_text("FROM busybox\nRUN echo é\n", out)
    packed = read_back(out, info)

    assert list(packed.members) == ["Dockerfile"]
    assert packed.contents["Dockerfile"] == "FROM busybox\nRUN echo é\n".encode()
    assert info == ContextInfo(
        source="dockerfile",
        files=1,
        bytes=len("FROM busybox\nRUN echo é\n".encode()),
        dockerfile="Dockerfile",
        dockerfile_text="FROM busybox\nRUN echo é\n",
        ignored=0,
    )


def test_a_pasted_dockerfile_can_live_at_a_chosen_path(out: Path) -> None:
    info = pack_dockerfile_text("FROM scratch\n", out, "./ci/Dockerfile")

    assert list(read_back(out, info).members) == ["ci", "ci/Dockerfile"]
    assert info.dockerfile == "ci/Dockerfile"


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
def test_an_empty_pasted_dockerfile_is_refused(out: Path, text: str) -> None:
    rejected(out, lambda: pack_dockerfile_text(text, out), "no_dockerfile", 400, "empty")
