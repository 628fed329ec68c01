"""The realm controller: a containerd namespace and a cgroup subtree per realm, per node.

A node materialises a realm while it runs cells in it (``layers.LayerController``): the
namespace `spec.namespace` (created or re-labelled) and the realm's cgroup with its
`spec.limits` (memory, pids; kukeond's `realmPidsLimit` when pids is unset, never above
the kukeon root's `pids.max`, which it keeps too), reported in its own entry of
``status.nodes``. When its last cell there is gone it removes the cgroup
and the realm's files but keeps the namespace: with no container left it holds only the
realm's images, which the node's next cell there starts from instead of importing or
pulling them again (kubelet keeps images when pods go, too). Deletion (the node's
finalizer) waits for the realm's spaces to be gone, then purges the namespace (images,
snapshots, content, leases), deletes it and removes the cgroup; the realm's user-namespace
range on the node (`hostUsers: false` cells) is released then, not before.

Each node that materialises the realm labels the namespace ``kukeon.io/node.<node>=true``
(besides ``kukeon.io/managed`` and ``kukeon.io/realm``): that is how its orphan collector
knows a namespace whose realm is gone is one it made (``gc``), and, where nodes share a
containerd, which other nodes made it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import ClassVar

from kukeon.api import Kind, NodeLayerState, NodeLayerStatus, Realm
from kukeon.api.event import EventReason
from kukeon.api.realm import unaddressed_credentials
from kukeon.framework import HandlerContext
from kukeon.runtime.cgroups import (
    CgroupError,
    CgroupLimits,
    CgroupPath,
    CgroupState,
    CgroupWriteError,
)
from kukeon.runtime.containerd.containers import LABEL_MANAGED, LABEL_REALM
from kukeon.runtime.containerd.namespaces import instance_labels
from kukeon.runtime.hostthreads import run_on_host_thread

from .cell import LABEL_NODE
from .cellfiles import remove_scope_files
from .host import Host
from .layers import LayerController
from .limitwakes import wake_held_cells
from .membership import Trigger

NAMESPACE_NODE_LABEL_PREFIX = f"{LABEL_NODE}."
PIDS_CAPPED = "PidsLimitCapped"
"""The node entry's reason when the realm's pids limit is above the kukeon root's."""


def namespace_node_label(node: str) -> str:
    """``kukeon.io/node.<node>``: on a realm's namespace made (or used) by ``node``."""
    return f"{NAMESPACE_NODE_LABEL_PREFIX}{node}"


def namespace_nodes(labels: Mapping[str, str]) -> set[str]:
    """The nodes a namespace's labels say made or used it."""
    return {
        key[len(NAMESPACE_NODE_LABEL_PREFIX) :]
        for key, value in labels.items()
        if key.startswith(NAMESPACE_NODE_LABEL_PREFIX)
        and len(key) > len(NAMESPACE_NODE_LABEL_PREFIX)
        and value == "true"
    }


def realm_namespace_labels(host: Host, realm: str) -> dict[str, str]:
    """The labels of the namespace of ``realm`` made (or used) by this node, whoever makes
    it (this controller, or an image import or pull before any cell of the realm runs
    here): what the orphan collector (``layergc``) knows its namespaces by, so it purges
    the namespace once the realm is deleted."""
    return {
        LABEL_MANAGED: "true",
        LABEL_REALM: realm,
        namespace_node_label(host.settings.node_name): "true",
        **instance_labels(host.instance),
    }


