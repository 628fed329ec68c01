"""``nulldevice``: a created task's /dev/null, looked at inside its root, must be 1:3.

The root is a directory here (``open_root`` replaced): what the check resolves is resolved
in it, as in a container's root, so a link to an absolute path reads the file of that name
under the root, never the host's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kukeon.runtime.bindpins import BindSourceRefusedError
from kukeon.runtime.containerd import nulldevice
from kukeon.runtime.containerd.nulldevice import (
    NullDeviceReplacedError,
    null_device_problem,
    replaced_null_device,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod(2) of a device needs root")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dev").mkdir()
    monkeypatch.setattr(
        nulldevice, "open_root", lambda _pid: os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    )
    return tmp_path


@needs_root
def test_the_null_device_passes(root: Path) -> None:
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert null_device_problem(1) is None


@needs_root
def test_another_device_is_named_with_its_numbers(root: Path) -> None:
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    assert (null_device_problem(1) or "").startswith("a character device 1:5, which runc bound")


def test_a_link_is_followed_inside_the_root_only(root: Path) -> None:
    # The host's /etc/hostname is a file too; what is read is the root's own.
    (root / "etc").mkdir()
    (root / "etc" / "hostname").mkdir()
    (root / "dev" / "null").symlink_to("/etc/hostname")
    assert (null_device_problem(1) or "").startswith("a directory, which runc bound")
    (root / "dev" / "null").unlink()
    (root / "dev" / "null").symlink_to("../../../../proc/sys/kernel/core_pattern")
    assert (null_device_problem(1) or "").startswith("missing")  # not the host's sysctl


def test_a_regular_file_or_none_is_a_problem(root: Path) -> None:
    assert (null_device_problem(1) or "").startswith("missing, so runc left the masked paths")
    (root / "dev" / "null").write_text("")
    assert (null_device_problem(1) or "").startswith("a regular file, which runc bound")


def test_a_link_loop_is_a_problem(root: Path) -> None:
    (root / "dev" / "null").symlink_to("/proc/self/fd/0")
    (root / "proc" / "self" / "fd").mkdir(parents=True)
    (root / "proc" / "self" / "fd" / "0").symlink_to("/dev/null")  # back again: no device
    assert (null_device_problem(1) or "").startswith("unusable (Too many levels")


def test_a_process_gone_is_no_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(_pid: int) -> int:
        raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(nulldevice, "open_root", gone)
    assert null_device_problem(1) is None


def test_the_failure_is_a_refused_bind_naming_the_container() -> None:
    error = replaced_null_device("app", "a regular file, which runc bound ...")
    assert isinstance(error, NullDeviceReplacedError)
    assert isinstance(error, BindSourceRefusedError)  # the cell's reason: BindSourceRefused
    assert str(error).startswith("container app: its /dev/null is a regular file")
