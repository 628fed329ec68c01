"""runc's refusals to exec a command, told apart from host faults."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import CellState
from kukeon.controllers.cellexec import InitOomKilledError, refused_spec_error
from kukeon.controllers.cellfailures import classify_build_failure
from kukeon.framework import TemporaryError
from kukeon.runtime.containerd.errors import (
    RootfsUnreachableError,
    closed_rootfs_ancestor,
    not_startable_reason,
    program_named,
    spec_refusal,
)
from tests.unit.runtime.test_spec import make_container

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


# runc's refusals of a value only the node can judge, seen on a private kukeond (runc 1.1.5,
# kernel 6.18): the cell's UnexpectedError before, retried for ever.
MEMORY_REFUSAL = (
    PREFIX + "error during container init: error setting cgroup config for procHooks "
    "process: unable to set memory limit to 1048576 (current usage: 2371584, peak usage: "
    "2502656): unknown"
)
TMPFS_REFUSAL = (
    PREFIX + 'error during container init: error mounting "tmpfs" to rootfs at "/t": mount '
    "tmpfs:/t (via /proc/self/fd/6), flags: 0xe, data: mpol=bind:7: invalid argument: unknown"
)


def test_a_memory_limit_runc_could_not_set_is_named_with_its_numbers() -> None:
    refused = spec_refusal("c", MEMORY_REFUSAL)
    assert refused is not None
    assert (refused.setting, refused.numbers) == ("memory", (1048576, 2371584, 2502656))
    error = refused_spec_error(make_container(resources={"memoryLimitBytes": 1048576}), refused)
    assert error.field == "resources.memoryLimitBytes"
    assert "already used 2371584 bytes" in error.reason


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (
            {"tmpfs": [{"path": "/a"}, {"path": "/t/", "options": ["mpol=bind:7"]}]},
            "tmpfs[1].options",
        ),
        ({"volumes": [{"kind": "tmpfs", "target": "/t"}]}, "volumes[0]"),
        ({}, "tmpfs"),  # a mount point no field names (runc's quoting): the kind at least
    ],
)
def test_a_tmpfs_the_kernel_refused_is_named_by_its_field(
    fields: dict[str, Any], field: str
) -> None:
    refused = spec_refusal("c", TMPFS_REFUSAL)
    assert refused is not None
    assert (refused.setting, refused.target, refused.data) == ("tmpfs", "/t", "mpol=bind:7")
    error = refused_spec_error(make_container(**fields), refused)
    assert error.field == field
    assert "'mpol=bind:7'" in error.reason


@pytest.mark.parametrize(
    "detail",
    [
        PREFIX + 'exec: "nosuch": executable file not found in $PATH: unknown',
        PREFIX + 'error mounting "/srv" to rootfs at "/t": mount /srv:/t: no such device: unknown',
        "connection refused",
    ],
)
def test_other_refusals_are_not_taken_for_a_value(detail: str) -> None:
    assert spec_refusal("c", detail) is None


def test_an_init_oom_killed_is_retried_naming_both_limits() -> None:
    detail = PREFIX + "container init was OOM-killed (memory limit too low?): unknown"
    refused = spec_refusal("c", detail)
    assert refused is not None
    assert refused.setting == "oom"
    own = InitOomKilledError(make_container(resources={"memoryLimitBytes": 6 << 20}), refused)
    assert "resources.memoryLimitBytes 6291456" in str(own)
    assert "spec.limits.memoryBytes" in str(own)
    state, reason, retry = classify_build_failure(own)
    assert (state, reason, retry) == (CellState.FAILED, "OOMKilled", TemporaryError)
    none = InitOomKilledError(make_container(), refused)
    assert "no resources.memoryLimitBytes" in str(none)
