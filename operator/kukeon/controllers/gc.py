"""Removing what no document owns: this node's containers, netns, CNI leases, cgroups, files.

Finalizers make orphans rare (a cell's document stays until its host resources are gone),
but a document can still disappear behind the daemon's back (removed by hand in etcd, a
cell reassigned to another node), and a crash can interrupt a build or a teardown half way
(a network namespace made but no CNI attachment recorded yet, an IPAM lease taken but its
record not written). At start and periodically the node compares what it has on the host
with what etcd says it should run and removes the difference:

- containers carrying this node's label (but of no cell whose stored document cannot be
  read: which node runs it, or whether it is gone, is unknown);
- cells known from this node's state directory (their files, their attachment record):
  their cgroup, network attachment and files;
- network namespaces this node made (its own record says so: the netns directory may be
  shared with another control plane, whose namespaces are never touched) that no cell
  document (of any node) names;
- host-local IPAM leases held by such an id without a cell (CNI DEL through the space's
  conflist when it still exists, so the bridge plugin's NAT rules go too);
- then the host side of realms, spaces and stacks this node does not materialise (their
  cgroups, a space's network, a realm's namespace labelled for this node; ``layergc``),
  e.g. of a realm deleted while this node was down;
- containerd shims of this control plane's namespaces left with no task and no container
  (a task delete cut short by kukeond's death; ``runtime.containerd.shims``).

The host is listed before etcd is read: whatever was made for a document created after that
read is not in the listing, so a cell being built right now is never taken for an orphan.
Realms, spaces and stacks are checked again against a fresh read under the lock the layer
controller builds them under, before anything of them goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from kukeon.api import Cell, Kind, Space
from kukeon.runtime.bindpins import binds_directory, unpin_cell
from kukeon.runtime.cgroups import CgroupPath
from kukeon.runtime.containerd.containers import (
    LABEL_CELL,
    LABEL_MANAGED,
    LABEL_REALM,
    LABEL_SPACE,
    LABEL_STACK,
    MANAGED_FILTER,
    Container,
    label_filter,
)
from kukeon.runtime.containerd.namespaces import is_own
from kukeon.runtime.containerd.shims import find_shims, stop_shim
from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.network import bridge_name, network_id_prefix
from kukeon.store import Registry

from .cell import LABEL_NODE, CellController, cell_key, network_id
from .cellfiles import remove_cell_files
from .cellports import release_ports
from .host import Host
from .layergc import collect_layer_orphans
from .layers import HostLocks
from .orphanlog import OrphanFailures
from .space import conflist_file

log = logging.getLogger(__name__)

STOPS_IN_FLIGHT = 32
"""Containers stopped at the same time: each may take its whole stop grace period."""


def container_cell_key(container: Container) -> tuple[str, ...]:
    """The key of the cell a kukeon container belongs to (from its labels)."""
    labels = container.labels
    return tuple(labels.get(n, "") for n in (LABEL_REALM, LABEL_SPACE, LABEL_STACK, LABEL_CELL))


async def list_node_containers(
    host: Host, *, cell: tuple[str, ...] | None = None
) -> list[tuple[str, Container]]:
    """(namespace, container) of every container this node made (of ``cell`` only, if
    given), in every namespace."""
    found: list[tuple[str, Container]] = []
    labels = {LABEL_NODE: host.settings.node_name}
    if cell is not None:
        labels.update(zip((LABEL_REALM, LABEL_SPACE, LABEL_STACK, LABEL_CELL), cell, strict=True))
    node_filter = f"{MANAGED_FILTER},{label_filter(labels)}"
    for namespace in await host.containerd.namespaces.list():
        for container in await host.containerd.containers(namespace.name).list(node_filter):
            # The same node name may be another control plane's on this host.
            if is_own(container.labels, host.instance):
                found.append((namespace.name, container))
    return found


async def remove_containers(
    cells: CellController, containers: Sequence[tuple[str, Container]]
) -> list[tuple[str, BaseException | None]]:
    """Stop and delete ``containers`` concurrently (bounded): (what, error or None) each.

    One at a time, N containers that ignore SIGTERM would take N stop grace periods.
    """
    gate = asyncio.Semaphore(STOPS_IN_FLIGHT)

    async def remove(namespace: str, container: Container) -> tuple[str, BaseException | None]:
        what = f"container {namespace}/{container.id}"
        async with gate:
            try:
                await cells.remove_container(namespace, container.id)
            except Exception as error:
                return what, error
        return what, None

    return list(await asyncio.gather(*(remove(ns, c) for ns, c in containers)))


class HostInventory:
    """What this node has on the host, listed before etcd is read."""

    def __init__(self) -> None:
        self.containers: list[tuple[str, Container]] = []
        self.cell_dirs: set[tuple[str, ...]] = set()
        self.attachment_records: set[str] = set()
        self.netns: set[str] = set()
        self.stale_marks: set[str] = set()
        """Ownership records of namespaces that are gone (a crash between the two)."""
        self.leases: dict[str, dict[str, str]] = {}
        """network name -> lease file name (the address) -> owner id."""


async def list_host(host: Host) -> HostInventory:
    found = HostInventory()
    found.containers = await list_node_containers(host)
    settings = host.networks.settings
    found.cell_dirs = await asyncio.to_thread(_cell_dirs, host.settings.state_dir / "cells")
    prefix = network_id_prefix(settings.instance)
    found.attachment_records = await asyncio.to_thread(
        _record_ids, settings.attachments_dir, prefix
    )
    # Only namespaces this node recorded as its own: another control plane's are not.
    owned = await host.networks.owned_netns()
    found.netns = {name for name in await host.networks.netns.list() if name in owned}
    found.stale_marks = owned - found.netns
    found.leases = await asyncio.to_thread(_lease_owners, settings.ipam_dir)
    return found


def _assigned_to(node: str) -> Callable[[Cell], bool]:
    """The default `runs_here`: the cells whose spec names this node."""

    def assigned_here(cell: Cell) -> bool:
        return cell.spec.node_name == node

    return assigned_here


async def collect_orphans(
    *,
    host: Host,
    registry: Registry,
    cells: CellController,
    runs_here: Callable[[Cell], bool] | None = None,
    locks: HostLocks | None = None,
    failures: OrphanFailures | None = None,
) -> list[str]:
    """Remove this node's orphans; returns what was removed, for the log.

    `runs_here` says which cells this node runs (the cell controller's filter: by default
    the cells assigned to it); everything of any other cell is an orphan here. One orphan
    that cannot go (a CNI DEL failing on a half-torn-down network) is logged
    and left for the next pass; it never stops the others from going. `locks` are the
    layer controllers' (``Controllers`` shares them), so a realm, space or stack is never
    removed while its controller builds it. ``failures`` remembers what earlier passes could
    not remove, so that is warned of once (``orphanlog``), not at every pass.
    """
    failures = failures or OrphanFailures()
    failures.begin()
    found = await list_host(host)
    all_cells = [c for c in (await registry.list(Kind.CELL)).items if isinstance(c, Cell)]
    # Cells whose stored document does not decode are kept as if they ran here
    # (layergc.local_cell_keys says why); the list above brought them up to date.
    unreadable = set(registry.invalid_under(Kind.CELL))
    here = runs_here or _assigned_to(host.settings.node_name)
    instance = host.networks.settings.instance
    sweep = _Sweep(
        host,
        found,
        wanted={cell_key(c) for c in all_cells if here(c)} | unreadable,
        named_anywhere={network_id(cell_key(c), instance) for c in all_cells}
        | {network_id(key, instance) for key in unreadable},
        conflists=await space_conflists(host, registry),
        failures=failures,
    )
    await sweep.containers(cells)
    await sweep.cell_dirs()
    await sweep.attachments()
    await sweep.leases()
    await sweep.stale_marks()
    try:
        sweep.removed += await stop_forgotten_shims(host)
    except Exception as error:
        log.warning("looking for forgotten shims failed (next pass again): %s", error)
    try:
        sweep.removed += await collect_layer_orphans(
            host=host,
            registry=registry,
            locks=locks or HostLocks(),
            runs_here=here,
            failures=failures,
        )
    except Exception as error:
        log.warning("realm/space/stack orphan collection failed (next pass again): %s", error)
    failures.end()
    return sweep.removed


class _Sweep:
    """One pass over a host inventory: what etcd wants kept, and what went so far.

    Each step removes one kind of orphan; an attachment detached by an earlier step (a
    cell's directory, then its record, then its leases) is not detached twice.
    """

    def __init__(
        self,
        host: Host,
        found: HostInventory,
        *,
        wanted: set[tuple[str, ...]],
        named_anywhere: set[str],
        conflists: dict[str, Path],
        failures: OrphanFailures,
    ) -> None:
        self.host = host
        self.failures = failures
        self.found = found
        self.wanted = wanted
        """Keys of the cells this node runs."""
        self.instance = host.networks.settings.instance
        self.wanted_networks = {network_id(key, self.instance) for key in wanted}
        self.named_anywhere = named_anywhere
        """Network ids of every cell document, of any node."""
        self.conflists = conflists
        self.removed: list[str] = []
        self.detached: set[str] = set()

    async def attempt(self, what: str, step: Awaitable[object]) -> bool:
        try:
            await step
        except Exception as error:
            self.failures.failed(what, error)
            return False
        self._removed(what)
        return True

    def _removed(self, what: str) -> None:
        log.info("removed orphaned %s", what)
        self.failures.removed(what)
        self.removed.append(what)

    async def containers(self, cells: CellController) -> None:
        orphans = [
            (namespace, container)
            for namespace, container in self.found.containers
            if container_cell_key(container) not in self.wanted
        ]
        for what, error in await remove_containers(cells, orphans):
            if error is None:
                self._removed(what)
            else:
                self.failures.failed(what, error)

    async def cell_dirs(self) -> None:
        for key in sorted(self.found.cell_dirs - self.wanted):
            conflist = self.conflists.get(bridge_name(key[0], key[1], self.instance))
            removal = remove_cell_host_side(self.host, key, conflist=conflist)
            if await self.attempt(f"cell {'/'.join(key)}", removal):
                self.detached.add(network_id(key, self.instance))

    async def attachments(self) -> None:
        found = self.found
        stray = (found.attachment_records | (found.netns - self.named_anywhere)) - (
            self.wanted_networks
        )
        for cell_id in sorted(stray - self.detached):
            conflist = self.conflists.get(_network_of(cell_id, self.instance))
            detach = self.host.networks.detach_cell(cell_id=cell_id, cni_config_path=conflist)
            if await self.attempt(f"attachment {cell_id}", detach):
                self.detached.add(cell_id)

    async def leases(self) -> None:
        networks = self.host.networks
        prefix = network_id_prefix(self.instance)
        for network, leases in self.found.leases.items():
            for address, owner in leases.items():
                if owner in self.wanted_networks or not owner.startswith(prefix):
                    continue
                if owner not in self.detached:
                    with contextlib.suppress(Exception):
                        await networks.detach_cell(
                            cell_id=owner, cni_config_path=self.conflists.get(network)
                        )
                    self.detached.add(owner)
                # CNI DEL released it, unless the space's conflist is gone: then by hand.
                lease = networks.settings.ipam_dir / network / address
                if await asyncio.to_thread(lease.exists):
                    await self.attempt(
                        f"lease {network}/{address} of {owner}",
                        asyncio.to_thread(lease.unlink, True),
                    )

    async def stale_marks(self) -> None:
        for name in self.found.stale_marks - self.wanted_networks:
            mark = self.host.networks.settings.owned_netns_dir / name
            await asyncio.to_thread(mark.unlink, True)


async def stop_forgotten_shims(host: Host) -> list[str]:
    """Ask the shims of this control plane's namespaces whose container containerd no
    longer has, and that run nothing, to exit; returns them, for the log."""
    # The shims first: a container is made before its shim, so one listed after them
    # cannot be of a shim listed here that containerd forgot.
    shims = [s for s in await asyncio.to_thread(find_shims, host.containerd.address) if not s.busy]
    if not shims:
        return []
    namespaces = {
        namespace.name
        for namespace in await host.containerd.namespaces.list()
        if namespace.labels.get(LABEL_MANAGED) == "true" and is_own(namespace.labels, host.instance)
    }
    containers: dict[str, set[str]] = {}
    stopped: list[str] = []
    for shim in shims:
        if shim.namespace not in namespaces:
            continue
        if shim.namespace not in containers:
            listed = await host.containerd.containers(shim.namespace).list()
            containers[shim.namespace] = {container.id for container in listed}
        if shim.container_id in containers[shim.namespace]:
            continue
        if await asyncio.to_thread(stop_shim, shim):
            what = f"shim {shim.namespace}/{shim.container_id} (pid {shim.process.pid})"
            log.info("stopped forgotten %s: containerd has no task or container for it", what)
            stopped.append(what)
    return stopped


async def remove_cell_host_side(host: Host, key: tuple[str, ...], *, conflist: Path | None) -> None:
    """A cell's host resources outside containerd: network, cgroup, files."""
    instance = host.networks.settings.instance
    await release_ports(host, key)
    await host.networks.detach_cell(cell_id=network_id(key, instance), cni_config_path=conflist)
    await host.cgroups.remove(CgroupPath(key))
    await run_on_host_thread(unpin_cell, binds_directory(host.settings.state_dir, key))
    await remove_cell_files(host.settings.state_dir.joinpath("cells", *key))


async def space_conflists(host: Host, registry: Registry) -> dict[str, Path]:
    """Bridge (= CNI network name) -> the conflist of its space, for CNI DEL."""
    spaces = await registry.list(Kind.SPACE)
    instance = host.networks.settings.instance
    return {
        bridge_name(space.spec.realm_id, space.metadata.name, instance): conflist_file(
            space, default_dir=host.settings.cni_conf_dir, instance=instance
        )
        for space in spaces.items
        if isinstance(space, Space)
    }


def _network_of(cell_id: str, instance: str) -> str:
    """The bridge of a cell's network id `kukeon_<realm>_<space>_<stack>_<cell>`."""
    prefix = network_id_prefix(instance)
    if not cell_id.startswith(prefix):
        return ""
    parts = cell_id.removeprefix(prefix).split("_")
    return bridge_name(parts[0], parts[1], instance) if len(parts) == 4 else ""


def _record_ids(directory: Path, prefix: str) -> set[str]:
    if not directory.is_dir():
        return set()
    return {path.stem for path in directory.glob(f"{prefix}*.json")}


def _cell_dirs(root: Path) -> set[tuple[str, ...]]:
    """Keys of the cells that have a directory under `<state-dir>/cells`."""
    if not root.is_dir():
        return set()
    return {tuple(path.relative_to(root).parts) for path in root.glob("*/*/*/*") if path.is_dir()}


def _lease_owners(ipam_dir: Path) -> dict[str, dict[str, str]]:
    """host-local's lease files: one per address, holding the owner id on its first line."""
    owners: dict[str, dict[str, str]] = {}
    if not ipam_dir.is_dir():
        return owners
    for network in ipam_dir.iterdir():
        if not network.is_dir():
            continue
        for lease in network.iterdir():
            if lease.name.startswith("last_reserved_ip") or lease.name == "lock":
                continue
            try:
                first = lease.read_text().splitlines()[:1]
            except OSError:
                continue
            if first:
                owners.setdefault(network.name, {})[lease.name] = first[0].strip()
    return owners
