"""Waiting on the hierarchy: a child converges after its parent, a parent goes after its children.

A space cannot get a bridge before its realm has a containerd namespace and a cgroup; a
realm cannot drop its namespace while a space still uses it. Both waits are expressed as
WaitingError (a TemporaryError logged at info) so the framework retries with backoff, and
the status tells the user what the object is waiting for. A parent waiting for its
children to go names one of them alike (``require_no_children``): a child's deletion runs
the parent's finalize again at once.

Parents are read from the operator's watched objects (``HandlerContext.cache``), not etcd:
no round trip per pass. A parent absent there is absent. A child waiting on its parent
names it (``WaitingError(on=Awaited(...))``), so the parent's next version -- Ready, or
deleted -- runs the child again at once; the retry delay is only a safety net. Without
a cache (a handler called outside an operator) the store is read as before. The one
exception is the moment a child enters its entry on this node (``parent_kept_here``): a
watched parent may not show its teardown yet, so the stored one decides, under the
parent's host lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar, cast

from kukeon.api import AnyResource, Kind, NodeLayerState, NodeLayerStatus, key_of, parent_of
from kukeon.framework import HandlerContext, WaitingError
from kukeon.framework.cache import WatchedObjects, revision_of
from kukeon.framework.errors import Awaited
from kukeon.store import NotFound

R = TypeVar("R", bound=AnyResource)


async def read(ctx: HandlerContext, kind: Kind, key: tuple[str, ...]) -> AnyResource:
    """The newest watched version of an object (the store's when its kind is not watched).

    Raises ``NotFound`` when it is absent, as the store would.
    """
    cache: WatchedObjects | None = getattr(ctx, "cache", None)  # test doubles may lack it
    if cache is None or not cache.covers(kind):
        return await ctx.store.get(kind, key)
    found = cache.get(kind, key)
    if found is None:
        raise NotFound(f"{describe(kind, key)} not found")
    return found


async def get_as(ctx: HandlerContext, model: type[R], key: tuple[str, ...]) -> R:
    """Read an object of a known kind, typed as its model."""
    found = await read(ctx, Kind(model.model_fields["kind"].default), key)
    if not isinstance(found, model):
        raise TypeError(f"expected a {model.__name__} at {'/'.join(key)}, got {found.kind}")
    return found


def describe(kind: Kind, key: tuple[str, ...]) -> str:
    return f"{kind.value} {'/'.join(key)}"


def ready_here(obj: AnyResource, node: str) -> bool:
    """Whether ``obj`` (a realm, space or stack) is materialised and Ready on ``node``."""
    nodes = getattr(obj.status, "nodes", None)
    if not isinstance(nodes, dict):
        return False
    entry = nodes.get(node)
    return isinstance(entry, NodeLayerStatus) and entry.state == NodeLayerState.READY


async def _parent(
    ctx: HandlerContext, obj: AnyResource, *, delay: float
) -> tuple[Kind, tuple[str, ...], AnyResource]:
    """The object's parent, which must exist (else the child waits for it to be created)."""
    parent = parent_of(obj)
    if parent is None:
        raise ValueError(f"{obj.kind} has no parent")
    kind, key = parent
    try:
        return kind, key, await read(ctx, kind, key)
    except NotFound:
        raise WaitingError(
            f"waiting for its {describe(kind, key)} to be created",
            delay=delay,
            reason="ParentMissing",
            on=Awaited(kind, key),
        ) from None


async def ready_parent(ctx: HandlerContext, obj: AnyResource, *, delay: float) -> AnyResource:
    """The object's parent, once it exists, is not being deleted and is Ready.

    For a realm, space or stack that is the parent's fleet-level state; a cell runs on one
    node, so its stack must be materialised and Ready on that node (``status.nodes``).
    """
    kind, key, found = await _parent(ctx, obj, delay=delay)
    awaited = Awaited(kind, key, revision_of(found))
    if found.metadata.deletion_timestamp is not None:
        raise WaitingError(
            f"its {describe(kind, key)} is being deleted",
            delay=delay,
            reason="ParentDeleting",
            on=awaited,
        )
    if obj.kind == Kind.CELL:
        if not ready_here(found, ctx.node_name):
            raise WaitingError(
                _not_ready_here(found, describe(kind, key), ctx.node_name),
                delay=delay,
                reason="ParentNotReady",
                on=awaited,
            )
    elif str(found.status.state) != "Ready":
        raise WaitingError(
            f"waiting for its {describe(kind, key)} to be Ready (it is {found.status.state})",
            delay=delay,
            reason="ParentNotReady",
            on=awaited,
        )
    return found


def _not_ready_here(parent: AnyResource, described: str, node: str) -> str:
    """Why a cell's stack is not Ready on its node, from the node's own entry: being set up
    is a step of every first cell's start (not a fault); a failure says what failed."""
    nodes = getattr(parent.status, "nodes", None)
    entry = nodes.get(node) if isinstance(nodes, dict) else None
    if not isinstance(entry, NodeLayerStatus) or entry.state == NodeLayerState.CREATING:
        waiting = (
            f": {entry.message}" if isinstance(entry, NodeLayerStatus) and entry.message else ""
        )
        return f"its {described} is being set up on node {node}{waiting}"
    if entry.state == NodeLayerState.DELETING:
        return f"its {described} is being torn down on node {node}, then set up again"
    why = ": ".join(part for part in (entry.reason, entry.message) if part)
    how = "failed" if entry.state == NodeLayerState.FAILED else f"is {entry.state}"
    return f"its {described} {how} on node {node}" + (f": {why}" if why else "")


async def parent_ready_here(ctx: HandlerContext, obj: AnyResource, *, delay: float) -> None:
    """A realm, space or stack's parent must be materialised on this node before it is."""
    if parent_of(obj) is None:
        return
    kind, key, found = await _parent(ctx, obj, delay=delay)
    if not ready_here(found, ctx.node_name):
        raise WaitingError(
            f"waiting for its {describe(kind, key)} to be Ready on node {ctx.node_name}",
            delay=delay,
            reason="ParentNotReadyOnNode",
            on=Awaited(kind, key, revision_of(found)),
        )


@contextlib.asynccontextmanager
async def parent_kept_here(
    ctx: HandlerContext, obj: R, *, locks: Callable[[tuple[str, ...]], asyncio.Lock], delay: float
) -> AsyncIterator[R]:
    """Hold the parent's host lock while ``obj`` writes its entry on this node.

    A parent's teardown checks that no child is on this node and removes its host side
    under its own host lock (``locks(parent key)``). A child's build takes that lock too,
    checks the parent's stored entry (the watched one, and the child's own, may lag a
    teardown by a watch event) and writes its own entry before letting go: either the
    teardown sees the entry and waits for the child, or the child sees the parent leaving
    and waits for it to come back. Yields the stored version of ``obj`` (its entry here as
    this node last wrote it); a realm, which has no parent, as given.
    """
    parent = parent_of(obj)
    if parent is None:
        yield obj
        return
    kind, key = parent
    async with locks(key):
        found: AnyResource | None = None
        with contextlib.suppress(NotFound):
            found = await ctx.store.get(kind, key)
        stored = obj  # when gone, the caller's next write says so
        with contextlib.suppress(NotFound):
            stored = cast(R, await ctx.store.get(Kind(obj.kind), key_of(obj)))
        if found is None or not ready_here(found, ctx.node_name):
            raise WaitingError(
                f"waiting for its {describe(kind, key)} to be Ready on node {ctx.node_name}",
                delay=delay,
                reason="ParentNotReadyOnNode",
                on=Awaited(kind, key, revision_of(found)),
            )
        yield stored


async def require_no_children(
    ctx: HandlerContext, *, child_kind: Kind, scope: tuple[str, ...], delay: float
) -> None:
    """Refuse to tear down while children of `scope` still exist (they go first).

    The children are read from the watched objects: a pass that finds some costs no etcd
    read, and the wait names the first of them (``Awaited``), so its deletion (or any
    change of it) runs the parent's finalize again at once, each child's in turn, not
    after the retry delay. "None" is confirmed from etcd, as a watch may lag a child's
    creation: a parent never goes while a child it has not seen yet exists.
    """
    cache: WatchedObjects | None = getattr(ctx, "cache", None)
    children: list[AnyResource] = []
    if cache is not None and cache.covers(child_kind):
        children = cache.list(child_kind, scope=scope)
    if not children:
        children = list((await ctx.store.list(child_kind, scope)).items)
    if children:
        names = ", ".join(child.metadata.name for child in children[:5])
        what = f"{len(children)} {child_kind.value.lower()}(s)"
        first = children[0]
        raise WaitingError(
            f"waiting for {what} to be deleted: {names}",
            delay=delay,
            reason="ChildrenRemaining",
            on=Awaited(child_kind, key_of(first), revision_of(first)),
        )
