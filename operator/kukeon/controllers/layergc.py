"""Removing the host side of realms, spaces and stacks this node does not materialise.

A node tears its part of a realm, space or stack down when its last cell there goes, or
when the document is deleted (``layers``). Two cases escape that: the node was down while
the document was deleted (the scheduler leader released its finalizer, so the document is
gone when the node returns), and a kukeond killed halfway through a teardown whose
finalizer the leader then released. Their host side stays: cgroups under the node's cgroup root, a
space's conflist, egress chain, bridge, IPAM directory and subnet record, a realm's
containerd namespace, the scope directories under ``<state-dir>/cells``.

The orphan collector (``gc``) calls :func:`collect_layer_orphans` after the cells' pass, at
start before the controllers handle anything and then periodically. It finds candidates
only in what is provably this node's:

- the directories under this node's cgroup root (realm, space, stack levels);
- the scope directories under this node's state directory;
- the spaces holding a subnet in this node's subnet store (released last of a space's
  network, so a half torn-down network is still found by its realm and space names);
- the containerd namespaces labelled ``kukeon.io/managed=true`` and
  ``kukeon.io/node.<this node>=true`` (``realm.namespace_node_label``).

A candidate is removed only when the registry says this node does not need it
(:func:`needed_here`): no cell of this node lies below it, and its document is gone or
holds neither an entry nor a finalizer of this node. The decision is taken again from a
fresh etcd read for each candidate, under the same per-key lock the layer controller
holds while it builds or removes that level (``layers.HostLocks``), so a level that a new
cell needs is never removed under the controller's feet: either the controller added its
finalizer first (and the candidate is skipped), or it builds again after the removal.

What is removed is what the controller's teardown removes, with the same guards where
several nodes share one host (test fleets): a bridge goes only without ports, a namespace
only when no container is left in it and no other node whose label it carries still
materialises the realm; a conflist only when it is this node's (its IPAM ``dataDir`` is
this node's), looked for where the document says, where this node noted it wrote it
(``space.conflist_note``) and in the default directory.

A space's network is torn down whole or not at all (``SpaceNetworks.remove_space_network``:
its subnet record goes last, only once its bridge is gone), so a teardown cut short stays a
candidate here. What an earlier kukeond left without a record (a bridge kept for its ports
while the rest went) is swept each pass too: idle bridges named as this control plane names
them, with an address in this node's pool and no other node's alias, and egress chains in
this node's table, of no space recorded here nor existing in the registry
(``SpaceNetworks.remove_idle_bridges``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kukeon.api import Cell, Kind, Realm, Space, Stack, key_of
from kukeon.runtime.cgroups import LOG_COPIERS, CgroupError, CgroupPath
from kukeon.runtime.containerd.containers import LABEL_MANAGED, LABEL_REALM
from kukeon.runtime.containerd.namespaces import Namespace, is_own
from kukeon.runtime.network.space import space_conflist_path
from kukeon.runtime.network.subnets import SubnetStoreCorruptError
from kukeon.store import NotFound, Registry

from .cellfiles import remove_scope_files
from .host import Host
from .layers import LAYER_KINDS, HostLocks, legacy_finalizer, nodes_named
from .orphanlog import OrphanFailures
from .realm import namespace_node_label, namespace_nodes
from .space import conflist_file, conflist_note

log = logging.getLogger(__name__)

Layer = Realm | Space | Stack
Key = tuple[str, ...]
KIND_OF_DEPTH: Mapping[int, Kind] = {1: Kind.REALM, 2: Kind.SPACE, 3: Kind.STACK}


@dataclass
class LayerInventory:
    """This node's host objects of realms, spaces and stacks, by the key they belong to."""

    cgroups: set[Key] = field(default_factory=set)
    scope_dirs: set[Key] = field(default_factory=set)
    subnets: set[Key] = field(default_factory=set)
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    """Realm name -> its namespace labelled for this node."""

    def keys(self) -> set[Key]:
        found = self.cgroups | self.scope_dirs | self.subnets
        found |= {(realm,) for realm in self.namespaces}
        # A level's parents are candidates too (a space's subnet record outliving its realm).
        return {key[:depth] for key in found for depth in range(1, len(key) + 1)}


