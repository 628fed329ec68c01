"""What a node observes of its host for its Node document: the capacity it registers
(CPUs, memory, cgroup mode, containerd and runc versions, CNI plugins), its addresses and
API endpoint, and the conditions each heartbeat writes (MemoryPressure, DiskPressure,
RuntimeUnavailable). Read by ``node.NodeAgent``; nothing here writes to etcd."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from kukeon.api import NodeAddress, NodeCondition, NodeResources
from kukeon.api.node import DISK_PRESSURE, RUNTIME_UNAVAILABLE
from kukeon.processes import run_program
from kukeon.runtime.cgroups import detect_cgroup_mode
from kukeon.runtime.containerd.client import ContainerdClient, patience

from .config import DaemonConfig

_REQUEST_TIMEOUT = 5.0
RUNTIME_CHECK_SECONDS = 3.0
"""How long a heartbeat waits for containerd's answer before it says containerd is unreachable."""
MEMORY_PRESSURE_FRACTION = 0.05
"""MemoryPressure when less than this share of the host's memory is available."""
DISK_PRESSURE_FRACTION = 0.05
DISK_PRESSURE_BYTES = 1 << 30
"""DiskPressure when the state directory's filesystem has less than this share of its size
free and less than this many bytes (a large disk is not under pressure at 95 %), or less
than this share of its inodes."""


def disk_pressure_reserve(size: int) -> int:
    """The free bytes below which a filesystem of ``size`` bytes is under DiskPressure; an
    image unpack leaves this much free in the snapshotter's (``layersize.UnpackLimits``)."""
    return min(math.ceil(size * DISK_PRESSURE_FRACTION), DISK_PRESSURE_BYTES)


def disk_pressure_inode_reserve(files: int) -> int:
    """The free inodes below which a filesystem of ``files`` inodes is under DiskPressure;
    an image unpack leaves this many free in the snapshotter's."""
    return math.ceil(files * DISK_PRESSURE_FRACTION)


def read_meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """``/proc/meminfo`` in bytes (``MemTotal``, ``MemAvailable``...)."""
    values: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            factor = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[name.strip()] = int(parts[0]) * factor
    return values


def cni_plugins(dirs: tuple[Path, ...]) -> list[str]:
    found: set[str] = set()
    for directory in dirs:
        with contextlib.suppress(OSError):
            for entry in directory.iterdir():
                if entry.is_file() and os.access(entry, os.X_OK):
                    found.add(entry.name)
    return sorted(found)


async def runc_version() -> str | None:
    """The first line's version of ``runc --version`` (None when runc is not found)."""
    try:
        async with asyncio.timeout(_REQUEST_TIMEOUT):
            finished = await run_program(["runc", "--version"])
    except (OSError, TimeoutError):
        return None
    first = finished.stdout.decode(errors="replace").splitlines()[:1]
    if not first:
        return None
    words = first[0].split()
    return words[-1] if words else None


def node_addresses(config: DaemonConfig) -> list[NodeAddress]:
    addresses = [NodeAddress(type="Hostname", address=socket.gethostname())]
    host = (config.api_address or "").rpartition(":")[0].strip("[]")
    if host and host not in ("0.0.0.0", "::"):
        addresses.append(NodeAddress(type="InternalIP", address=host))
        return addresses
    # The address the host would use to reach the outside; no packet is sent.
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        addresses.append(NodeAddress(type="InternalIP", address=probe.getsockname()[0]))
    return addresses


def configured_api_port(config: DaemonConfig) -> int | None:
    port = (config.api_address or "").rpartition(":")[2]
    return int(port) if port.isdigit() and int(port) > 0 else None


def api_endpoint(addresses: list[NodeAddress], port: int | None) -> str | None:
    """``https://<InternalIP>:<port>`` of the node's TCP API (None without a listener)."""
    if port is None:
        return None
    for address in addresses:
        if address.type == "InternalIP":
            host = f"[{address.address}]" if ":" in address.address else address.address
            return f"https://{host}:{port}"
    return None


async def read_capacity(config: DaemonConfig, containerd: ContainerdClient | None) -> NodeResources:
    meminfo = await asyncio.to_thread(read_meminfo)
    try:
        cgroup_mode: str | None = str(await asyncio.to_thread(detect_cgroup_mode))
    except Exception:  # a host without cgroups still registers; the mode stays unknown
        cgroup_mode = None
    containerd_version = None
    if containerd is not None:
        with contextlib.suppress(Exception):
            containerd_version = (await containerd.version()).version
    return NodeResources(
        cpus=os.cpu_count() or 0,
        memory_bytes=meminfo.get("MemTotal", 0),
        cgroup_mode=cgroup_mode,
        containerd_version=containerd_version,
        runc_version=await runc_version(),
        cni_plugins=await asyncio.to_thread(cni_plugins, config.cni_bin_dirs),
    )


def memory_condition(now: datetime) -> NodeCondition:
    meminfo = read_meminfo()
    total, available = meminfo.get("MemTotal", 0), meminfo.get("MemAvailable", 0)
    pressure = bool(total) and available < total * MEMORY_PRESSURE_FRACTION
    return NodeCondition(
        type="MemoryPressure",
        status="True" if pressure else "False",
        reason="LowMemory" if pressure else "SufficientMemory",
        message=f"{available} of {total} bytes available",
        last_transition_time=now,
    )


def disk_condition(
    path: Path, now: datetime, statvfs: Callable[[Path], os.statvfs_result] = os.statvfs
) -> NodeCondition:
    """Whether ``path``'s filesystem (kukeond's state: logs, leases, an embedded etcd) has
    room; blocking (a stat of a filesystem), run in a thread."""
    try:
        found = statvfs(path)
    except OSError as error:
        return NodeCondition(
            type=DISK_PRESSURE,
            status="Unknown",
            reason="DiskUnobservable",
            message=f"statvfs {path}: {error.strerror or error}",
            last_transition_time=now,
        )
    size, free = found.f_blocks * found.f_frsize, found.f_bavail * found.f_frsize
    low_space = free < disk_pressure_reserve(size)
    low_inodes = found.f_files > 0 and found.f_favail < disk_pressure_inode_reserve(found.f_files)
    pressure = low_space or low_inodes
    inodes = f"{found.f_favail} of {found.f_files} inodes"
    return NodeCondition(
        type=DISK_PRESSURE,
        status="True" if pressure else "False",
        reason="LowDisk" if pressure else "SufficientDisk",
        message=f"{free} of {size} bytes and {inodes} free in {path}"
        + (": no new cell is placed here" if pressure else ""),
        last_transition_time=now,
    )


async def runtime_condition(containerd: ContainerdClient, now: datetime) -> NodeCondition:
    """Whether containerd answers (its version, within ``RUNTIME_CHECK_SECONDS``)."""
    try:
        with patience(RUNTIME_CHECK_SECONDS):
            async with asyncio.timeout(RUNTIME_CHECK_SECONDS):
                version = await containerd.version()
    except asyncio.CancelledError:
        raise
    except Exception as error:
        why = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return NodeCondition(
            type=RUNTIME_UNAVAILABLE,
            status="True",
            reason="ContainerdUnreachable",
            message=(
                f"containerd does not answer ({why[:300]}): cells run on, but none is "
                "started, stopped or observed here"
            ),
            last_transition_time=now,
        )
    return NodeCondition(
        type=RUNTIME_UNAVAILABLE,
        status="False",
        reason="ContainerdReachable",
        message=f"containerd {version.version} answers",
        last_transition_time=now,
    )
