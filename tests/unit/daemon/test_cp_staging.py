"""An upload's staging (kukeon.daemon.cpstage): its stream rewritten so every member that
is not a directory is written under a hidden name beside its destination; those names put in
place, or removed, through a root that no path or link leaves."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from kukeon.daemon.cpstage import (
    STAGE_MARK,
    CommitError,
    ContainerDirectory,
    StagedUpload,
    UploadRefusedError,
)
from kukeon.runtime.containerd.archivetar import open_stream_tar
from tests.fixtures.services import require_root

CHUNK = 64 * 1024


def _archive(*members: tarfile.TarInfo, data: bytes = b"data") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for member in members:
            if member.isreg():
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))
            else:
                archive.addfile(member)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _rewritten(upload: StagedUpload, stream: bytes) -> list[tuple[str, str, bytes | None]]:
    out = io.BytesIO()
    upload.rewrite(io.BytesIO(stream), out, CHUNK)
    found = []
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as archive:
        for member in archive:
            reader = archive.extractfile(member) if member.isreg() else None
            found.append((member.name, member.linkname, reader.read() if reader else None))
    return found


def test_files_are_staged_beside_their_destinations_and_directories_kept() -> None:
    upload = StagedUpload(token="t0")
    stream = _archive(
        _member("d", tarfile.DIRTYPE),
        _member("/d/f"),  # tar drops the leading '/'
        _member("./d/same", tarfile.LNKTYPE, "d/f"),
        _member("d/passwd", tarfile.LNKTYPE, "etc/passwd"),  # not in the upload
        _member("d/up", tarfile.SYMTYPE, "../x"),  # a link's target is the container's
    )
    hidden = f"{STAGE_MARK}t0"
    assert _rewritten(upload, stream + b"\0" * 20_000) == [
        ("d", "", None),
        (f"d/.f{hidden}", "", b"data"),
        (f"d/.same{hidden}", f"d/.f{hidden}", None),
        (f"d/.passwd{hidden}", "etc/passwd", None),
        (f"d/.up{hidden}", "../x", None),
    ]
    assert list(upload.staged) == ["d/f", "d/same", "d/passwd", "d/up"]


@pytest.mark.parametrize("name", ["../x", "d/../../x", "/.."])
def test_a_member_that_climbs_out_is_refused(name: str) -> None:
    with pytest.raises(UploadRefusedError, match="climbs out"):
        _rewritten(StagedUpload(), _archive(_member(name)))


def _pax_named(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    member = _member("x", kind)
    member.pax_headers = {"path": name, **({"linkpath": link} if link else {})}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(member)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "stream", [_pax_named("a\0b"), _pax_named("h", tarfile.LNKTYPE, "a\0b")], ids=["name", "link"]
)
def test_a_member_named_with_a_nul_byte_is_refused(stream: bytes) -> None:
    """A pax path may hold one: kukeond's discard of its staged name was a ValueError that
    ended the cp with no status (HEAD)."""
    with pytest.raises(UploadRefusedError, match="has a NUL byte in its name"):
        _rewritten(StagedUpload(), stream)


def test_a_stream_that_is_not_tar_is_refused() -> None:
    with pytest.raises(UploadRefusedError, match="not a tar archive"):
        _rewritten(StagedUpload(), b"no tar here\n")


def _pax_member(headers: dict[str, str], data: bytes = b"x") -> bytes:
    member = _member("f")
    member.size, member.pax_headers = len(data), headers
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"mtime": "nan"}, "NaN"),
        ({"mtime": "1e400"}, "infinity"),
        ({"GNU.sparse.map": "a,b", "GNU.sparse.size": "10"}, "invalid literal"),
    ],
    ids=["mtime-nan", "mtime-inf", "sparse-map"],
)
def test_a_header_value_tarfile_cannot_convert_is_refused(
    headers: dict[str, str], why: str
) -> None:
    """tarfile raises ValueError and OverflowError of its own for these, not its TarError:
    the rewriting thread ended with them and the copy closed with no status (HEAD)."""
    with pytest.raises(UploadRefusedError, match=f"not a tar archive kukeond can read: .*{why}"):
        _rewritten(StagedUpload(), _pax_member(headers))


def _root(tmp_path: Path) -> int:
    return os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)


def test_commit_renames_and_discard_removes_inside_the_root_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "srv").mkdir(parents=True)
    outside.mkdir()
    # A link that, followed from the host, would leave the root: in it, it names /srv.
    (root / "srv" / "up").symlink_to(str(outside))
    (root / "srv" / "abs").symlink_to("/srv")
    (root / "srv" / "f").write_text("old")
    (root / "srv" / ".f.h").write_text("new")
    (root / "srv" / ".g.h").write_text("g")
    (root / "srv" / ".kept.h").write_text("k")
    fd = _root(root)
    try:
        directory = ContainerDirectory(fd, "/srv")
        directory.commit({"abs/f": "abs/.f.h", "../../srv/g": "../../srv/.g.h"}, {".": 1000})
        assert (root / "srv").stat().st_mtime == 1000  # as tar set it before the renames
        assert (root / "srv" / "f").read_text() == "new"
        assert (root / "srv" / "g").read_text() == "g"
        directory.discard({"kept": ".kept.h", "never": ".never.h"})
        assert sorted(p.name for p in (root / "srv").iterdir()) == ["abs", "f", "g", "up"]
        (outside / ".x.h").write_text("outside")
        directory.commit({"up/x": "up/.x.h"}, {})  # no /outside in the root: nothing staged
        directory.discard({"up/x": "up/.x.h"})
        assert [p.name for p in outside.iterdir()] == [".x.h"]
        (root / "srv" / "dir").mkdir()
        (root / "srv" / ".dir.h").write_text("a file onto a directory")
        with pytest.raises(CommitError, match="dir: Is a directory"):
            directory.commit({"dir": ".dir.h", "f": ".f.h"}, {})
        assert not (root / "srv" / ".dir.h").exists()  # removed, the directory kept
        assert (root / "srv" / "dir").is_dir()
    finally:
        os.close(fd)


def test_a_sticky_directory_keeps_another_owners_file(tmp_path: Path) -> None:
    require_root()  # to give the files owners; a failure under CI=true, not a skip
    sticky = tmp_path / "tmp"
    sticky.mkdir(mode=0o1777)
    sticky.chmod(0o1777)
    (sticky / "theirs").write_text("theirs")
    os.chown(sticky / "theirs", 1001, 1001)
    (sticky / ".theirs.h").write_text("mine")
    os.chown(sticky / ".theirs.h", 1002, 1002)
    fd = _root(tmp_path)
    try:
        with pytest.raises(CommitError, match="another user's file in a sticky directory"):
            ContainerDirectory(fd, "/tmp").commit({"theirs": ".theirs.h"}, {})
    finally:
        os.close(fd)
    assert (sticky / "theirs").read_text() == "theirs"
    assert not (sticky / ".theirs.h").exists()


def _long_name_chain(count: int) -> bytes:
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, 0
    return header.tobuf(tarfile.GNU_FORMAT) * count + _archive(_member("f"))


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        # tarfile reads a long name's member by recursion: a RecursionError on HEAD.
        (_long_name_chain(3000), "more than 8 long names or pax headers in a row"),
        # read whole into kukeond's memory on HEAD (~3 times what was sent).
        (_archive(_member("n" * 2 * 1024 * 1024)), "a long name or pax header of"),
    ],
    ids=["long-name-chain", "huge-long-name"],
)
def test_headers_past_their_bounds_are_refused(stream: bytes, why: str) -> None:
    with pytest.raises(UploadRefusedError, match=why):
        StagedUpload(token="t").rewrite(io.BytesIO(stream), io.BytesIO(), CHUNK)


def test_no_header_is_kept_once_passed() -> None:
    """tarfile kept every member it read and wrote (~1 KB each, for the whole copy)."""
    count = 1000
    stream = _archive(*(_member(f"f{number}") for number in range(count)))
    with open_stream_tar(io.BytesIO(stream), "r|", bufsize=CHUNK) as reading:
        assert sum(1 for _ in reading) == count
        assert reading.getmembers() == []
    with open_stream_tar(io.BytesIO(), "w|", bufsize=CHUNK) as writing:
        writing.addfile(_member("d", tarfile.DIRTYPE))
        assert writing.getmembers() == []
    upload = StagedUpload(token="t")
    assert len(_rewritten(upload, stream)) == count  # what cp writes: every member


def test_a_copy_put_inside_an_existing_directory_is_renamed_under_it() -> None:
    """``moved``: the copy ``dst`` (as kukectl packs it, named for its destination) goes
    to ``dst/site``; a hard link to one of its files follows it, one to a file already in
    the container does not; a member outside the copy is refused."""
    upload = StagedUpload(token="t0", moved=("dst", "dst/site"))
    stream = _archive(
        _member("dst", tarfile.DIRTYPE),
        _member("./dst/f"),
        _member("dst/same", tarfile.LNKTYPE, "dst/f"),
        _member("dst/passwd", tarfile.LNKTYPE, "etc/passwd"),
    )
    hidden = f"{STAGE_MARK}t0"
    assert _rewritten(upload, stream) == [
        ("dst/site", "", None),
        (f"dst/site/.f{hidden}", "", b"data"),
        (f"dst/site/.same{hidden}", f"dst/site/.f{hidden}", None),
        (f"dst/site/.passwd{hidden}", "etc/passwd", None),
    ]
    assert list(upload.directories) == ["dst/site"]
    one_file = StagedUpload(token="t1", moved=("f", "f/run.sh"))
    assert _rewritten(one_file, _archive(_member("f"))) == [
        (f"f/.run.sh{STAGE_MARK}t1", "", b"data")
    ]
    assert list(one_file.staged) == ["f/run.sh"]
    for outside in ("dstx/f", "other", "."):
        with pytest.raises(UploadRefusedError, match="is not under 'dst', the copy"):
            _rewritten(StagedUpload(moved=("dst", "dst")), _archive(_member(outside)))


def test_whether_the_destination_is_a_directory_is_seen_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    host_only = tmp_path / "host-only"  # a directory on the host, none in the root
    host_only.mkdir()
    (root / "srv" / "dir").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "srv" / "file").write_text("f")
    (root / "srv" / "to-data").symlink_to("/data")
    (root / "srv" / "up-data").symlink_to("../../../../../../data")
    (root / "srv" / "out").symlink_to(str(host_only))
    (root / "srv" / "loop").symlink_to("loop")
    fd = _root(root)
    try:
        directory = ContainerDirectory(fd, "/srv")
        seen = {
            name: directory.is_directory(name)
            for name in ("dir", "file", "none", "to-data", "up-data", "out", "loop")
        }
    finally:
        os.close(fd)
    assert seen == {
        "dir": True,
        "file": False,
        "none": False,
        "to-data": True,
        "up-data": True,  # '..' stops at the root, as in the container
        "out": False,  # the host's directory is not the container's
        "loop": False,
    }
