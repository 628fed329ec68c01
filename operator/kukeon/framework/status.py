"""Writing an object's status: compare-and-swap, re-read on conflict, never half-written.

Handlers describe the status fields they observed; ``patch_status`` merges them into the
latest stored status and writes it with the store's CAS on resourceVersion. A lost CAS
(someone else wrote in between, usually a user updating spec) means: read the object
again and apply the same fields to it. ``observedGeneration`` becomes the generation of
the object the handler was given, not of the re-read one: the handler acted on that spec.

The write is shielded from cancellation: a handler cancelled at shutdown either wrote
its status or did not, and the in-flight etcd request is allowed to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from kukeon.api import Kind, key_of
from kukeon.store import Conflict, NotFound

from .protocols import AnyResource, Store

T = TypeVar("T")


async def finish_even_if_cancelled(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to its end; a cancellation is delivered only afterwards."""
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # Let the write land (or fail) so the object is never left in an unknown state.
        with contextlib.suppress(Exception):
            await task
        raise


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
        candidate = current.model_copy(update={"status": status})
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
