"""Fixtures for the cgroup integration tests: the real hierarchies of this host.

Every test gets its own kukeon root ``/kukeon-test-<random>`` (other helpers' tests, and
their containerd tasks, share these hierarchies), and its finalizer removes that root in
every mounted hierarchy even when the test failed: first through the driver, then, if
anything survived, by killing what is left and rmdir-ing leaf first by hand.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kukeon.runtime.cgroups import (
    CgroupMode,
    CgroupMounts,
    CgroupV1Driver,
    CgroupV2Driver,
    open_driver,
    read_cgroup_mounts,
)
from tests.fixtures.hostleaks import own_cgroup_root
from tests.fixtures.services import require_binary, require_root, unavailable


def all_mounts(mounts: CgroupMounts) -> list[Path]:
    found = [hierarchy.mount_point for hierarchy in mounts.v1]
    if mounts.unified is not None:
        found.append(mounts.unified)
    return found


def leftovers(mounts: CgroupMounts, root: str) -> list[Path]:
    """Every directory of ``root`` still present in any mounted hierarchy."""
    found: list[Path] = []
    for mount in all_mounts(mounts):
        top = mount / root.strip("/")
        if top.exists():
            found.extend(Path(path) for path, _, _ in os.walk(top))
    return found


def force_cleanup(mounts: CgroupMounts, root: str) -> None:
    """Last resort after a failed test: kill and rmdir by hand, deepest first."""
    for mount in all_mounts(mounts):
        top = mount / root.strip("/")
        if not top.exists():
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(Path(entry[0]).parts)):
            with contextlib.suppress(OSError):
                for line in (Path(directory) / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(line), signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def new_root() -> str:
    root = f"/kukeon-test-{secrets.token_hex(4)}"
    own_cgroup_root(root)
    return root


@pytest.fixture
def host_mounts() -> CgroupMounts:
    require_root()
    return read_cgroup_mounts()


@dataclass
class V1Setup:
    driver: CgroupV1Driver
    mounts: CgroupMounts
    root: str


@pytest.fixture
async def v1(host_mounts: CgroupMounts) -> AsyncIterator[V1Setup]:
    if host_mounts.mode is CgroupMode.UNIFIED:
        unavailable("this host has no cgroup v1 controller hierarchy (unified only)")
    root = new_root()
    driver = open_driver(root=root, kill_timeout=10.0)
    assert isinstance(driver, CgroupV1Driver)
    try:
        yield V1Setup(driver=driver, mounts=host_mounts, root=root)
    finally:
        try:
            await driver.remove_root()
        finally:
            force_cleanup(host_mounts, root)


@dataclass
class V2Setup:
    driver: CgroupV2Driver
    mounts: CgroupMounts
    root: str
    offered: frozenset[str]


@pytest.fixture
async def v2(host_mounts: CgroupMounts) -> AsyncIterator[V2Setup]:
    if host_mounts.unified is None:
        unavailable("this host has no cgroup2 mount")
        raise AssertionError("unreachable")
    fs_root = host_mounts.unified
    subtree_control = fs_root / "cgroup.subtree_control"
    before = set(subtree_control.read_text().split())
    root = new_root()
    driver = open_driver(root=root, mode=CgroupMode.UNIFIED, fs_root=fs_root, kill_timeout=10.0)
    assert isinstance(driver, CgroupV2Driver)
    offered = frozenset((fs_root / "cgroup.controllers").read_text().split())
    try:
        yield V2Setup(driver=driver, mounts=host_mounts, root=root, offered=offered)
    finally:
        try:
            await driver.remove_root()
        finally:
            force_cleanup(host_mounts, root)
            # undo what the nested-cell test enabled on the host's cgroup2 root; another
            # cgroup may have started using it meanwhile (EBUSY), then it stays
            added = set(subtree_control.read_text().split()) - before
            for controller in added:
                with contextlib.suppress(OSError):
                    subtree_control.write_text(f"-{controller}")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process for the drivers to place and kill."""
    sleep = require_binary("sleep", "coreutils")
    process = subprocess.Popen([sleep, "1000"])
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.fixture
def forker() -> Iterator[subprocess.Popen[bytes]]:
    """A shell that, once a line arrives on its stdin, forks a ``sleep`` every 10 ms.

    It waits for the line so the test can move it into a cgroup first: children forked
    before the move would stay where the shell started.
    """
    shell = require_binary("sh", "dash")
    process = subprocess.Popen(
        [shell, "-c", "read go; while :; do sleep 100 & sleep 0.01; done"],
        stdin=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdin is not None:
            process.stdin.close()


def start_forking(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None
    process.stdin.write(b"go\n")
    process.stdin.flush()