class RealmController(LayerController[Realm]):
    kind: ClassVar[Kind] = Kind.REALM

    trigger: Trigger | None = None
    """Set by ``Controllers.register``: requeues a cell (``Operator.trigger``), for the cells
    a realm's new limits free (``limitwakes``)."""

    def __init__(self, *, host: Host) -> None:
        super().__init__(host=host)
        self._applied: dict[str, CgroupLimits] = {}
        """The limits this node last wrote to each realm's cgroup."""

    async def accept(self, obj: Realm, ctx: HandlerContext) -> None:
        return None  # a realm has no parent: accepted as soon as it exists

    async def materialise(self, obj: Realm, ctx: HandlerContext) -> NodeLayerStatus:
        name = obj.metadata.name
        await self.host.containerd.namespaces.ensure(
            self.host.namespace_of(obj), labels=realm_namespace_labels(self.host, name)
        )
        offered = await self.host.cgroups.offered_controllers()
        # The parent of every realm's cgroup: put back if someone rewrote it.
        await self.host.cgroups.ensure_root(pids_max=self.host.settings.root_pids_limit)
        asked = self._pids_asked(obj, pids_offered="pids" in offered)
        limits = self.limits_of(obj, pids_offered="pids" in offered)
        cgroup = await self._ensure_cgroup(CgroupPath((name,)), limits)
        # Where its cells' log copiers go (crilog): their CPU is the realm's.
        await self.host.cgroups.ensure_log_copiers(name)
        if self.trigger is not None and self._applied.get(name, limits) != limits:
            wake_held_cells(ctx.cache, self.trigger, realm=name, node=self.host.settings.node_name)
        self._applied[name] = limits
        capped = asked is not None and limits.pids_max is not None and asked > limits.pids_max
        notes: list[tuple[str, str]] = []
        if capped:
            notes.append(
                (
                    PIDS_CAPPED,
                    f"pids {asked} is above what every realm together may have on this node "
                    f"({limits.pids_max}: the host's limit less kukeond's hostReservedPids); "
                    f"the realm's pids.max is {limits.pids_max}",
                )
            )
        # Stored before serverAddress was required: said where `kukectl describe realm`
        # shows it (and in a Warning Event on each cell whose pull would have sent it).
        notes.extend(
            (EventReason.CREDENTIAL_IGNORED.value, why) for why in unaddressed_credentials(obj.spec)
        )
        return NodeLayerStatus(
            state=NodeLayerState.READY,
            reason=notes[0][0] if notes else None,
            message="; ".join(message for _, message in notes) or None,
            cgroup_path=cgroup.path,
            subtree_controllers=list(cgroup.subtree_controllers),
        )

    async def _ensure_cgroup(self, path: CgroupPath, limits: CgroupLimits) -> CgroupState:
        """The realm's cgroup with ``limits``. A memory limit below what the realm uses is
        refused by the kernel (v1: EBUSY once reclaim fails; the error is the realm's
        failure): the other limits are set all the same, the memory limit kept as it was,
        so that reining in a realm (its pids) does not wait on its memory."""
        try:
            return await self.host.cgroups.ensure(path, limits=limits)
        except CgroupWriteError as error:
            if limits.memory_max_bytes is None or not error.path.name.startswith("memory."):
                raise
            kept = (await self.host.cgroups.read_stats(path)).memory_limit_bytes
            with contextlib.suppress(CgroupError):
                await self.host.cgroups.set_limits(
                    path, dataclasses.replace(limits, memory_max_bytes=kept)
                )
            raise

    def _pids_asked(self, obj: Realm, *, pids_offered: bool) -> int | None:
        """The realm's own pids limit, else kukeond's default (only where the host has the
        pids controller: a default must not fail every realm)."""
        limits = obj.spec.limits
        pids = limits.pids if limits is not None else None
        if pids is None and pids_offered:
            pids = self.host.settings.realm_pids_limit
        return pids

    def limits_of(self, obj: Realm, *, pids_offered: bool = True) -> CgroupLimits:
        """The realm cgroup's limits: its `spec.limits`, pids else kukeond's default, and
        never above the kukeon root's (the kernel would hold the realm to the root's
        anyway: the realm's own file says what holds). Every field is set each time, so a
        limit removed from the spec goes."""
        limits = obj.spec.limits
        pids = self._pids_asked(obj, pids_offered=pids_offered)
        root = self.host.settings.root_pids_limit
        if pids is not None and root is not None:
            pids = min(pids, root)
        return CgroupLimits(
            memory_max_bytes=limits.memory_bytes if limits is not None else None,
            pids_max=pids,
        )

    async def dematerialise(self, obj: Realm, ctx: HandlerContext, *, deleting: bool) -> None:
        name = obj.metadata.name
        self._applied.pop(name, None)
        if deleting:
            # Images, their unpacked snapshots, blobs and leases all block the removal.
            await self.host.containerd.namespaces.purge(self.host.namespace_of(obj))
            # Its user-namespace range goes with it (nothing of the realm is left to own it).
            await run_on_host_thread(self.host.settings.id_ranges().release, name)
        await self.host.cgroups.remove(CgroupPath((name,)))
        await remove_scope_files(self.host.settings.state_dir, (name,))
