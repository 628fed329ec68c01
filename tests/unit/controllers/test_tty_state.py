"""The tty wrapper's state directory on the host: owned by the container's user, and its
create marker dropped exactly when the container's spec digest changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kukeon.controllers.cellfiles import CellFiles, prepare_tty_state
from kukeon.runtime.containerd.ttyinit import CREATE_MARKER


@pytest.fixture
def files(tmp_path: Path) -> CellFiles:
    return CellFiles(tmp_path, ("r", "s", "st", "c"))


async def test_the_marker_lives_as_long_as_the_spec(files: CellFiles) -> None:
    uid, gid = os.getuid(), os.getgid()
    state = files.tty_state("sh")
    await prepare_tty_state(files, "sh", digest="aaaa", uid=uid, gid=gid)
    assert state.is_dir()
    assert state == files.directory / "tty" / "sh" / "run"
    (state / CREATE_MARKER).write_text("done\n")
    (state / "wrapper.log").write_text("kept\n")
    # task restarts, kukectl restart, a kukeond restart: the same spec keeps the marker
    await prepare_tty_state(files, "sh", digest="aaaa", uid=uid, gid=gid)
    assert (state / CREATE_MARKER).exists()
    # a new spec re-creates the container: its create stages are due again
    await prepare_tty_state(files, "sh", digest="bbbb", uid=uid, gid=gid)
    assert not (state / CREATE_MARKER).exists()
    assert (state / "wrapper.log").read_text() == "kept\n"
    assert files.tty_state_digest("sh").read_text() == "bbbb\n"
    await files.remove()
    assert not state.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
async def test_owned_by_the_containers_user(files: CellFiles) -> None:
    await prepare_tty_state(files, "app", digest="d", uid=1000, gid=1001)
    info = files.tty_state("app").stat()
    assert (info.st_uid, info.st_gid) == (1000, 1001)
    # the digest file stays kukeond's, out of the container's reach
    assert files.tty_state_digest("app").stat().st_uid == 0