# --- the decision (pure) ----------------------------------------------------------------


def needed_here(key: Key, *, doc: Layer | None, local_cells: Iterable[Key], node: str) -> bool:
    """Whether this node must keep the host side of the realm/space/stack ``key``.

    Yes while a cell of this node lies below it (even if the document went behind the
    daemon's back: the cell still runs in it), or while its document holds an entry or a
    finalizer of this node (the layer controller builds or tears it down then), or the
    shared finalizer of an older store (not taken over yet).
    """
    depth = len(key)
    if any(cell[:depth] == key for cell in local_cells):
        return True
    if doc is None:
        return False
    if node in nodes_named(doc):
        return True
    return legacy_finalizer(Kind(doc.kind)) in doc.metadata.finalizers


def plan_layer_orphans(
    candidates: Iterable[Key],
    *,
    docs: Mapping[Key, Layer],
    local_cells: Iterable[Key],
    node: str,
) -> list[Key]:
    """The candidates this node does not need, children before their parents."""
    cells = list(local_cells)
    orphans = [
        key
        for key in candidates
        if len(key) in KIND_OF_DEPTH
        and not needed_here(key, doc=docs.get(key), local_cells=cells, node=node)
    ]
    return sorted(orphans, key=lambda key: (-len(key), key))


def namespace_in_use_elsewhere(namespace: Namespace, *, doc: Layer | None, node: str) -> bool:
    """Whether another node whose label the namespace carries still materialises the realm
    (several nodes sharing one containerd share its namespaces)."""
    if doc is None:
        return False
    others = namespace_nodes(namespace.labels) - {node}
    return bool(others & nodes_named(doc))


def own_conflist(text: str | None, *, ipam_dir: Path) -> bool:
    """Whether a conflist is one this node wrote: its bridge plugin keeps IPAM leases in
    this node's IPAM directory."""
    if text is None:
        return False
    try:
        document = json.loads(text)
    except ValueError:
        return False
    plugins = document.get("plugins") if isinstance(document, dict) else None
    if not isinstance(plugins, list):
        return False
    for plugin in plugins:
        if isinstance(plugin, dict) and plugin.get("type") == "bridge":
            ipam = plugin.get("ipam")
            if isinstance(ipam, dict) and ipam.get("dataDir") == str(ipam_dir):
                return True
    return False


# --- the host (listing, removal) --------------------------------------------------------


async def list_layers(host: Host) -> LayerInventory:
    """What of realms, spaces and stacks this node has on its host."""
    found = LayerInventory()
    cgroups = host.cgroups
    for realm in await cgroups.children(None):
        realm_path = _cgroup_path((realm,))
        if realm_path is None:
            continue
        found.cgroups.add((realm,))
        for space in await cgroups.children(realm_path):
            if space == LOG_COPIERS:  # the realm's own, not a space's: goes with the realm
                continue
            space_path = _cgroup_path((realm, space))
            if space_path is None:
                continue
            found.cgroups.add((realm, space))
            for stack in await cgroups.children(space_path):
                if _cgroup_path((realm, space, stack)) is not None:
                    found.cgroups.add((realm, space, stack))
    found.scope_dirs = await asyncio.to_thread(_scope_dirs, host.settings.state_dir / "cells")
    try:
        assignments = await host.networks.subnets.assignments()
    except SubnetStoreCorruptError as error:
        log.warning("orphan collection cannot read the subnet store: %s", error)
        assignments = {}
    for name in assignments:
        realm, _, space = name.partition("/")
        if realm and space:
            found.subnets.add((realm, space))
    mine = namespace_node_label(host.settings.node_name)
    for namespace in await host.containerd.namespaces.list():
        labels = namespace.labels
        realm = labels.get(LABEL_REALM, "")
        if (
            labels.get(LABEL_MANAGED) == "true"
            and labels.get(mine) == "true"
            and realm
            and is_own(labels, host.instance)
        ):
            found.namespaces[realm] = namespace
    return found


