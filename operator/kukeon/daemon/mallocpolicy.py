"""kukeond's settings of glibc's malloc, and giving its free pages back (issue 18).

CPython takes every object over 512 bytes (dict and list tables, long strings) from glibc's
malloc, as grpc and protobuf take their buffers. glibc keeps what was freed:

- each thread that allocates gets an arena of its own, up to 8 per core (kukeond has
  ~20 threads under load: the default executor's, the host and program pools', grpc's),
  and a page freed in one arena serves only that arena's threads;
- a block of ``M_MMAP_THRESHOLD`` or more is mapped on its own and unmapped when freed, but
  each such free raises the threshold (up to 32 MiB) and with it ``M_TRIM_THRESHOLD``, how
  much free memory the top of the heap may hold before glibc gives it back;
- nothing of a free chunk between live ones goes back until ``malloc_trim``.

So kukeond, at start (:func:`tune`), caps the arenas at ``ARENA_MAX`` and fixes both
thresholds at glibc's initial 128 KiB (no drift), and after each of its periodic full
collections (``gcpolicy``) calls ``malloc_trim(0)`` (:func:`trim`), which gives every free
page of every arena back (``madvise(MADV_DONTNEED)``). The figures, with the load and the
cost in time, are in docs/benchmarks/memory-idle.md. A variable of glibc's own in
kukeond's environment (``MALLOC_ARENA_MAX``, ``GLIBC_TUNABLES``, ...) leaves its settings
as the operator chose.

Not glibc (musl): both do nothing (``trim`` returns None).
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

STATUS = Path("/proc/self/status")
# mallopt's parameters (glibc's malloc.h).
M_TRIM_THRESHOLD: Final = -1
M_MMAP_THRESHOLD: Final = -3
M_ARENA_MAX: Final = -8
ARENA_MAX: Final = 2
THRESHOLD_BYTES: Final = 128 << 10
OPERATOR_SETTINGS: Final = (
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
    "MALLOC_ARENA_TEST",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
)
"""glibc's own environment variables: when one is set, ``tune`` leaves malloc as it is."""


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
_MALLOPT = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])


def tune() -> bool:
    """Cap the arenas, fix the thresholds (see the module); False if nothing was set."""
    chosen = [name for name in OPERATOR_SETTINGS if name in os.environ]
    if chosen:
        log.info("malloc left as the environment sets it (%s)", ", ".join(chosen))
        return False
    if _MALLOPT is None:
        return False
    settings = (
        (M_ARENA_MAX, ARENA_MAX),
        (M_MMAP_THRESHOLD, THRESHOLD_BYTES),
        (M_TRIM_THRESHOLD, THRESHOLD_BYTES),
    )
    return all(_MALLOPT(parameter, value) == 1 for parameter, value in settings)


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
