"""``nulldevice``: what runc made of a created task's masked paths and output.

The container's root is a directory here (``open_root`` replaced): what the check resolves
is resolved in it, as in a container's root, so a link to an absolute path reads the file
of that name under the root, never the host's. The output is a real process's."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
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
MASKED = ("/proc/kcore", "/proc/acpi", "/proc/not-on-this-kernel")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "proc" / "acpi").mkdir(parents=True)
    monkeypatch.setattr(
        nulldevice, "open_root", lambda _pid: os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    )
    return tmp_path


@pytest.fixture
def piped() -> Iterator[int]:
    """A process whose stdin is /dev/null and whose output is pipes, as a task's init."""
    with subprocess.Popen(
        ["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        try:
            yield process.pid
        finally:
            process.kill()


def _mask_with_null(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))


def _read_only_acpi(root: Path) -> None:
    # An empty read-only directory, as runc's tmpfs over a directory: a read-only bind.
    acpi = str(root / "proc" / "acpi")
    subprocess.run(["mount", "--bind", acpi, acpi], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", acpi, acpi], check=True)


@needs_root
def test_masks_as_runc_makes_them_pass(root: Path, piped: int) -> None:
    _mask_with_null(root / "proc" / "kcore")
    _read_only_acpi(root)
    try:
        assert null_device_problem(piped, MASKED) is None
    finally:
        subprocess.run(["umount", str(root / "proc" / "acpi")], check=True)


@needs_root
def test_a_writable_or_full_directory_is_not_masked(root: Path, piped: int) -> None:
    _mask_with_null(root / "proc" / "kcore")
    assert null_device_problem(piped, MASKED) == "/proc/acpi is a directory, not masked"


@needs_root
def test_another_device_is_named_with_its_numbers(root: Path, piped: int) -> None:
    os.mknod(root / "proc" / "kcore", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    problem = null_device_problem(piped, MASKED)
    assert problem == "/proc/kcore is a character device 1:5, not masked"


def test_a_file_bound_from_a_link_is_not_masked(root: Path, piped: int) -> None:
    (root / "proc" / "kcore").write_text("|/proc/%P/root/payload\n")  # what runc bound
    assert null_device_problem(piped, MASKED) == "/proc/kcore is a regular file, not masked"


def test_links_are_followed_inside_the_root_only(root: Path, piped: int) -> None:
    (root / "proc" / "kcore").symlink_to("/etc/hostname")  # the root's, not the host's
    (root / "etc").mkdir()
    (root / "etc" / "hostname").mkdir()
    assert null_device_problem(piped, ("/proc/kcore",)) == "/proc/kcore is a directory, not masked"


def test_a_link_loop_is_a_problem(root: Path, piped: int) -> None:
    (root / "proc" / "kcore").symlink_to("/proc/kcore")
    problem = null_device_problem(piped, ("/proc/kcore",)) or ""
    assert problem.startswith("/proc/kcore is unusable (Too many levels")


def test_output_reopened_on_a_file_is_a_problem(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "core_pattern"
    with (
        out.open("w") as file,
        subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, stdout=file) as process,
    ):
        try:
            problem = null_device_problem(process.pid, ())
        finally:
            process.kill()
    assert problem == "its stdout is a regular file, reopened by runc on its /dev/null"


def test_a_process_gone_is_no_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(_pid: int) -> int:
        raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(nulldevice, "open_root", gone)
    assert null_device_problem(1) is None


def test_the_failure_is_a_refused_bind_naming_the_container() -> None:
    error = replaced_null_device("app", "/proc/kcore is a regular file, not masked")
    assert isinstance(error, NullDeviceReplacedError)
    assert isinstance(error, BindSourceRefusedError)  # the cell's reason: BindSourceRefused
    assert str(error).startswith("container app: /proc/kcore is a regular file, not masked;")
