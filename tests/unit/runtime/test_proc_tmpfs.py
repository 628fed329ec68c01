"""A tmpfs inside the container's /proc masks a directory the kernel makes there: the
node refuses, naming the field, one its own /proc has no directory for (the container's is
made by the same kernel), as runc would fail the start. Before, `kukectl run --tmpfs
/proc/uptime` (or /proc/scsi on a kernel without SCSI) was stored and left the cell Pending
with reason UnexpectedError and runc's words, retried for ever.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.runtime.containerd.mounts import container_mounts
from kukeon.runtime.containerd.specerrors import FieldError
from tests.unit.runtime.test_spec import make_container


@pytest.fixture
def host_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "acpi").mkdir()
    (proc / "uptime").write_text("1 1\n")
    (proc / "sys" / "kernel" / "hostname").write_text("h\n")
    (proc / "mounts").symlink_to("self/mounts")
    return proc


def _mounts(host_proc: Path, **fields: object) -> list[dict[str, object]]:
    return container_mounts(
        make_container(**fields),
        secret_files={},
        tty_state_dir=None,
        cell_files={},
        host_proc=host_proc,
    )


@pytest.mark.parametrize("path", ["/proc/sys", "/proc/acpi", "/proc/sys/kernel"])
def test_a_tmpfs_over_a_directory_of_proc_is_made(host_proc: Path, path: str) -> None:
    mounts = _mounts(host_proc, tmpfs=[{"path": path}])
    assert [m for m in mounts if m["destination"] == path and m["type"] == "tmpfs"]


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("/proc/uptime", "a file"),
        ("/proc/sys/kernel/hostname", "a file"),
        ("/proc/scsi", "nothing"),
        ("/proc/sys/nonexistent", "nothing"),
        ("/proc/mounts", "a link"),
    ],
)
def test_a_tmpfs_where_the_nodes_proc_has_no_directory_is_refused(
    host_proc: Path, path: str, found: str
) -> None:
    with pytest.raises(FieldError) as refused:
        _mounts(host_proc, tmpfs=[{"path": path}])
    assert refused.value.field == "tmpfs[0].path"
    assert f"this node's /proc has {found} there" in refused.value.reason
    with pytest.raises(FieldError) as refused:
        _mounts(host_proc, volumes=[{"kind": "tmpfs", "target": path}])
    assert refused.value.field == "volumes[0].target"


def test_binds_and_mounts_outside_proc_are_not_looked_at(host_proc: Path) -> None:
    # runc binds lxcfs's files over these (a file over a file): not a tmpfs.
    _mounts(host_proc, volumes=[{"source": "/srv/lxcfs/proc/uptime", "target": "/proc/uptime"}])
    _mounts(host_proc, tmpfs=[{"path": "/procedure"}, {"path": "/data"}])
