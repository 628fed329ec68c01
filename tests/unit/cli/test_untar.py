"""kukectl cp's unpacking of what a container sends: hostile tar streams never write outside
the destination (kubectl's cp CVEs: absolute and ``..`` names, symbolic links planted to be
written through, links pointing out, hard links to host files, devices)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from kukeon.cli.untar import (
    UnsafeArchiveError,
    container_target,
    extract,
    local_target,
    member_parts,
)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 1_700_000_000
    return info, data


def _dir(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


class _Run:
    def __init__(self, tmp: Path) -> None:
        self.outside = tmp / "outside"
        self.outside.mkdir()
        (self.outside / "victim").write_text("precious")
        self.base = tmp / "base"
        self.base.mkdir()
        self.dest = self.base / "out"
        self.warnings: list[str] = []

    def extract(self, data: bytes, top: str = "top") -> int:
        report = extract(io.BytesIO(data), top=top, dest=self.dest, warn=self.warnings.append)
        return report.written

    def untouched(self) -> None:
        assert sorted(p.name for p in self.outside.iterdir()) == ["victim"]
        assert (self.outside / "victim").read_text() == "precious"
        assert sorted(p.name for p in self.base.parent.iterdir()) == ["base", "outside"]
        assert [p.name for p in self.base.iterdir()] in ([], ["out"])


@pytest.fixture
def r(tmp_path: Path) -> _Run:
    return _Run(tmp_path)


def test_a_directory_is_copied_with_its_modes_links_and_times(r: _Run) -> None:
    data = _tar(
        _dir("top/", 0o750),
        _file("top/run.sh", b"#!/bin/sh\n", 0o755),
        _file("top/secret", b"s", 0o600),
        _file("top/suid", b"u", 0o4755),
        _dir("top/ro", 0o555),
        _file("top/ro/inside", b"i", 0o444),
        _link("top/ro/up", "../run.sh"),
        _link("top/hard", "top/secret", tarfile.LNKTYPE),
    )
    assert r.extract(data) == 8

    def mode(name: str) -> int:
        return stat.S_IMODE(os.lstat(r.dest / name).st_mode)

    assert mode(".") == 0o750
    assert mode("run.sh") == 0o755
    assert mode("secret") == 0o600
    assert mode("suid") == 0o755  # setuid is dropped
    assert mode("ro") == 0o555  # set last: its file was written first
    assert (r.dest / "ro" / "inside").read_bytes() == b"i"
    assert os.readlink(r.dest / "ro" / "up") == "../run.sh"
    assert os.stat(r.dest / "hard").st_ino == os.stat(r.dest / "secret").st_ino
    assert os.stat(r.dest / "run.sh").st_mtime == 1_700_000_000
    assert r.warnings == []
    os.chmod(r.dest / "ro", 0o755)


def test_a_single_file_becomes_the_destination(r: _Run) -> None:
    assert r.extract(_tar(_file("hosts", b"127.0.0.1 localhost\n", 0o640)), top="hosts") == 1
    assert r.dest.read_bytes() == b"127.0.0.1 localhost\n"
    assert stat.S_IMODE(r.dest.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "top/../../outside/victim",
        "../outside/victim",
        "top/./../../x",
        "other/file",  # not what was asked for
        "topx/file",
    ],
)
def test_names_outside_the_destination_stop_the_copy(r: _Run, name: str) -> None:
    with pytest.raises(UnsafeArchiveError):
        r.extract(_tar(_dir("top/"), _file(name, b"pwned")))
    r.untouched()


def test_an_absolute_name_in_a_pax_header_stops_the_copy(r: _Run) -> None:
    long_name = "/" + "a" * 200 + "/victim"  # longer than ustar's field: written as PAX
    with pytest.raises(UnsafeArchiveError):
        r.extract(_tar(_dir("top/"), _file(long_name), fmt=tarfile.PAX_FORMAT))
    r.untouched()


def test_a_planted_symlink_is_skipped_and_never_written_through(r: _Run) -> None:
    data = _tar(
        _dir("top/"),
        _link("top/escape", str(r.outside)),
        _link("top/rel", "../../outside"),
        _file("top/escape/victim", b"pwned"),
    )
    r.extract(data)
    r.untouched()
    assert not (r.dest / "escape").is_symlink()
    assert (r.dest / "escape" / "victim").read_bytes() == b"pwned"  # inside, as a directory
    assert not (r.dest / "rel").exists()
    assert len(r.warnings) == 2
    assert all("points outside the destination" in w for w in r.warnings)


def test_a_symlink_going_up_through_another_link_is_skipped(r: _Run) -> None:
    # a/s -> .. is the destination itself (kept); x -> a/s/../outside/victim counts as
    # inside component by component, but through a/s it is the destination's parent's.
    data = _tar(
        _dir("top/"),
        _dir("top/a"),
        _link("top/a/s", ".."),
        _link("top/x", "a/s/../../outside/victim"),
        _link("top/y", "a/s/.."),
        _link("top/up", "a/../a/s"),
    )
    r.extract(data)
    assert os.readlink(r.dest / "a" / "s") == ".."
    for name in ("x", "y", "up"):
        assert not (r.dest / name).is_symlink()
    assert len(r.warnings) == 3
    assert all("goes up ('..') after a name" in w for w in r.warnings)
    r.untouched()


def test_an_inside_symlink_is_not_written_through_either(r: _Run) -> None:
    data = _tar(_dir("top/"), _dir("top/sub"), _link("top/l", "sub"), _file("top/l/f"))
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        r.extract(data)
    assert not (r.dest / "sub" / "f").exists()


def test_a_symlink_already_in_the_destination_is_not_followed(r: _Run) -> None:
    r.dest.mkdir()
    (r.dest / "link").symlink_to(r.outside)
    (r.dest / "victim").symlink_to(r.outside / "victim")
    with pytest.raises(UnsafeArchiveError):
        r.extract(_tar(_dir("top/"), _file("top/link/victim", b"pwned")))
    r.untouched()
    r.extract(_tar(_dir("top/"), _file("top/victim", b"replaced")))
    assert not (r.dest / "victim").is_symlink()  # the link is replaced, not followed
    assert (r.dest / "victim").read_bytes() == b"replaced"
    r.untouched()


def test_a_source_that_is_a_symlink_is_refused(r: _Run) -> None:
    data = _tar(_link("top", str(r.outside / "victim")))
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        r.extract(data)  # the path asked for is itself a link
    r.untouched()


@pytest.mark.parametrize(
    "target", ["/etc/passwd", "top/../../outside/victim", "top/never-written", "other"]
)
def test_hard_links_to_anything_but_a_copied_file_are_skipped(r: _Run, target: str) -> None:
    r.extract(_tar(_dir("top/"), _link("top/h", target, tarfile.LNKTYPE)))
    assert not (r.dest / "h").exists()
    assert r.warnings
    assert "hard link" in r.warnings[0]
    r.untouched()


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_and_fifos_are_skipped(r: _Run, kind: bytes) -> None:
    info = tarfile.TarInfo("top/dev")
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    r.extract(_tar(_dir("top/"), (info, None), _file("top/ok")))
    assert not (r.dest / "dev").exists()
    assert (r.dest / "ok").exists()
    assert "top/dev" in r.warnings[0]


def test_member_parts() -> None:
    assert member_parts("top", "top") == []
    assert member_parts("./top//a/./b/", "top") == ["a", "b"]
    for bad in ("/top/a", "top/../a", "top/a\x00b", "tops/a", ""):
        with pytest.raises(UnsafeArchiveError):
            member_parts(bad, "top")


def test_targets(tmp_path: Path) -> None:
    assert local_target(tmp_path, "hosts") == tmp_path / "hosts"
    assert local_target(tmp_path / "new", "hosts") == tmp_path / "new"
    # Inside DEST when it says it is a directory; else DEST, or inside it should kukeond
    # find it one in the container (the name it is given).
    assert container_target("/tmp/", "site") == ("/tmp/site", None)
    assert container_target("/", "site") == ("/site", None)
    assert container_target(".", "site") == ("./site", None)
    assert container_target("a/..", "site") == ("a/../site", None)
    assert container_target("/tmp/site2", "site") == ("/tmp/site2", "site")
    assert container_target("srv/dst", "site") == ("srv/dst", "site")


def test_a_directory_does_not_replace_a_file_given_as_the_destination(r: _Run) -> None:
    r.dest.write_text("mine")
    with pytest.raises(NotADirectoryError):
        r.extract(_tar(_dir("top/"), _file("top/f")))
    assert r.dest.read_text() == "mine"


@pytest.mark.parametrize(
    ("umask", "tmp_mode", "file_mode"), [(0o022, 0o755, 0o644), (0, 0o777, 0o666)]
)
def test_modes_lose_what_the_umask_clears(
    r: _Run, umask: int, tmp_mode: int, file_mode: int
) -> None:
    # A container's /tmp (1777) and a 0666 file: with kukectl's umask 022 nothing comes out
    # that every local user may write to (the sticky bit is dropped, so 0777 would let
    # anyone replace what the copy wrote).
    data = _tar(_dir("top/", 0o1777), _file("top/shared", b"s", 0o666))
    before = os.umask(umask)
    try:
        assert r.extract(data) == 2
    finally:
        os.umask(before)
    assert stat.S_IMODE(os.lstat(r.dest).st_mode) == tmp_mode
    assert stat.S_IMODE(os.lstat(r.dest / "shared").st_mode) == file_mode
