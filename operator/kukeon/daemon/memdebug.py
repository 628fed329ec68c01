"""What grew in kukeond's heap: tracemalloc reports written on SIGUSR2.

Started with ``PYTHONTRACEMALLOC=<frames>`` in its environment, kukeond traces its
allocations (slower, and the traces take memory of their own). Each SIGUSR2 then writes
``<state-dir>/tracemalloc-<n>.txt`` (mode 0600): the 30 sources of allocation that grew
most since the previous SIGUSR2 (the first report: the 30 largest since the start), grouped
by line and by traceback, and the object types whose count grew. The path is logged.
Without tracing the signal is logged and ignored; nothing is ever traced or kept otherwise.

The snapshot and the comparison run in a worker thread, so the event loop keeps going (more
slowly) while a report is written.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

TOP = 30
IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


@dataclass
class HeapReports:
    """The reports of one kukeond: the previous snapshot and object counts, and a number."""

    directory: Path
    top: int = TOP
    written: int = 0
    previous: tracemalloc.Snapshot | None = None
    previous_types: Counter[str] = field(default_factory=Counter)

    def write(self) -> Path | None:
        """Write the next report; None when tracemalloc is not tracing."""
        if not tracemalloc.is_tracing():
            return None
        snapshot = tracemalloc.take_snapshot().filter_traces(IGNORED)
        types = Counter(type(thing).__qualname__ for thing in gc.get_objects())
        self.written += 1
        path = self.directory / f"tracemalloc-{self.written}.txt"
        text = self.render(snapshot, types)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as report:
            report.write(text)
        self.previous, self.previous_types = snapshot, types
        return path

    def render(self, snapshot: tracemalloc.Snapshot, types: Counter[str]) -> str:
        current, peak = tracemalloc.get_traced_memory()
        since = "the previous report" if self.previous is not None else "tracing started"
        lines = [
            f"kukeond tracemalloc report {self.written} (pid {os.getpid()}), since {since}",
            f"traced now {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, "
            f"tracemalloc's own {tracemalloc.get_tracemalloc_memory() / 2**20:.1f} MiB, "
            f"{sum(types.values())} objects tracked by gc",
            "",
        ]
        for grouping in ("lineno", "traceback"):
            lines += [f"== top {self.top} by {grouping} ==", ""]
            if self.previous is None:
                for stat in snapshot.statistics(grouping)[: self.top]:
                    lines += [f"{stat.size / 1024:.1f} KiB in {stat.count} blocks"]
                    lines += _frames(stat.traceback, grouping)
            else:
                for diff in snapshot.compare_to(self.previous, grouping)[: self.top]:
                    lines += [
                        f"{diff.size_diff / 1024:+.1f} KiB ({diff.size / 1024:.1f} KiB), "
                        f"{diff.count_diff:+d} blocks ({diff.count})"
                    ]
                    lines += _frames(diff.traceback, grouping)
        grown = types.copy()
        grown.subtract(self.previous_types)
        lines += ["== object types, most grown (count now, change) ==", ""]
        for name, change in grown.most_common(self.top):
            lines.append(f"{types[name]:>9} {change:+9d}  {name}")
        return "\n".join(lines) + "\n"


def _frames(traceback: tracemalloc.Traceback, grouping: str) -> list[str]:
    """File and line of each frame, the allocation's first; no source text (reading it
    would fill linecache, and the next report would show that as growth)."""
    frames = list(reversed(traceback))  # tracemalloc keeps the oldest frame first
    if grouping == "lineno":
        frames = frames[:1]
    lines = [f"    {frame.filename}:{frame.lineno}" for frame in frames]
    return lines if grouping == "lineno" else [*lines, ""]


def install(loop: asyncio.AbstractEventLoop, state_dir: Path) -> Callable[[], None]:
    """Write a heap report on every SIGUSR2; returns the function that uninstalls it."""
    reports = HeapReports(state_dir)
    running: set[asyncio.Task[None]] = set()

    async def report() -> None:
        if not tracemalloc.is_tracing():
            log.info("SIGUSR2: tracemalloc is not tracing (start kukeond with PYTHONTRACEMALLOC)")
            return
        try:
            path = await asyncio.to_thread(reports.write)
        except Exception:
            log.exception("writing the tracemalloc report failed")
        else:
            log.info("tracemalloc report written to %s", path)

    def requested() -> None:
        if running:
            log.info("SIGUSR2: a tracemalloc report is already being written")
            return
        task = loop.create_task(report())
        running.add(task)
        task.add_done_callback(running.discard)

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGUSR2)

    loop.add_signal_handler(signal.SIGUSR2, requested)
    return uninstall
