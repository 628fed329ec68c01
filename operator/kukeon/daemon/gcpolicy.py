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


def collect_fully_and_trim() -> None:
    """One full collection, then ``malloc_trim``; both logged with what they took."""
    started = time.perf_counter()
    found = gc.collect()
    collected = time.perf_counter() - started
    trimmed = mallocpolicy.trim()
    if trimmed is None:
        log.info("full collection: %d unreachable objects in %.0f ms", found, collected * 1000)
        return
    log.info(
        "full collection: %d unreachable objects in %.0f ms; malloc_trim gave back "
        "%.1f MiB (RssAnon %.1f -> %.1f MiB) in %.1f ms",
        found,
        collected * 1000,
        trimmed.released_mib,
        trimmed.anon_before_kib / 1024,
        trimmed.anon_after_kib / 1024,
        trimmed.seconds * 1000,
    )
