"""The host's own usage figures, for ``kukectl top nodes``: CPUs, CPU time, memory, load.

Read from ``/proc`` (``stat``, ``meminfo``, ``loadavg``) with plain blocking reads: call
:func:`read_host_usage` through ``asyncio.to_thread``. The CPU time is cumulative (like a
cgroup's), so a rate needs two readings; every other figure is a current value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# /proc/stat's first line counts in USER_HZ ticks (100 on every Linux ABI kukeon runs on)
_USER_HZ = os.sysconf("SC_CLK_TCK")
# user nice system idle iowait irq softirq steal (guest time is already in user and nice)
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True, slots=True)
class HostUsage:
    cpus: int
    """CPUs this host runs work on (the online CPUs of kukeond's affinity mask)."""
    cpu_usage_seconds: float
    """CPU time spent busy (not idle, not waiting for I/O) on every CPU since boot."""
    memory_total_bytes: int
    memory_available_bytes: int
    """``MemAvailable``: what can be had without swapping (free plus reclaimable cache)."""
    load_average: tuple[float, float, float]
    """The 1, 5 and 15 minute load averages."""

    @property
    def memory_used_bytes(self) -> int:
        return max(0, self.memory_total_bytes - self.memory_available_bytes)


def parse_cpu_seconds(stat: str) -> float:
    """Busy CPU seconds of the aggregate ``cpu`` line of ``/proc/stat``."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(value) for value in fields[1:]]
            return sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks)) / _USER_HZ
    raise ValueError("/proc/stat has no aggregate cpu line")


def parse_meminfo(meminfo: str) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes from ``/proc/meminfo``."""
    values: dict[str, int] = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[name.strip()] = int(parts[0]) * scale
    try:
        return values["MemTotal"], values["MemAvailable"]
    except KeyError as error:
        raise ValueError(f"/proc/meminfo has no {error.args[0]}") from None


def parse_loadavg(loadavg: str) -> tuple[float, float, float]:
    one, five, fifteen = (float(value) for value in loadavg.split()[:3])
    return one, five, fifteen


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def read_host_usage(proc: Path = PROC) -> HostUsage:
    """The current figures (blocking reads of ``/proc``)."""
    total, available = parse_meminfo((proc / "meminfo").read_text())
    return HostUsage(
        cpus=_cpu_count(),
        cpu_usage_seconds=parse_cpu_seconds((proc / "stat").read_text()),
        memory_total_bytes=total,
        memory_available_bytes=available,
        load_average=parse_loadavg((proc / "loadavg").read_text()),
    )
