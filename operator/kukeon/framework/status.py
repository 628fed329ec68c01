"""Writing an object's status: compare-and-swap, re-read on conflict, never half-written.

Handlers describe the status fields they observed; ``patch_status`` merges them into the
latest stored status and writes it with the store's CAS on resourceVersion. A lost CAS
(someone else wrote in between, usually a user updating spec) means: read the object
again and apply the same fields to it. ``observedGeneration`` becomes the generation of
the object the handler was given, not of the re-read one: the handler acted on that spec.

The write is shielded from cancellation: a handler cancelled at shutdown either wrote
its status or did not, and the in-flight etcd request is allowed to finish -- even when
the cancellation comes twice (a second SIGTERM, a timeout around the stop), since a
plain ``await`` of the shielded task would pass the second one on to the write itself.
The wait is bounded (``WRITE_GRACE``): a write that hangs is cancelled after it.

What is written is ``bounded`` (``statusbound``): its messages cut so it fits the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from kukeon.api import Kind, key_of
from kukeon.store import Conflict, NotFound

from .protocols import AnyResource, Store
from .statusbound import bounded

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_GRACE = 30.0
"""How long a cancelled caller still waits for a promised write (etcd's deadlines are shorter)."""


async def finish_even_if_cancelled(awaitable: Awaitable[T], *, within: float = WRITE_GRACE) -> T:
    """Await ``awaitable`` to its end; a cancellation is delivered only afterwards.

    However often the caller is cancelled meanwhile, ``awaitable`` runs on for up to
    ``within`` seconds after the first cancellation (then it is cancelled itself), and the
    caller gets its ``CancelledError`` once it is done.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError as cancelled:
        # Let the write land (or fail) so the object is never left in an unknown state.
        await _wait_through_cancellations(task, within)
        raise cancelled


async def _wait_through_cancellations(task: asyncio.Future[Any], within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("a write promised to finish took over %gs; cancelling it", within)
            task.cancel()
            break
        try:
            # asyncio.wait never cancels what it waits for, unlike awaiting the task.
            await asyncio.wait({task}, timeout=remaining)
        except asyncio.CancelledError:
            continue  # cancelled again: the write still finishes
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: its failure is the caller's no longer (it was cancelled)


def merged_status(obj: AnyResource, fields: dict[str, Any], *, observed: int | None) -> Any:
    """``obj.status`` with ``fields`` applied (validated by the kind's status model)."""
    status = obj.status
    model = type(status)
    unknown = sorted(set(fields) - set(model.model_fields))
    if unknown:
        raise TypeError(
            f"{obj.kind} status has no field(s) {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(model.model_fields))}"
        )
    data = status.model_dump()
    data.update(fields)
    if observed is not None:
        data["observed_generation"] = observed
    return model.model_validate(data)


async def patch_status(
    store: Store,
    obj: AnyResource,
    /,
    *,
    observe: bool = True,
    max_conflicts: int = 50,
    **fields: Any,
) -> AnyResource | None:
    """Merge ``fields`` into the stored status of ``obj``; None when the object is gone.

    ``observe`` also sets ``observedGeneration`` to ``obj.metadata.generation``.
    Raises ``Conflict`` only after ``max_conflicts`` lost compare-and-swaps in a row.
    """
    kind = Kind(obj.kind)
    key = key_of(obj)
    observed = obj.metadata.generation if observe else None
    current = obj
    for _ in range(max_conflicts):
        status = merged_status(current, fields, observed=observed)
        candidate = bounded(current.model_copy(update={"status": status}))
        try:
            return await finish_even_if_cancelled(store.update_status(candidate))
        except NotFound:
            return None
        except Conflict:
            try:
                current = await store.get(kind, key)
            except NotFound:
                return None
    raise Conflict(
        f"{kind.value} {'/'.join(key)!r}: status write lost {max_conflicts} compare-and-swaps "
        "in a row; giving up for now"
    )
