"""hostlookup: what feeds SpecContext from the host (device nodes, hard rlimits, capabilities)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from kukeon.runtime.containerd import hostlookup, spec
from kukeon.runtime.containerd.capabilities import CAPABILITY_NUMBERS
from kukeon.runtime.containerd.hostlookup import (
    RLIM_INFINITY,
    current_hard_rlimits,
    inspect_host_device,
    list_host_devices,
    own_bounding_capabilities,
    read_bounding_capabilities,
)
from kukeon.runtime.containerd.types import ImageConfig


def test_inspect_dev_null() -> None:
    device = inspect_host_device("/dev/null")
    assert device is not None
    assert (device.type, device.major, device.minor) == ("c", 1, 3)
    assert device.path == "/dev/null"
    assert device.file_mode == 0o666


def test_inspect_non_devices(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("x")
    assert inspect_host_device(str(regular)) is None
    assert inspect_host_device(str(tmp_path)) is None
    assert inspect_host_device(str(tmp_path / "missing")) is None
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    device = inspect_host_device(str(fifo))
    assert device is not None
    assert (device.type, device.major, device.minor) == ("p", 0, 0)


def test_list_host_devices_of_this_dev() -> None:
    devices = list_host_devices()
    paths = {device.path for device in devices}
    assert "/dev/null" in paths
    assert not any(path.startswith(("/dev/pts/", "/dev/shm/", "/dev/mqueue/")) for path in paths)
    assert "/dev/console" not in paths
    assert all(device.type in {"c", "b"} for device in devices)


def test_list_host_devices_skips_links_fifos_and_container_dirs(tmp_path: Path) -> None:
    (tmp_path / "pts").mkdir()
    os.mkfifo(tmp_path / "pts" / "fifo")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "null").symlink_to("/dev/null")
    (tmp_path / "regular").write_text("")
    assert list_host_devices(str(tmp_path)) == []


def test_current_hard_rlimits_match_getrlimit() -> None:
    limits = current_hard_rlimits()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = RLIM_INFINITY if hard == resource.RLIM_INFINITY else hard
    assert limits["RLIMIT_NOFILE"] == expected
    assert current_hard_rlimits(["RLIMIT_NOT_A_THING"]) == {}


def test_read_bounding_capabilities(tmp_path: Path) -> None:
    status = tmp_path / "status"
    # every capability except CAP_SYS_RESOURCE (24), as on this project's CI machine
    mask = ((1 << 41) - 1) & ~(1 << 24)
    status.write_text(f"Name:\tx\nCapInh:\t0\nCapBnd:\t{mask:016x}\n")
    available = read_bounding_capabilities(str(status))
    assert available == frozenset(CAPABILITY_NUMBERS) - {"CAP_SYS_RESOURCE"}


def test_read_bounding_capabilities_unreadable(tmp_path: Path) -> None:
    assert read_bounding_capabilities(str(tmp_path / "missing")) is None
    status = tmp_path / "status"
    status.write_text("Name:\tx\n")
    assert read_bounding_capabilities(str(status)) is None
    status.write_text("CapBnd:\tzz\n")
    assert read_bounding_capabilities(str(status)) is None


def test_read_own_bounding_set() -> None:
    available = read_bounding_capabilities()
    assert available is not None
    assert available <= frozenset(CAPABILITY_NUMBERS)


def test_own_bounding_set_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SpecContext built without available_capabilities (every reconcile's) reads no file."""
    reads: list[str] = []

    def counting(status_path: str = "/proc/self/status") -> frozenset[str] | None:
        reads.append(status_path)
        return frozenset({"CAP_CHOWN"})

    monkeypatch.setattr(hostlookup, "read_bounding_capabilities", counting)
    own_bounding_capabilities.cache_clear()
    try:
        for _ in range(3):
            context = spec.SpecContext(
                image_config=ImageConfig(cmd=("sh",)),
                container_id="c",
                hostname="h",
                cgroups_path="/c",
            )
            assert context.available_capabilities == frozenset({"CAP_CHOWN"})
        assert reads == ["/proc/self/status"]
    finally:
        own_bounding_capabilities.cache_clear()
