"""Writing status from a controller: only what changed, stamped with the node and the time.

Every status write is an etcd write, which every watcher sees. A controller that wrote the
same status on every resync would keep the whole fleet busy for nothing, so `report`
compares what the handler observed with what is stored and writes only a difference
(a new `observedGeneration` counts as one).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from kukeon.api import AnyResource
from kukeon.framework import HandlerContext
from kukeon.framework.statusbound import bounded_fields

R = TypeVar("R", bound=AnyResource)


def now() -> datetime:
    return datetime.now(UTC)


def _differs(status: Any, fields: dict[str, Any]) -> bool:
    """Whether any field would change (callers pass values of the status model's types)."""
    return any(getattr(status, name) != value for name, value in fields.items())


async def report(ctx: HandlerContext, obj: R, /, *, observe: bool = True, **fields: Any) -> R:
    """Merge `fields` into `obj.status` when they change it; returns the latest object.

    `observe=False` for progress notes (Creating, Deleting) that must not claim the spec
    was acted on yet.
    """
    status = obj.status
    # Compared as written (messages cut, ``statusbound``): a long message compared uncut
    # would differ from the stored one at every pass, and be written again each time.
    fields = bounded_fields(fields)
    fields.setdefault("node_name", ctx.node_name)
    if status.created_at is None:
        fields.setdefault("created_at", now())
    if str(fields.get("state")) == "Ready" and (
        status.ready_at is None or str(status.state) != "Ready"
    ):
        # Each time it becomes Ready, as a Ready condition's lastTransitionTime: a set's
        # minReadySeconds and scale-down ranking count from it (kept once it leaves Ready).
        fields.setdefault("ready_at", now())
    generation_moved = observe and status.observed_generation != obj.metadata.generation
    if not generation_moved and not _differs(status, fields):
        return obj
    fields["updated_at"] = now()
    written = await ctx.patch_status(obj, observe=observe, **fields)
    return obj if written is None else cast(R, written)
