"""What the user registered: handler records, their filters, and the context they receive.

The decorators on ``Operator`` only fill a ``HandlerRegistry``; nothing here knows how
events arrive or how handlers are scheduled (``queueing``) or run (``processing``).
Every object handler has the signature ``async def handler(obj, ctx) -> None`` where
``obj`` is the kind's model (``Cell``, ``Space``...) and ``ctx`` a ``HandlerContext``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kukeon.api import Kind

from .cache import WatchedObjects
from .protocols import AnyResource, ObjectKey, Store
from .status import patch_status

if TYPE_CHECKING:
    from .operator import Operator

ObjectHandler = Callable[[Any, "HandlerContext"], Awaitable[None]]
OperatorHandler = Callable[["OperatorContext"], Awaitable[None]]
Filter = Callable[[Any], bool]


def default_finalizer(kind: Kind) -> str:
    """The finalizer the framework holds on objects of ``kind`` that have a finalize handler."""
    return f"kukeon.io/{kind.value.lower()}-controller"


class Cause(enum.StrEnum):
    """Why a handler is being called."""

    CHANGE = "change"  # created, updated, or seen for the first time since start
    RESYNC = "resync"  # the periodic pass over every object
    RETRY = "retry"  # a previous run failed
    DELETE = "delete"  # deletion requested: finalize
    TIMER = "timer"


def _always(_: Any) -> bool:
    return True


@dataclass(frozen=True, kw_only=True)
class ReconcileIntent:
    kind: Kind
    fn: ObjectHandler
    when: Filter = _always


@dataclass(frozen=True, kw_only=True)
class FinalizeIntent:
    kind: Kind
    fn: ObjectHandler
    finalizer: str
    when: Filter = _always
    """Which objects get the finalizer (checked while they live)."""
    runs: Filter = _always
    """Which deleted objects this operator finalizes; the others are left to the operator
    they belong to (a cell to its node's), so the first operator to see a deletion cannot
    drop a finalizer another one holds for its host."""


@dataclass(frozen=True, kw_only=True)
class TimerIntent:
    kind: Kind
    fn: ObjectHandler
    interval: float
    name: str
    when: Filter = _always


@dataclass(frozen=True, kw_only=True)
class SingletonIntent:
    name: str
    fn: OperatorHandler
    interval: float | None
    """None: a long-running task while leader; else called every ``interval`` seconds."""


@dataclass(kw_only=True)
class HandlerRegistry:
    reconcilers: dict[Kind, ReconcileIntent] = field(default_factory=dict)
    finalizers: dict[Kind, FinalizeIntent] = field(default_factory=dict)
    timers: list[TimerIntent] = field(default_factory=list)
    singletons: dict[str, SingletonIntent] = field(default_factory=dict)
    on_startup: list[OperatorHandler] = field(default_factory=list)
    on_shutdown: list[OperatorHandler] = field(default_factory=list)

    def kinds(self) -> list[Kind]:
        """Every kind something was registered for, in hierarchy order."""
        wanted = {*self.reconcilers, *self.finalizers, *(t.kind for t in self.timers)}
        return [kind for kind in Kind if kind in wanted]


@dataclass(frozen=True, kw_only=True)
class HandlerContext:
    """What an object handler gets besides the object."""

    kind: Kind
    key: ObjectKey
    cause: Cause
    retry: int
    """How many runs for this object failed (or, counted apart, waited) in a row before this
    one (0: first try)."""
    node_name: str
    store: Store
    logger: logging.LoggerAdapter[logging.Logger]
    max_conflicts: int = 50
    cache: WatchedObjects | None = None
    """The operator's watched objects (``framework.cache``); None outside an operator."""
    wrote: Callable[[AnyResource], None] | None = None
    """Hands a version this handler wrote to the operator's queues (``queueing.wrote``)."""

    async def patch_status(
        self, obj: AnyResource, /, *, observe: bool = True, **fields: Any
    ) -> AnyResource | None:
        """``kukeon.framework.patch_status`` bound to this operator's store."""
        written = await patch_status(
            self.store, obj, observe=observe, max_conflicts=self.max_conflicts, **fields
        )
        if written is not None and self.wrote is not None:
            self.wrote(written)
        return written


@dataclass(frozen=True, kw_only=True)
class OperatorContext:
    """What startup, shutdown and singleton handlers get."""

    operator: Operator
    store: Store
    node_name: str
    logger: logging.LoggerAdapter[logging.Logger]
    name: str = ""
    """The singleton's name (empty for startup/shutdown handlers)."""
