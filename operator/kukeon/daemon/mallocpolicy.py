"""Giving the free pages of glibc's heaps back to the kernel (``malloc_trim``, issue 18).

CPython takes every object over 512 bytes (dict and list tables, long strings) from glibc's
malloc, as grpc and protobuf take their buffers. glibc keeps what was freed: a free chunk
between live ones, and the free pages of the other threads' arenas, stay in kukeond's RSS
until ``malloc_trim(0)`` gives them back (``madvise(MADV_DONTNEED)`` on each free page).
kukeond calls it after each of its periodic full collections (``gcpolicy``): 1-3.5 MiB
each time, in about a millisecond (docs/benchmarks/memory-idle.md); and once a burst that
its young sweeps collected a lot of garbage from is over (0.2-0.9 MiB, under a ms).

After each trim kukeond also reads what glibc holds (:func:`held`, ``mallinfo2``): bytes in
live blocks, bytes free inside its heaps, bytes in blocks mmapped on their own. The full
collection's log line says them, so a soak tells an RssAnon that creeps because glibc holds
more live blocks (C code's allocations: tracemalloc sees Python's only) from one that
creeps because its heaps are fragmented (free bytes between live ones, on pages that stay).
:func:`arenas` says the same per arena (``malloc_info``).

Each thread that allocates also gets an arena of its own, up to 8 per core (kukeond has
~20 threads during a start burst: asyncio's default executor, the host and program pools,
grpc's), and each arena keeps its own free pages. So kukeond, at start and before its
threads do (:func:`cap_arenas`), caps them at ``ARENA_MAX``: the main thread keeps glibc's
main arena, and glibc hands the other threads the two arenas in turn (about half of them
share the main thread's). A block also crosses arenas: freed by another thread, it waits in
that thread's cache (tcache) for its next malloc of that size. ``malloc_trim`` gives back
the free pages inside both arenas but shrinks only the main arena's top: the other
arena's top chunk (its free end) keeps its pages until a free there finds it over the trim
threshold, which glibc raises to twice the largest mmapped block freed so far (up to
64 MiB). The thresholds stay glibc's: fixing them as well made the API server slower
(docs/benchmarks/memory-idle.md). A variable of glibc's own in kukeond's environment
(``MALLOC_ARENA_MAX``, ``GLIBC_TUNABLES``, ...) leaves malloc as the operator set it. Not
glibc (musl): both do nothing (``trim`` returns None).
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

STATUS = Path("/proc/self/status")
M_ARENA_MAX: Final = -8  # mallopt's parameter (glibc's malloc.h)
ARENA_MAX: Final = 2
OPERATOR_SETTINGS: Final = (
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
    "MALLOC_ARENA_TEST",
)
"""glibc's own environment variables: when one is set, ``cap_arenas`` leaves malloc as it is."""


@dataclass(frozen=True)
class Held:
    """What glibc's malloc holds in all its arenas (``mallinfo2``)."""

    in_use_kib: int
    """In live blocks inside its heaps (``uordblks``)."""
    free_kib: int
    """Free inside its heaps, kept for reuse (``fordblks``); a trim gives back only the
    whole pages of it, so what stays is fragmentation."""
    mmapped_kib: int
    """In blocks mmapped on their own (``hblkhd``): freed straight back to the kernel."""


@dataclass(frozen=True)
class ArenaHeld:
    """One arena as ``malloc_info`` describes it (0: the main thread's; the others: the
    arena the other threads share)."""

    number: int
    system_kib: int
    """What the arena took from the kernel (its heaps' size, trimmed pages included)."""
    free_kib: int
    """In its free chunks, the pages a trim gave back included."""
    free_chunks: int

    @property
    def in_use_kib(self) -> int:
        """In live blocks, those a thread's cache (tcache) keeps for reuse included."""
        return self.system_kib - self.free_kib