def _cgroup_path(key: Key) -> CgroupPath | None:
    """The key's cgroup path, None for a directory name no realm/space/stack can have."""
    try:
        return CgroupPath(key)
    except CgroupError:
        return None


def _scope_dirs(root: Path) -> set[Key]:
    """Keys of the realm, space and stack directories under ``<state-dir>/cells``."""
    if not root.is_dir():
        return set()
    found: set[Key] = set()
    for pattern in ("*", "*/*", "*/*/*"):
        found |= {tuple(p.relative_to(root).parts) for p in root.glob(pattern) if p.is_dir()}
    return found


async def _get(registry: Registry, kind: Kind, key: Key) -> Layer | None:
    try:
        found = await registry.get(kind, key)
    except NotFound:
        return None
    return found if isinstance(found, Realm | Space | Stack) else None


async def local_cell_keys(
    registry: Registry, scope: Key = (), *, runs_here: Callable[[Cell], bool]
) -> list[Key]:
    """The keys of this node's cells under ``scope``, and of every cell there whose stored
    document cannot be read: which node runs one, or whether it is gone, is unknown, so
    what the host has of it stays (its containers, network, cgroup and the levels above)
    until its key is deleted or holds a valid document again. Otherwise a cell's
    workload was killed by the next orphan pass after a bad write into etcd (a typo,
    a truncated restore), which is not a request to stop it."""
    cells = await registry.list(Kind.CELL, scope)  # brings `invalid_under` up to date too
    local = [key_of(c) for c in cells.items if isinstance(c, Cell) and runs_here(c)]
    return [*local, *registry.invalid_under(Kind.CELL, scope)]


async def _fresh(
    registry: Registry, key: Key, *, runs_here: Callable[[Cell], bool]
) -> tuple[Layer | None, list[Key]]:
    """The document of ``key`` and the keys of this node's cells below it, read now."""
    doc = await _get(registry, KIND_OF_DEPTH[len(key)], key)
    return doc, await local_cell_keys(registry, key, runs_here=runs_here)


