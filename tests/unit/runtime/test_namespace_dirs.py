"""namespacedirs: a deleted namespace's empty runc/task directories go, nothing else does."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.runtime.containerd.namespacedirs import (
    remove_empty_namespace_dirs,
    task_dirs_root,
)


def test_only_the_empty_directory_of_that_namespace_goes(tmp_path: Path) -> None:
    runc, tasks = tmp_path / "runc", tmp_path / "tasks"
    for parent in (runc, tasks):
        (parent / "r.kukeon.io").mkdir(parents=True)
        (parent / "other.kukeon.io").mkdir()
    (tasks / "r.kukeon.io" / ".c1").mkdir()  # a bundle containerd is still deleting

    removed = remove_empty_namespace_dirs("r.kukeon.io", [runc, tasks, tmp_path / "absent"])

    assert removed == [runc / "r.kukeon.io"]
    assert not (runc / "r.kukeon.io").exists()
    assert (tasks / "r.kukeon.io" / ".c1").is_dir()  # not empty: kept
    assert (runc / "other.kukeon.io").is_dir()
    assert (tasks / "other.kukeon.io").is_dir()


def test_a_link_in_the_namespace_place_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    runc = tmp_path / "runc"
    runc.mkdir()
    (runc / "r.kukeon.io").symlink_to(target)

    assert remove_empty_namespace_dirs("r.kukeon.io", [runc]) == []
    assert (runc / "r.kukeon.io").is_symlink()
    assert target.is_dir()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../runc", "a\0b"])
def test_a_name_that_is_not_one_path_component_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    with pytest.raises(ValueError, match="not a containerd namespace name"):
        remove_empty_namespace_dirs(name, [tmp_path])
    assert (tmp_path / "a" / "b").is_dir()


def test_the_task_directories_are_found_beside_the_content_store() -> None:
    assert task_dirs_root("/var/lib/containerd/io.containerd.content.v1.content") == Path(
        "/var/lib/containerd/io.containerd.runtime.v2.task"
    )
    assert task_dirs_root(None) is None
    assert task_dirs_root("/srv/proxy-content") is None  # not the local content plugin's
    assert task_dirs_root("io.containerd.content.v1.content") is None
