"""`directory_usage`: du -s (bytes and inodes) of a tree a container writes, never through
a link, at any path length, a tree nested past `MAX_DEPTH` refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kukeon.runtime.dirusage import MAX_DEPTH, TreeTooDeepError, Usage, directory_usage

MIB = 1024 * 1024


def _blocks(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


def _filled(path: Path, size: int) -> Path:
    path.write_bytes(b"x" * size)
    return path


def test_files_and_directories_are_counted_a_hard_link_once_and_no_link_followed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    first = _filled(root / "sub" / "f", MIB)
    os.link(first, root / "again")
    outside = _filled(tmp_path / "outside", 4 * MIB)
    (root / "link").symlink_to(outside)
    (root / "dirlink").symlink_to(tmp_path)
    expected = sum(_blocks(p) for p in (root, root / "sub", first, root / "link", root / "dirlink"))
    # root, sub, the file (two names), two links: five inodes
    assert directory_usage(root) == Usage(expected, 5)
    assert MIB <= expected < 2 * MIB  # the outside file, reached only by links, is not in it


def test_a_missing_root_is_nothing(tmp_path: Path) -> None:
    assert directory_usage(tmp_path / "none") == Usage(0, 0)


def test_a_tree_deeper_than_path_max_is_measured(tmp_path: Path) -> None:
    """containerd's walk, by path, fails with 'file name too long' on such a tree."""
    name = "d" * 250
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):  # 20 x 251 characters: past PATH_MAX (4096)
            os.mkdir(name, dir_fd=directory)
            below = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = below
        deepest = os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=directory)
        try:
            os.write(deepest, b"x" * (2 * MIB))
        finally:
            os.close(deepest)
    finally:
        os.close(directory)
    assert directory_usage(tmp_path).size_bytes >= 2 * MIB


def test_the_walk_stops_once_past_the_bound(tmp_path: Path) -> None:
    for index in range(4):
        _filled(tmp_path / f"f{index}", MIB)
    whole = directory_usage(tmp_path).size_bytes
    stopped = directory_usage(tmp_path, stop_above=Usage(MIB // 2, 100)).size_bytes
    assert MIB // 2 < stopped < whole


def test_empty_files_take_no_byte_but_an_inode_each(tmp_path: Path) -> None:
    """An empty file has no data block: only its inode shows what it takes."""
    for index in range(300):
        (tmp_path / f"f{index}").touch()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    measured = directory_usage(tmp_path)
    assert measured.inodes == 1 + 300 + 2
    assert measured.size_bytes == _blocks(tmp_path) + _blocks(tmp_path / "dangling")


def test_the_walk_stops_once_past_the_inode_bound(tmp_path: Path) -> None:
    for index in range(4):
        (tmp_path / f"d{index}").mkdir()
        for inner in range(50):
            (tmp_path / f"d{index}" / f"f{inner}").touch()
    assert directory_usage(tmp_path).inodes == 1 + 4 * 51
    assert directory_usage(tmp_path, stop_above=Usage(MIB, 60)).inodes == 61


def test_a_tree_nested_past_the_depth_it_walks_is_refused(tmp_path: Path) -> None:
    inside = tmp_path
    for _ in range(MAX_DEPTH):
        inside = inside / "a"
    inside.mkdir(parents=True)
    assert (
        directory_usage(tmp_path).inodes == MAX_DEPTH + 1
    )  # MAX_DEPTH levels below the root are walked
    (inside / "a").mkdir()
    with pytest.raises(TreeTooDeepError, match=f"more than {MAX_DEPTH} levels"):
        directory_usage(tmp_path)
