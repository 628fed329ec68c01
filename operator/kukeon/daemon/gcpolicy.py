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
with and without are in docs/benchmarks/api.md.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 50_000
MIDDLE_THRESHOLD: Final = 20
FULL_THRESHOLD: Final = 100


def apply_after_startup() -> None:
    """Freeze what startup built, then collect less often (see the module's docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, FULL_THRESHOLD)
