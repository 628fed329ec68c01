"""Modes of what kukeond writes: every created level, log files, the start-up narrowing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kukeon.controllers.cellfiles import container_readable
from kukeon.runtime.hostfiles import (
    DIR_MODE,
    LOG_FILE_MODE,
    create_log_file,
    make_dirs,
    narrow_tree,
    write_private_text,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_make_dirs_gives_every_created_level_its_mode_whatever_the_umask(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir(mode=0o755)
    os.chmod(tmp_path / "kept", 0o755)
    previous = os.umask(0o077)
    try:
        make_dirs(tmp_path / "kept" / "a" / "b" / "c")
        make_dirs(tmp_path / "kept" / "a", 0o700)  # exists: left as it is
    finally:
        os.umask(previous)
    assert mode(tmp_path / "kept") == 0o755
    for level in ("a", "a/b", "a/b/c"):
        assert mode(tmp_path / "kept" / level) == DIR_MODE, level


def test_make_dirs_sets_no_mode_through_a_link_swapped_in_after_its_mkdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a directory another account may write, the new directory can be renamed away and
    a link to any directory put in its place between the mkdir and the chmod."""
    host = tmp_path / "host-etc"
    host.mkdir(mode=0o755)
    host.chmod(0o755)
    made = tmp_path / "theirs" / "state"
    made.parent.mkdir()
    real_mkdir = os.mkdir

    def mkdir_then_swapped(path: os.PathLike[str] | str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        os.rename(path, f"{os.fspath(path)}.moved")  # what the directory's owner may do
        os.symlink(host, path)

    monkeypatch.setattr(os, "mkdir", mkdir_then_swapped)
    with pytest.raises(OSError, match="Not a directory"):
        make_dirs(made)
    assert mode(host) == 0o755  # before: 0o750, the chmod followed the link


def test_create_log_file_makes_it_0640_and_narrows_an_older_wider_one(tmp_path: Path) -> None:
    fresh = tmp_path / "cells" / "logs" / "c.log"
    previous = os.umask(0)
    try:
        create_log_file(fresh)
    finally:
        os.umask(previous)
    assert mode(fresh) == LOG_FILE_MODE
    assert mode(fresh.parent) == DIR_MODE

    older = tmp_path / "older.log"
    older.write_text("kept\n")
    older.chmod(0o666)
    create_log_file(older)
    assert mode(older) == LOG_FILE_MODE
    assert older.read_text() == "kept\n"  # appended to, never truncated


def test_write_private_text_replaces_the_file_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_text("old")
    target.chmod(0o644)
    write_private_text(target, "new")
    assert target.read_text() == "new"
    assert mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_narrow_tree_narrows_what_an_older_version_left_and_keeps_container_files(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    cell = state / "cells" / "r" / "s" / "st" / "c"
    tty_run = cell / "tty" / "sh" / "run"
    tty_run.mkdir(parents=True)
    (cell / "logs").mkdir()
    files = {
        cell / "logs" / "app.log": 0o644,
        cell / "hosts": 0o644,
        cell / "hostname": 0o644,
        cell / "resolv.conf": 0o644,
        tty_run / "created": 0o644,  # the container's own file
        state / "network" / "subnets.json": 0o666,
    }
    for path, wanted in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        path.chmod(wanted)
    fifo = cell / "tty" / "sh" / "stdin"
    os.mkfifo(fifo, 0o622)
    os.chmod(fifo, 0o622)
    (state / "link").symlink_to("/etc/passwd")
    for directory in [state, *state.rglob("*")]:
        if directory.is_dir() and not directory.is_symlink():
            directory.chmod(0o777)
    passwd_mode = mode(Path("/etc/passwd"))

    changed = narrow_tree(state, keep=container_readable)

    assert changed > 0
    assert mode(cell / "logs" / "app.log") == 0o640
    assert mode(state / "network" / "subnets.json") == 0o640
    assert mode(cell / "hosts") == mode(cell / "hostname") == 0o644
    assert mode(cell / "resolv.conf") == 0o644
    assert mode(tty_run / "created") == 0o644
    assert mode(fifo) == 0o622  # only regular files and directories
    assert mode(Path("/etc/passwd")) == passwd_mode  # symlinks are not followed
    for directory in [state, *state.rglob("*")]:
        if directory.is_dir() and not directory.is_symlink():
            assert mode(directory) == 0o750, directory
    assert narrow_tree(state, keep=container_readable) == 0


def test_container_readable_names_the_bind_mounted_files_only() -> None:
    cell = Path("cells/r/s/st/c")
    assert container_readable(cell / "hosts")
    assert container_readable(cell / "hostname")
    assert container_readable(cell / "resolv.conf")
    assert container_readable(cell / "node-hosts")  # a hostNetwork container's
    assert container_readable(cell / "node-hostname")
    assert container_readable(cell / "tty" / "sh" / "run" / "created")
    assert not container_readable(cell / "tty" / "sh" / "run")
    assert not container_readable(cell / "tty" / "sh" / "stdin")
    assert not container_readable(cell / "logs" / "hosts")
    assert not container_readable(cell / "secrets" / "app" / "token")
    assert not container_readable(Path("cells/r/s/st/hosts"))
    assert not container_readable(Path("network/hosts"))