@dataclass(frozen=True)
class Trimmed:
    """What one ``malloc_trim(0)`` gave back (RssAnon: the process's anonymous pages)."""

    anon_before_kib: int
    anon_after_kib: int
    seconds: float
    held: Held | None = None
    """What glibc held right after it (None: no ``mallinfo2``)."""

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


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # glibc's struct mallinfo2 (2.33+), every field a size_t
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc before 2.33
        return None
    function.argtypes = []
    function.restype = _MallInfo2
    found: Callable[[], _MallInfo2] = function
    return found


def _stdio() -> tuple[Callable[..., int], Callable[..., int], Callable[..., int]] | None:
    """open_memstream, malloc_info and fclose (None: not all of them, not glibc)."""
    try:
        libc = ctypes.CDLL(None)
        open_memstream, malloc_info, fclose = libc.open_memstream, libc.malloc_info, libc.fclose
    except (OSError, AttributeError):
        return None
    open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    open_memstream.restype = ctypes.c_void_p
    malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    malloc_info.restype = ctypes.c_int
    fclose.argtypes = [ctypes.c_void_p]
    fclose.restype = ctypes.c_int
    return open_memstream, malloc_info, fclose


_MALLOC_TRIM = _libc_function("malloc_trim", [ctypes.c_size_t])
_FREE = _libc_function("free", [ctypes.c_void_p])
_MALLOC_INFO = _stdio()
_MALLINFO2 = _mallinfo2()
_MALLOPT = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])


def cap_arenas() -> bool:
    """Cap glibc's arenas at ``ARENA_MAX`` (see the module); False if not set."""
    chosen = [name for name in OPERATOR_SETTINGS if name in os.environ]
    if chosen:
        log.info("malloc's arenas left as the environment sets them (%s)", ", ".join(chosen))
        return False
    return _MALLOPT is not None and _MALLOPT(M_ARENA_MAX, ARENA_MAX) == 1


def rss_anon_kib() -> int:
    """The process's resident anonymous memory (``RssAnon``), 0 where /proc has none."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def held() -> Held | None:
    """What glibc's malloc holds now (every arena: ``mallinfo2`` locks each in turn, a few
    microseconds); None without it."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return Held(info.uordblks // 1024, info.fordblks // 1024, info.hblkhd // 1024)


def arenas() -> tuple[ArenaHeld, ...] | None:
    """Each arena's size, free bytes and free chunks (``malloc_info``: it locks each arena
    in turn and walks its free lists, about a millisecond); None without it."""
    if _MALLOC_INFO is None or _FREE is None:
        return None
    open_memstream, malloc_info, fclose = _MALLOC_INFO
    buffer, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        return None
    written = malloc_info(0, stream)
    fclose(stream)  # sets buffer and size
    try:
        text = ctypes.string_at(buffer, size.value) if buffer.value else b""
    finally:
        _FREE(buffer)
    return _parse_malloc_info(text) if written == 0 else None


def _parse_malloc_info(text: bytes) -> tuple[ArenaHeld, ...]:
    """One ``ArenaHeld`` per ``<heap>``; its free bytes are the fast bins' and the rest's
    (the top chunk among them)."""
    found: list[ArenaHeld] = []
    for heap in ElementTree.fromstring(text).iter("heap"):
        free = [
            element for element in heap.iter("total") if element.get("type") in ("fast", "rest")
        ]
        system = next(
            (element for element in heap.iter("system") if element.get("type") == "current"),
            None,
        )
        found.append(
            ArenaHeld(
                number=int(heap.get("nr", len(found))),
                system_kib=int(system.get("size", 0) if system is not None else 0) // 1024,
                free_kib=sum(int(element.get("size", 0)) for element in free) // 1024,
                free_chunks=sum(int(element.get("count", 0)) for element in free),
            )
        )
    return tuple(found)


def trim() -> Trimmed | None:
    """``malloc_trim(0)``, with what it gave back, what it took and what glibc holds
    after it; None without glibc."""
    if _MALLOC_TRIM is None:
        return None
    before = rss_anon_kib()
    started = time.perf_counter()
    _MALLOC_TRIM(0)
    took = time.perf_counter() - started
    return Trimmed(before, rss_anon_kib(), took, held())
