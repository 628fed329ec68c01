"""Per-node materialisation of the fleet-wide kinds: realms, spaces and stacks.

A realm, space or stack is one document for the whole fleet, but its host side (a cgroup
subtree, a containerd namespace, a bridge network and egress rules) is needed only on the
nodes that run cells in it. Every kukeond reconciles every realm, space and stack, and:

- **accepts** it at fleet level: the top-level ``status.state`` becomes ``Ready`` once its
  parent exists and is Ready (a realm: at once), whether or not any node hosts it. That is
  what ``kukectl apply`` and a lone kukeond's users see before any cell exists;
- **materialises** it on its host only while at least one cell with ``spec.nodeName`` equal
  to its node lies below it: it first adds its own finalizer
  ``kukeon.io/<kind>-controller.<node>``, waits for the parent to be materialised on this
  node (a space needs its realm's namespace and cgroup here), builds the host side and
  writes its own entry ``status.nodes[<node>]``;
- **tears it down** when its last cell there is gone (after its children on this node went
  first), drops its entry and releases its finalizer. A deletion runs the same teardown in
  the finalizer, so the document disappears only when every node that materialised it
  cleaned its host (the scheduler leader releases the finalizers of nodes lost for good).

Cells trigger these decisions: ``CellMembership`` follows the cell watch and, whenever a
cell arrives on this node or leaves it, queues the cell's stack, space and realm.

A node writes only its own entry of ``status.nodes``, by compare-and-swap on the latest
version (re-read on conflict); the top-level fields (``cgroupPath``, ``network``...) are
aggregated from the entries in the same write (the writer's own Ready entry first, so a
single-node install reads the same fields as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

from kukeon.api import (
    Cell,
    EventReason,
    EventType,
    Kind,
    NodeLayerState,
    NodeLayerStatus,
    Realm,
    RealmState,
    Space,
    SpaceNetworkStatus,
    SpaceNodeStatus,
    SpaceState,
    Stack,
    StackState,
    key_of,
)
from kukeon.framework import EventRecorder, HandlerContext, TemporaryError, WaitingError
from kukeon.framework.cache import revision_of
from kukeon.framework.errors import Awaited
from kukeon.framework.intents import default_finalizer
from kukeon.framework.status import finish_even_if_cancelled, merged_status
from kukeon.framework.statusbound import COPIED_CHARS, bounded, cut_text, listed
from kukeon.runtime.cgroups import CgroupPath
from kukeon.store import Conflict, Invalid, NotFound, Registry, StoreError

from .hierarchy import (
    describe,
    parent_kept_here,
    parent_ready_here,
    ready_here,
    ready_parent,
    require_no_children,
)
from .host import Host
from .membership import CellMembership, Trigger

L = TypeVar("L", bound="Realm | Space | Stack")
Layer = Realm | Space | Stack
LAYER_KINDS: tuple[Kind, ...] = (Kind.REALM, Kind.SPACE, Kind.STACK)


def now() -> datetime:
    return datetime.now(UTC)


# --- finalizer names ---------------------------------------------------------------------


def legacy_finalizer(kind: Kind) -> str:
    """The one finalizer every node shared before materialisation became per node."""
    return default_finalizer(kind)


def node_finalizer(kind: Kind, node: str) -> str:
    """``kukeon.io/<kind>-controller.<node>``: held while ``node`` has the kind on its host."""
    return f"{default_finalizer(kind)}.{node}"


def finalizer_node(kind: Kind, finalizer: str) -> str | None:
    """The node a per-node finalizer of ``kind`` belongs to (None for any other name)."""
    prefix = f"{default_finalizer(kind)}."
    if finalizer.startswith(prefix) and len(finalizer) > len(prefix):
        return finalizer[len(prefix) :]
    return None


# --- the status (pure) -------------------------------------------------------------------

_ENTRY_TIMES = {"updated_at", "ready_at"}
_TOP_NOISE = {"updated_at", "node_name"}


def merge_entry(
    previous: NodeLayerStatus | None, entry: NodeLayerStatus, *, at: datetime
) -> NodeLayerStatus:
    """``entry`` stamped: ``readyAt`` kept while Ready, ``updatedAt`` moved only on change."""
    ready_at = None
    if entry.state == NodeLayerState.READY:
        ready_at = previous.ready_at if previous is not None and previous.ready_at else at
    candidate = entry.model_copy(update={"ready_at": ready_at})
    if previous is not None and type(previous) is type(candidate):
        same = previous.model_dump(exclude=_ENTRY_TIMES) == candidate.model_dump(
            exclude=_ENTRY_TIMES
        )
        if same and previous.ready_at == ready_at:
            return previous
    return candidate.model_copy(update={"updated_at": at})


def aggregate(
    kind: Kind, nodes: Mapping[str, NodeLayerStatus], *, writer: str, deleting: bool
) -> dict[str, Any]:
    """The top-level status fields that follow from the per-node entries.

    ``state``: Deleting (realms and spaces) once deletion is requested; Failed when every
    node that materialises it failed; otherwise Ready (accepted; the entries say what each
    host did). The host fields come from one Ready entry: the writer's own when it has one,
    else the first by node name; none when no node hosts it. ``message`` quotes the first
    failed node's, cut to ``COPIED_CHARS``, and names the other failed nodes (the first
    few and how many more).
    """
    ready = sorted(name for name, entry in nodes.items() if entry.state == NodeLayerState.READY)
    failed = sorted(name for name, entry in nodes.items() if entry.state == NodeLayerState.FAILED)
    pick_name = writer if writer in ready else (ready[0] if ready else None)
    pick = nodes[pick_name] if pick_name is not None else None
    fields: dict[str, Any] = {
        "nodes": dict(sorted(nodes.items())),
        "cgroup_path": pick.cgroup_path if pick is not None else None,
        "subtree_controllers": list(pick.subtree_controllers) if pick is not None else [],
        "cgroup_ready": pick is not None,
    }
    if failed:
        # One node's words, cut, and the others named: an entry's message (any length a
        # node or a status write put there) copied whole, times the nodes, outgrew the
        # store's document limit and the status was never written again.
        first = nodes[failed[0]]
        said = cut_text(first.message or first.reason or "failed", COPIED_CHARS)
        others = f" (also failed on {listed(failed[1:])})" if len(failed) > 1 else ""
        fields["reason"] = first.reason
        fields["message"] = f"node {failed[0]}: {said}{others}"
    else:
        fields["reason"] = None
        fields["message"] = None
    if deleting:
        if kind == Kind.REALM:
            fields["state"] = RealmState.DELETING
        elif kind == Kind.SPACE:
            fields["state"] = SpaceState.DELETING
    elif nodes and len(failed) == len(nodes):
        fields["state"] = {
            Kind.REALM: RealmState.FAILED,
            Kind.SPACE: SpaceState.FAILED,
            Kind.STACK: StackState.FAILED,
        }[kind]
    else:
        fields["state"] = {
            Kind.REALM: RealmState.READY,
            Kind.SPACE: SpaceState.READY,
            Kind.STACK: StackState.READY,
        }[kind]
    if kind == Kind.REALM:
        fields["containerd_namespace_ready"] = pick is not None
    if kind == Kind.SPACE:
        network = SpaceNetworkStatus()
        if isinstance(pick, SpaceNodeStatus):
            network = SpaceNetworkStatus(
                bridge_name=pick.bridge_name,
                subnet=pick.subnet,
                gateway=pick.gateway,
                cni_config_file=pick.cni_config_file,
            )
        fields["network"] = network
    return fields


def layer_status(
    obj: Layer,
    nodes: Mapping[str, NodeLayerStatus],
    *,
    writer: str,
    observed: int | None,
    at: datetime,
) -> Any:
    """``obj.status`` with ``nodes`` and what follows from them (validated by the model)."""
    deleting = obj.metadata.deletion_timestamp is not None
    fields = aggregate(Kind(obj.kind), nodes, writer=writer, deleting=deleting)
    status = obj.status
    if status.created_at is None:
        fields["created_at"] = at
    if str(fields.get("state")) == "Ready" and status.ready_at is None:
        fields["ready_at"] = at
    return merged_status(obj, fields, observed=observed)


def _same_status(a: Any, b: Any) -> bool:
    return bool(a.model_dump(exclude=_TOP_NOISE) == b.model_dump(exclude=_TOP_NOISE))


async def write_layer_status(
    store: Any,
    obj: L,
    *,
    node: str,
    entry: NodeLayerStatus | None = None,
    drop: bool = False,
    observe: bool = True,
    max_conflicts: int = 50,
    writer: str | None = None,
) -> L:
    """Write this node's entry (or drop it) and the aggregated top level, by CAS.

    On a lost compare-and-swap the object is read again and the entry applied to the new
    version, so the other nodes' entries written meanwhile are kept. Nothing is written
    when nothing would change; returns the latest object.
    """
    kind = Kind(obj.kind)
    key = key_of(obj)
    observed = obj.metadata.generation if observe else None
    current: L = obj
    for _ in range(max_conflicts):
        at = now()
        nodes: dict[str, NodeLayerStatus] = dict(current.status.nodes)
        if drop:
            nodes.pop(node, None)
        elif entry is not None:
            nodes[node] = merge_entry(nodes.get(node), entry, at=at)
        by = writer or node
        status = layer_status(current, nodes, writer=by, observed=observed, at=at)
        status = bounded(current.model_copy(update={"status": status})).status
        if _same_status(status, current.status):
            return current
        status = status.model_copy(update={"updated_at": at, "node_name": by})
        candidate = current.model_copy(update={"status": status})
        try:
            written = await finish_even_if_cancelled(store.update_status(candidate))
        except NotFound:
            return current
        except Conflict:
            try:
                current = cast(L, await store.get(kind, key))
            except NotFound:
                return current
            continue
        return cast(L, written)
    raise Conflict(
        f"{kind.value} {'/'.join(key)!r}: status write lost {max_conflicts} "
        "compare-and-swaps in a row; giving up for now"
    )


def entry_here(obj: Layer, node: str) -> NodeLayerStatus | None:
    entry: NodeLayerStatus | None = obj.status.nodes.get(node)
    return entry


# --- the controller ----------------------------------------------------------------------


class HostLocks:
    """One lock per realm/space/stack key, over its host side on this node.

    The layer controller holds it while it builds or removes a level, the orphan collector
    while it checks the registry again and removes a leftover: the two never act on the
    same level at once (``layergc``).
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[tuple[str, ...], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def __call__(self, key: tuple[str, ...]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock


def _child_kind(kind: Kind) -> Kind:
    return {Kind.REALM: Kind.SPACE, Kind.SPACE: Kind.STACK, Kind.STACK: Kind.CELL}[kind]


class LayerController(ABC, Generic[L]):
    """What realms, spaces and stacks share: accept, materialise here, tear down here."""

    kind: ClassVar[Kind]

    def __init__(self, *, host: Host) -> None:
        self.host = host
        self.trigger: Trigger | None = None
        """Set by ``Controllers.register``: queue another object's reconcile now."""
        self.membership: CellMembership | None = None
        """Set by ``Controllers.register``: which cells of this node it knows of."""
        self.locks = HostLocks()
        """Shared with the orphan collector by ``Controllers``."""
        self.recorder: EventRecorder | None = None
        """Set by ``Controllers``: where this node's Events about the level go."""

    def _event(self, obj: L, reason: EventReason, message: str, *, warning: bool = False) -> None:
        if self.recorder is not None:
            kind = EventType.WARNING if warning else EventType.NORMAL
            self.recorder.event(obj, reason, message, type=kind)

    # --- what each kind does on the host ---

    @abstractmethod
    async def materialise(self, obj: L, ctx: HandlerContext) -> NodeLayerStatus:
        """Build the host side (idempotent); the entry describing it (state Ready)."""

    @abstractmethod
    async def dematerialise(self, obj: L, ctx: HandlerContext, *, deleting: bool) -> None:
        """Remove the host side (idempotent)."""

    async def accept(self, obj: L, ctx: HandlerContext) -> None:
        """Raise WaitingError while the document cannot be Ready at fleet level."""
        await ready_parent(ctx, obj, delay=self.wait)

    # --- helpers ---

    @property
    def wait(self) -> float:
        return self.host.settings.parent_wait_seconds

    def finalizer(self, node: str) -> str:
        return node_finalizer(self.kind, node)

    async def on_host(self, obj: L) -> bool:
        """Whether this host has the object's cgroup (a leftover, a migrated store)."""
        return await self.host.cgroups.inspect(CgroupPath(key_of(obj))) is not None

    async def local_cells(self, obj: L, ctx: HandlerContext) -> list[tuple[str, ...]]:
        """Keys of the cells of this node below ``obj``.

        The cell-membership follower's count answers first (no etcd read per reconcile,
        which matters for a realm with thousands of cells); "none" is always confirmed by
        listing the cells from etcd, so a follower lagging behind never tears anything
        down that a new cell needs; that list's unreadable cells count as this node's.
        """
        scope = key_of(obj)
        if self.membership is not None:
            known = self.membership.keys_below(scope)
            if known:
                return known
        listed = await ctx.store.list(Kind.CELL, scope)
        local = [
            key_of(cell)
            for cell in listed.items
            if isinstance(cell, Cell) and cell.spec.node_name == ctx.node_name
        ]
        # A cell whose stored document does not decode is not known to be gone: its level
        # stays while its key does, or a bad write into etcd killed its workload with the
        # level's teardown (the orphan collector keeps its host side alike, layergc).
        return [*local, *ctx.store.invalid_under(Kind.CELL, scope)]

    def _wake(self, kind: Kind, key: tuple[str, ...]) -> None:
        if self.trigger is not None:
            self.trigger(kind, key)

    async def _write(
        self,
        obj: L,
        ctx: HandlerContext,
        *,
        entry: NodeLayerStatus | None = None,
        drop: bool = False,
        observe: bool = True,
    ) -> L:
        return await write_layer_status(
            ctx.store,
            obj,
            node=ctx.node_name,
            entry=entry,
            drop=drop,
            observe=observe,
            max_conflicts=ctx.max_conflicts,
        )

    def _progress(
        self, state: NodeLayerState, *, reason: str | None = None, message: str | None = None
    ) -> NodeLayerStatus:
        model = SpaceNodeStatus if self.kind == Kind.SPACE else NodeLayerStatus
        return model(state=state, reason=reason, message=message)

    # --- the handlers ---

    async def reconcile(self, obj: L, ctx: HandlerContext) -> None:
        await self.accept(obj, ctx)
        obj = await self._write(obj, ctx)
        cells = await self.local_cells(obj, ctx)
        node = ctx.node_name
        if cells:
            await self._materialise_here(obj, ctx, cells)
        elif (
            self.finalizer(node) in obj.metadata.finalizers
            or node in obj.status.nodes
            or await self.on_host(obj)
        ):
            await self._tear_down_here(obj, ctx)

    async def _wait_for_parent_here(self, obj: L, ctx: HandlerContext) -> None:
        """The parent must be materialised on this node before this level is."""
        await parent_ready_here(ctx, obj, delay=self.wait)

    async def _materialise_here(
        self, obj: L, ctx: HandlerContext, cells: list[tuple[str, ...]]
    ) -> None:
        node = ctx.node_name
        previous = entry_here(obj, node)
        was_ready = previous is not None and previous.state == NodeLayerState.READY
        try:
            await self._wait_for_parent_here(obj, ctx)
        except TemporaryError as error:
            if previous is not None and not was_ready:
                await self._write(
                    obj,
                    ctx,
                    entry=self._progress(
                        NodeLayerState.CREATING, reason=error.reason, message=str(error)
                    ),
                    observe=False,
                )
            _said_here(error)
            raise
        try:
            async with parent_kept_here(ctx, obj, locks=self.locks, delay=self.wait) as stored:
                entered = await self._enter_here(stored, ctx)
        except WaitingError as error:
            _said_here(error)
            raise
        if entered is None:
            return
        obj, was_ready = entered
        try:
            async with self.locks(key_of(obj)):
                entry = await self.materialise(obj, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            temporary = isinstance(error, TemporaryError)
            reason = getattr(error, "reason", None) or type(error).__name__
            state = NodeLayerState.CREATING if temporary else NodeLayerState.FAILED
            self._event(obj, EventReason.FAILED, f"{reason} on node {node}: {error}", warning=True)
            with contextlib.suppress(StoreError):
                await self._write(
                    obj,
                    ctx,
                    entry=self._progress(state, reason=reason, message=str(error)),
                    observe=False,
                )
            raise
        entry = entry.model_copy(
            update={"state": NodeLayerState.READY, "observed_generation": obj.metadata.generation}
        )
        await self._write(obj, ctx, entry=entry)
        if not was_ready:
            self._event(obj, EventReason.READY, f"ready on node {node}")
            self._wake_below(obj, cells)

    async def _enter_here(self, obj: L, ctx: HandlerContext) -> tuple[L, bool] | None:
        """This node's finalizer and its entry (Creating, when it was not Ready), written
        under the parent's host lock (``parent_kept_here``); with whether the entry was
        Ready. None: the object is being deleted meanwhile (the finalizer path takes over)."""
        previous = entry_here(obj, ctx.node_name)
        was_ready = previous is not None and previous.state == NodeLayerState.READY
        finalizer = self.finalizer(ctx.node_name)
        if finalizer not in obj.metadata.finalizers:
            try:
                added = await ctx.store.add_finalizer(self.kind, key_of(obj), finalizer)
            except Invalid:
                return None
            if added is None:
                return None
            obj = cast(L, added)
        if not was_ready:
            obj = await self._write(
                obj, ctx, entry=self._progress(NodeLayerState.CREATING), observe=False
            )
        return obj, was_ready

    def _wake_below(self, obj: L, cells: list[tuple[str, ...]]) -> None:
        """This level just became Ready here: its waiting children here can go on."""
        depth = len(key_of(obj)) + 1
        below = {key[:depth] for key in cells}
        child = _child_kind(self.kind)
        for key in sorted(below):
            self._wake(child, key)

    async def _children_here(self, obj: L, ctx: HandlerContext) -> None:
        """Children materialised on this node go first (a stack's cells are none here)."""
        child = _child_kind(self.kind)
        if child == Kind.CELL:
            return
        listed = await ctx.store.list(child, key_of(obj))
        here = [c for c in listed.items if ctx.node_name in getattr(c.status, "nodes", {})]
        if here:
            names = ", ".join(c.metadata.name for c in here[:5])
            for c in here:
                self._wake(child, key_of(c))
            raise WaitingError(
                f"waiting for {len(here)} {child.value.lower()}(s) to be removed from node "
                f"{ctx.node_name}: {names}",
                delay=self.wait,
                reason="ChildrenOnNode",
                # The first one's change (its entry here dropped, its deletion) runs this
                # teardown again at once, not after the delay.
                on=Awaited(child, key_of(here[0]), revision_of(here[0])),
            )

    async def _tear_down_here(self, obj: L, ctx: HandlerContext) -> None:
        node = ctx.node_name
        async with self.locks(key_of(obj)):  # no child claims this level meanwhile
            try:
                await self._children_here(obj, ctx)
            except WaitingError as error:
                _said_here(error)  # the children's own entries here say Deleting
                raise
            if node in obj.status.nodes:
                obj = await self._write(
                    obj, ctx, entry=self._progress(NodeLayerState.DELETING), observe=False
                )
            await self.dematerialise(obj, ctx, deleting=False)
        obj = await self._write(obj, ctx, drop=True)
        if self.finalizer(node) in obj.metadata.finalizers:
            await ctx.store.remove_finalizer(self.kind, key_of(obj), self.finalizer(node))
        ctx.logger.info(
            "%s removed from node %s (no cell of it here)", describe(self.kind, key_of(obj)), node
        )
        self._event(obj, EventReason.REMOVED, f"removed from node {node} (no cell of it there)")
        self._wake_parent(obj)

    def _wake_parent(self, obj: L) -> None:
        key = key_of(obj)
        if len(key) > 1:
            self._wake(LAYER_KINDS[len(key) - 2], key[:-1])

    async def finalize(self, obj: L, ctx: HandlerContext) -> None:
        """Deletion: this node's part goes after the children (every node's) are gone."""
        await require_no_children(
            ctx, child_kind=_child_kind(self.kind), scope=key_of(obj), delay=self.wait
        )
        node = ctx.node_name
        obj = await self._write(
            obj, ctx, entry=self._progress(NodeLayerState.DELETING), observe=False
        )
        async with self.locks(key_of(obj)):
            await self.dematerialise(obj, ctx, deleting=True)
        await self._write(obj, ctx, drop=True, observe=False)
        ctx.logger.info("%s finalized on node %s", describe(self.kind, key_of(obj)), node)
        self._event(obj, EventReason.DELETED, f"deleted from node {node}")


# --- what the rest of the daemon calls ----------------------------------------------------


async def migrate_legacy_finalizers(registry: Registry, *, node: str) -> list[str]:
    """Replace the old shared finalizer (``kukeon.io/<kind>-controller``) by this node's.

    A store written before materialisation became per node holds the shared name on every
    realm, space and stack. The first node to start takes it over (its reconcile then tears
    down what it does not need); the others find their leftovers on their hosts (the
    object's cgroup) and tear them down in their reconcile. A document already being
    deleted cannot take a new finalizer: the shared name is simply released.
    """
    migrated: list[str] = []
    for kind in LAYER_KINDS:
        legacy = legacy_finalizer(kind)
        for obj in (await registry.list(kind)).items:
            if legacy not in obj.metadata.finalizers:
                continue
            key = key_of(obj)
            with contextlib.suppress(NotFound, Invalid):
                if obj.metadata.deletion_timestamp is None:
                    await registry.add_finalizer(kind, key, node_finalizer(kind, node))
            with contextlib.suppress(NotFound):
                await registry.remove_finalizer(kind, key, legacy)
            migrated.append(describe(kind, key))
    return migrated


async def release_node(registry: Registry, obj: Layer, node: str, *, by: str) -> None:
    """Forget ``node`` on ``obj``: its finalizer and its ``status.nodes`` entry (a lost node)."""
    kind = Kind(obj.kind)
    key = key_of(obj)
    if node in obj.status.nodes:
        with contextlib.suppress(NotFound):
            obj = await write_layer_status(
                registry, obj, node=node, drop=True, observe=False, writer=by
            )
    if node_finalizer(kind, node) in obj.metadata.finalizers:
        with contextlib.suppress(NotFound):
            await registry.remove_finalizer(kind, key, node_finalizer(kind, node))


def nodes_named(obj: Layer) -> set[str]:
    """Every node ``obj`` mentions: by its per-node finalizer or its status entry."""
    kind = Kind(obj.kind)
    named = set(obj.status.nodes)
    for finalizer in obj.metadata.finalizers:
        node = finalizer_node(kind, finalizer)
        if node is not None:
            named.add(node)
    return named


def _said_here(error: TemporaryError) -> None:
    """A wait on this node (for the parent here, for the children here to go) is said in
    this node's entries (docs/fleet.md), not in the top-level status, which is the fleet's:
    recorded there, it flapped with every other pass (this node's acceptance, other
    nodes') clearing it, two more writes a wait: ~23 writes of a realm, space and stack
    for a node's first cell where 9 are needed."""
    if isinstance(error, WaitingError):
        error.said_by_handler = True


__all__ = [
    "LAYER_KINDS",
    "HostLocks",
    "LayerController",
    "aggregate",
    "finalizer_node",
    "legacy_finalizer",
    "merge_entry",
    "migrate_legacy_finalizers",
    "node_finalizer",
    "nodes_named",
    "ready_here",
    "release_node",
    "write_layer_status",
]
