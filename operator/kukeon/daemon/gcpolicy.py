"""kukeond's policy for CPython's cyclic garbage collector.

Nearly all of kukeond's garbage is freed by reference counting; the cyclic collector only
finds cycles (an exception's traceback, a finished task's callbacks). Its cost is what it
walks: a young (generation 0) collection every 700 net container allocations, CPython's
default, promotes the objects of every request, answer and event still in flight, and
the full collections that follow walk every object kukeond holds, each holding the event
loop while it runs. Under 200 API clients that was 25 full collections of 83-210 ms in
30 s: most of the API's p99 (docs/benchmarks/api.md).

So, after startup:
- what startup built (modules, models, schemas, the first caches) is frozen: never
  walked again (it lives as long as the process);
- a young collection runs every ``YOUNG_THRESHOLD`` allocations: in-flight objects die
  before one, and are not promoted to the older generations;
- a full collection waits for ``FULL_THRESHOLD`` middle ones (and, as CPython always
  requires, for the objects promoted since the last one to be a quarter of those it
  walked then).

What it costs is cyclic garbage waiting longer before it is freed; the memory figures
with and without are in docs/benchmarks/api.md. Under a create/delete churn a full
collection came about once an hour or less (2 in a traced soak's first 27 minutes, against
31 middle ones), and a cycle that a middle collection had promoted to the oldest generation
while still in use (pyroute2 makes every netlink message a cycle of its own) could wait
that long once it was garbage (docs/benchmarks/soak.md). So a full collection also runs
every ``FULL_COLLECTION_SECONDS`` (:func:`collect_fully_every`): such garbage waits minutes,
for one full collection's pause every five minutes.

The first of those runs ``SETTLED_SECONDS`` after startup (the first convergence is over
by then), and after each one glibc gives its free heap pages back to the kernel
(``mallocpolicy.trim``: 1-3.5 MiB of RSS each time, in about a millisecond; issue 18).

The young threshold let a burst of cell starts keep its garbage: pyroute2 makes each
netlink message, request and dump a cycle (~800 objects per cell started, nearly all of the
unreachable ones), and 50 cells made ~41,000 unreachable objects, 6.6 MB of pymalloc's
blocks, before one young collection ran. Collected late, they leave their arenas mostly
empty but never empty enough for pymalloc to give them back (docs/benchmarks/memory-idle.md).
So :func:`sweep_young_every` also runs a young collection twice a second when
``YOUNG_SWEEP_OBJECTS`` or more were allocated since the last (a middle one when
``MIDDLE_THRESHOLD`` young ones are due, as CPython would): a burst's garbage is freed
while the burst goes on and its blocks are reused. Under steady API load that is at most
two young collections a second more than the threshold makes; at idle, none. Once a burst
that left ``TRIM_AFTER_SWEPT`` unreachable objects is over, glibc's free pages go back too.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Final

from . import mallocpolicy

log = logging.getLogger(__name__)

YOUNG_THRESHOLD: Final = 50_000
MIDDLE_THRESHOLD: Final = 20
FULL_THRESHOLD: Final = 100
FULL_COLLECTION_SECONDS: Final = 300.0
SETTLED_SECONDS: Final = 30.0
YOUNG_SWEEP_SECONDS: Final = 0.5
YOUNG_SWEEP_OBJECTS: Final = 2_000
TRIM_AFTER_SWEPT: Final = 10_000


def apply_after_startup() -> None:
    """Freeze what startup built, then collect less often (see the module's docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, FULL_THRESHOLD)


async def collect_fully_every(seconds: float = FULL_COLLECTION_SECONDS) -> None:
    """Run until cancelled: a full collection and a trim ``SETTLED_SECONDS`` from now (or
    ``seconds``, if shorter), then every ``seconds`` (see the module)."""
    await asyncio.sleep(min(seconds, SETTLED_SECONDS))
    while True:
        collect_fully_and_trim()
        await asyncio.sleep(seconds)


async def sweep_young_every(seconds: float = YOUNG_SWEEP_SECONDS) -> None:
    """Run until cancelled: every ``seconds``, a young (or middle) collection if
    ``YOUNG_SWEEP_OBJECTS`` were allocated since the last one; ``malloc_trim`` once quiet
    again after sweeps that found ``TRIM_AFTER_SWEPT`` unreachable objects (see the module)."""
    swept = 0
    while True:
        await asyncio.sleep(seconds)
        young, middle, _ = gc.get_count()
        if young >= YOUNG_SWEEP_OBJECTS:
            swept += gc.collect(1 if middle >= MIDDLE_THRESHOLD else 0)
        elif swept >= TRIM_AFTER_SWEPT:
            trimmed = mallocpolicy.trim()
            if trimmed is not None:
                log.info(
                    "a burst's %d unreachable objects collected; malloc_trim gave back "
                    "%.1f MiB in %.1f ms",
                    swept,
                    trimmed.released_mib,
                    trimmed.seconds * 1000,
                )
            swept = 0


def collect_fully_and_trim() -> None:
    """One full collection, then ``malloc_trim``; both logged with what they took."""
    started = time.perf_counter()
    found = gc.collect()
    collected = time.perf_counter() - started
    trimmed = mallocpolicy.trim()
    if trimmed is None:
        log.info("full collection: %d unreachable objects in %.0f ms", found, collected * 1000)
        return
    held, arenas = trimmed.held, mallocpolicy.arenas()
    log.info(
        "full collection: %d unreachable objects in %.0f ms; malloc_trim gave back "
        "%.1f MiB (RssAnon %.1f -> %.1f MiB) in %.1f ms%s%s",
        found,
        collected * 1000,
        trimmed.released_mib,
        trimmed.anon_before_kib / 1024,
        trimmed.anon_after_kib / 1024,
        trimmed.seconds * 1000,
        ""
        if held is None
        else f"; glibc's malloc holds {held.in_use_kib / 1024:.1f} MiB in use, "
        f"{held.free_kib / 1024:.1f} MiB free in its heaps, {held.mmapped_kib / 1024:.1f} "
        "MiB mmapped",
        ""
        if not arenas
        else "; by arena (MiB from the system, in use, free in n chunks): "
        + ", ".join(
            f"#{arena.number} {arena.system_kib / 1024:.2f}, {arena.in_use_kib / 1024:.2f}, "
            f"{arena.free_kib / 1024:.2f} in {arena.free_chunks}"
            for arena in arenas
        ),
    )
