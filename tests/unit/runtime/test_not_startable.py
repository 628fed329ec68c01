"""runc's refusals to exec a command, told apart from host faults."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.runtime.containerd.errors import (
    RootfsUnreachableError,
    closed_rootfs_ancestor,
    not_startable_reason,
    program_named,
)

PREFIX = "failed to create shim task: OCI runtime create failed: runc create failed: "
PREFIX += "unable to start container process: "


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        (PREFIX + 'exec: "nosuch": executable file not found in $PATH: unknown', "CommandNotFound"),
        (
            PREFIX + 'exec: "/nonexistent": stat /nonexistent: no such file or directory: unknown',
            "CommandNotFound",
        ),
        (
            PREFIX + 'exec: "/etc/passwd/x": stat /etc/passwd/x: not a directory: unknown',
            "CommandNotFound",
        ),
        (
            PREFIX + 'exec: "/a": stat /a: too many levels of symbolic links: unknown',
            "CommandNotFound",
        ),
        (
            PREFIX + "error during container init: mkdir /etc/passwd: not a directory: unknown",
            "WorkingDirUnusable",
        ),
        (
            PREFIX + "error during container init: mkdir /work: read-only file system: unknown",
            "WorkingDirUnusable",
        ),
        (
            PREFIX + 'error during container init: error mounting "/x" to rootfs at "/etc/'
            'passwd/y": mkdir /etc/passwd: not a directory: unknown',
            None,
        ),
        (
            # A whole shell line as the program (docker-compose's habit), with quotes in it:
            # runc quotes the program as Go's %q does, `"` as `\"`.
            PREFIX + 'exec: "sh -c \'echo \\"hi\\" > /www/x\'": '
            "stat sh -c 'echo \"hi\" > /www/x': no such file or directory: unknown",
            "CommandNotFound",
        ),
        (PREFIX + 'exec: "/a\\\\b\\"c": permission denied: unknown', "CommandNotExecutable"),
        (PREFIX + 'exec: "/etc": is a directory: unknown', "CommandNotExecutable"),
        (PREFIX + 'exec: "/etc/passwd": permission denied: unknown', "CommandNotExecutable"),
        ("exec /bin/app: exec format error", "CommandNotExecutable"),
        ("failed to mount rootfs component: no such file or directory", None),
        ("connection refused", None),
        (PREFIX + "error during container init: open /dev/ptmx: no such file or directory", None),
    ],
)
def test_reason(detail: str, reason: str | None) -> None:
    assert not_startable_reason(detail) == reason


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may search, under /tmp (pytest's own tmp_path lies under a
    0700 directory, which would be the answer to every question below)."""
    directory = Path(tempfile.mkdtemp(prefix="kukeon-rootfs-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def _rootfs_refusal(rootfs: Path) -> str:
    return (
        PREFIX + f"error during container init: error preparing rootfs: mount {rootfs}:{rootfs}, "
        "flags: 0x5000: permission denied: unknown"
    )


def test_a_rootfs_under_a_directory_closed_to_others_names_that_directory(
    open_dir: Path,
) -> None:
    """A user-namespace container's rootfs is mounted from inside its namespace: the
    top-most directory above it that others cannot search is what to fix (seen with a
    containerd whose state lay under a 0700 directory)."""
    closed = open_dir / "state"
    rootfs = closed / "io.containerd.runtime.v2.task" / "ns" / "c" / "rootfs"
    rootfs.mkdir(parents=True)
    closed.chmod(0o700)
    assert closed_rootfs_ancestor(_rootfs_refusal(rootfs)) == (closed, 0o700)
    error = RootfsUnreachableError(
        container_id="c", closed=closed, mode=0o700, detail=_rootfs_refusal(rootfs)
    )
    assert f"{closed} (mode 0700) is not searchable by other users" in str(error)


def test_a_rootfs_refusal_with_every_directory_open_is_left_as_it_is(open_dir: Path) -> None:
    rootfs = open_dir / "open" / "rootfs"
    rootfs.mkdir(parents=True)
    rootfs.parent.chmod(0o711)
    assert closed_rootfs_ancestor(_rootfs_refusal(rootfs)) is None
    assert closed_rootfs_ancestor("error preparing rootfs: no such file or directory") is None
    assert closed_rootfs_ancestor(PREFIX + 'exec: "/etc/passwd": permission denied') is None


@pytest.mark.parametrize(
    ("detail", "program"),
    [
        (PREFIX + 'exec: "nosuch": executable file not found in $PATH: unknown', "nosuch"),
        (PREFIX + 'exec: "sh -c \'echo \\"hi\\"\'": stat sh: no such file', "sh -c 'echo \"hi\"'"),
        (PREFIX + 'exec: "/a\\\\b": permission denied: unknown', "/a\\b"),
        (PREFIX + 'exec: "/bad\\x80": permission denied: unknown', "/bad\\x80"),
        ("connection refused", None),
    ],
)
def test_the_program_runc_names(detail: str, program: str | None) -> None:
    assert program_named(detail) == program
