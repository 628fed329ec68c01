"""`hostUsers: false` shifts an image's files to the realm's ids however deep the image
nests them: `shift_tree` walked with `os.walk`, which recurses once a level in Python 3.11,
so an image 1,100 directories deep raised RecursionError and its cell's passes failed with
`UnexpectedError ... RecursionError` for ever. A file the walk cannot reach (a path past the
host's PATH_MAX) is a RemapError naming it, which the cell's status says; `os.walk` passed
over a directory it could not list without a word."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kukeon.api import CellState
from kukeon.controllers.cellfailures import classify_build_failure
from kukeon.framework import TemporaryError
from kukeon.runtime.containerd.remap import RemapError, shift_tree
from kukeon.runtime.idranges import IdRange

RANGE = IdRange(0x73000000)


@contextmanager
def nested(root: Path, name: str, depth: int) -> Iterator[None]:
    """``depth`` directories ``name`` one in the other under ``root``, a file ``end`` at the
    bottom; made and removed through descriptors (a path may pass PATH_MAX, and a recursive
    removal would meet the same limit as the walk did)."""
    opened = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=opened[-1])
            opened.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=opened[-1]))
        os.close(os.open("end", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=opened[-1]))
        yield
    finally:  # the deepest first: the file, then each directory from its parent's descriptor
        with contextlib.suppress(FileNotFoundError):
            os.unlink("end", dir_fd=opened[-1])
        for parent, inner in zip(reversed(opened[:-1]), reversed(opened[1:]), strict=True):
            os.close(inner)
            os.rmdir(name, dir_fd=parent)
        os.close(opened[0])


def _owner_at_the_bottom(root: Path, name: str, depth: int) -> tuple[int, int]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        info = os.stat("end", dir_fd=fd, follow_symlinks=False)
        return info.st_uid, info.st_gid
    finally:
        os.close(fd)


def test_an_image_1100_directories_deep_is_shifted_whole(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    with nested(tmp_path, "a", 1100):
        assert shift_tree(tmp_path, RANGE) == 1101  # every directory and the file
        assert _owner_at_the_bottom(tmp_path, "a", 1100) == (RANGE.base, RANGE.base)
        assert shift_tree(tmp_path, RANGE) == 1101  # again: idempotent
        assert os.lstat(tmp_path).st_uid == RANGE.base


def test_a_file_past_path_max_is_a_remap_error_naming_it(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    with nested(tmp_path, "d" * 200, 25), pytest.raises(RemapError) as refused:
        shift_tree(tmp_path, RANGE)  # 25 x 201 characters: past PATH_MAX (4096)
    message = str(refused.value)
    assert message.startswith(f"the image's file /{'d' * 59}...")
    assert "directories deep) could not be shifted to the user namespace's ids: " in message
    assert message.endswith("File name too long")


def test_a_remap_error_is_the_cells_status() -> None:
    state, reason, retry = classify_build_failure(RemapError("the image's file /x ..."))
    assert (state, reason, retry) == (CellState.FAILED, "UserNamespaceUnavailable", TemporaryError)
