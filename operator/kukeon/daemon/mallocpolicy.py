"""Giving the free pages of glibc's heaps back to the kernel (``malloc_trim``, issue 18).

CPython takes every object over 512 bytes (dict and list tables, long strings) from glibc's
malloc, as grpc and protobuf take their buffers. glibc keeps what was freed: a free chunk
between live ones, and the free pages of the other threads' arenas, stay in kukeond's RSS
until ``malloc_trim(0)`` gives them back (``madvise(MADV_DONTNEED)`` on each free page).
kukeond calls it after each of its periodic full collections (``gcpolicy``): 1-3.5 MiB
each time, in about a millisecond (docs/benchmarks/memory-idle.md); and once a burst that
its young sweeps collected a lot of garbage from is over (0.2-0.9 MiB, under a ms).

Capping the arenas (``M_ARENA_MAX``) and fixing the mmap and trim thresholds saved 2-3 MiB
more, but the API server ran slower with both set (docs/benchmarks/memory-idle.md): not
done. Not glibc (musl): ``trim`` returns None.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class Trimmed:
    """What one ``malloc_trim(0)`` gave back (RssAnon: the process's anonymous pages)."""

    anon_before_kib: int
    anon_after_kib: int
    seconds: float

    @property
    def released_mib(self) -> float:
        return (self.anon_before_kib - self.anon_after_kib) / 1024


def _libc_function(name: str, argtypes: list[type]) -> Callable[..., int] | None:
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    found: Callable[..., int] = function
    return found


_MALLOC_TRIM = _libc_function("malloc_trim", [ctypes.c_size_t])


def rss_anon_kib() -> int:
    """The process's resident anonymous memory (``RssAnon``), 0 where /proc has none."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def trim() -> Trimmed | None:
    """``malloc_trim(0)``, with what it gave back and what it took; None without glibc."""
    if _MALLOC_TRIM is None:
        return None
    before = rss_anon_kib()
    started = time.perf_counter()
    _MALLOC_TRIM(0)
    took = time.perf_counter() - started
    return Trimmed(before, rss_anon_kib(), took)