class LayerCollector:
    """One pass over this node's realm/space/stack leftovers."""

    def __init__(
        self,
        *,
        host: Host,
        registry: Registry,
        locks: HostLocks,
        runs_here: Callable[[Cell], bool],
        failures: OrphanFailures | None = None,
    ) -> None:
        self.host = host
        self.registry = registry
        self.locks = locks
        self.runs_here = runs_here
        self.failures = failures or OrphanFailures()
        self.node = host.settings.node_name
        self.removed: list[str] = []

    async def run(self) -> list[str]:
        inventory = await list_layers(self.host)
        candidates = inventory.keys()
        if candidates:
            await self._collect_all(candidates, inventory)
        try:
            swept = await self.host.networks.remove_idle_bridges(self._bridges_of_spaces)
        except Exception as error:
            self.failures.failed("idle bridges", error)
        else:
            self.failures.removed("idle bridges")
            self.removed += [f"orphaned {what}" for what in swept]
        return self.removed

    async def _bridges_of_spaces(self) -> set[str]:
        """The bridge names of every space that exists (any node's: test fleets share the
        host's bridges)."""
        networks = self.host.networks
        return {
            networks.bridge_of(space.spec.realm_id, space.metadata.name)
            for space in (await self.registry.list(Kind.SPACE)).items
            if isinstance(space, Space)
        }

    async def _collect_all(self, candidates: set[Key], inventory: LayerInventory) -> None:
        docs: dict[Key, Layer] = {}
        for kind in LAYER_KINDS:
            for obj in (await self.registry.list(kind)).items:
                if isinstance(obj, Realm | Space | Stack):
                    docs[key_of(obj)] = obj
        local = await local_cell_keys(self.registry, runs_here=self.runs_here)
        for key in plan_layer_orphans(candidates, docs=docs, local_cells=local, node=self.node):
            await self._collect(key, inventory)

    async def _collect(self, key: Key, inventory: LayerInventory) -> None:
        kind = KIND_OF_DEPTH[len(key)]
        what = f"{kind.value.lower()} {'/'.join(key)}"
        async with self.locks(key):
            try:
                doc, local = await _fresh(self.registry, key, runs_here=self.runs_here)
            except Exception as error:
                log.warning("could not check %s (next pass tries again): %s", what, error)
                return
            if needed_here(key, doc=doc, local_cells=local, node=self.node):
                log.info("not collecting %s: this node needs it again", what)
                return
            if kind == Kind.SPACE and key in inventory.subnets:
                # The subnet record is taken first and released last of a space's network:
                # without it, nothing of the network was made here, or everything went.
                await self._attempt(f"network of {what}", self._remove_network(key, doc))
            if kind == Kind.REALM and key[0] in inventory.namespaces:
                namespace = inventory.namespaces[key[0]]
                await self._attempt(
                    f"containerd namespace {namespace.name} of {what}",
                    self._remove_namespace(namespace, doc),
                    report=False,
                )
            if key in inventory.cgroups:
                await self._attempt(f"cgroup of {what}", self.host.cgroups.remove(CgroupPath(key)))
            if key in inventory.scope_dirs:
                await self._attempt(
                    f"files of {what}", remove_scope_files(self.host.settings.state_dir, key)
                )

    async def _attempt(self, what: str, step: Awaitable[object], *, report: bool = True) -> None:
        try:
            done = await step
        except Exception as error:
            self.failures.failed(what, error)
            return
        self.failures.removed(what)
        if report or done:
            log.info("removed orphaned %s", what)
            self.removed.append(what)

    async def _remove_network(self, key: Key, doc: Layer | None) -> None:
        realm, space = key
        settings = self.host.settings
        instance = self.host.networks.settings.instance
        # Where the conflist may be: the document's directory, the one this node noted
        # when it wrote it, the default directory. Only this node's own files go.
        places: list[Path] = []
        if isinstance(doc, Space):
            places.append(conflist_file(doc, default_dir=settings.cni_conf_dir, instance=instance))
        noted = await asyncio.to_thread(
            _read_or_none, conflist_note(settings.state_dir, realm, space)
        )
        if noted and Path(noted.strip()).is_absolute():
            places.append(Path(noted.strip()))
        places.append(
            space_conflist_path(
                conf_dir=settings.cni_conf_dir, realm=realm, space=space, instance=instance
            )
        )
        ipam_dir = self.host.networks.settings.ipam_dir
        mine: list[Path] = []
        for place in dict.fromkeys(places):
            text = await asyncio.to_thread(_read_or_none, place)
            if own_conflist(text, ipam_dir=ipam_dir):
                mine.append(place)
        await self.host.networks.remove_space_network(
            realm=realm, space=space, cni_config_path=mine[0] if mine else None
        )
        for extra in mine[1:]:
            await asyncio.to_thread(extra.unlink, True)

    async def _remove_namespace(self, namespace: Namespace, doc: Layer | None) -> bool:
        """Purge the namespace unless a container is in it or another node still uses it.

        A realm that lives keeps its namespace on a node without its cells: its images
        are the node's cache for the next one (``realm.RealmController.dematerialise``).
        """
        if doc is not None and doc.metadata.deletion_timestamp is None:
            return False
        if namespace_in_use_elsewhere(namespace, doc=doc, node=self.node):
            return False
        containerd = self.host.containerd
        if await containerd.containers(namespace.name).list():
            return False
        return await containerd.namespaces.purge(namespace.name)


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


async def collect_layer_orphans(
    *,
    host: Host,
    registry: Registry,
    locks: HostLocks,
    runs_here: Callable[[Cell], bool],
    failures: OrphanFailures | None = None,
) -> list[str]:
    """Remove the host side of the realms, spaces and stacks this node does not need."""
    collector = LayerCollector(
        host=host, registry=registry, locks=locks, runs_here=runs_here, failures=failures
    )
    return await collector.run()


__all__ = [
    "LayerCollector",
    "LayerInventory",
    "collect_layer_orphans",
    "list_layers",
    "local_cell_keys",
    "namespace_in_use_elsewhere",
    "needed_here",
    "own_conflist",
    "plan_layer_orphans",
]
