"""In-memory stand-ins for the host adapters the realm, space, stack and gc code act through.

Each fake records what it was asked to do, so a test states what a controller did to the
host (namespaces made, cgroups removed, attachments detached) without root, containerd or
CNI plugins. ``make_host`` wraps them in the real ``Host`` record.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, cast

from kukeon.api import AnyResource, Cell, Kind, parse_resource
from kukeon.controllers.host import Host, HostSettings
from kukeon.framework import Cause, HandlerContext
from kukeon.runtime.cgroups import LOG_COPIERS, CgroupLimits, CgroupPath
from kukeon.runtime.containerd.containers import Container
from kukeon.runtime.containerd.namespaces import Namespace
from kukeon.runtime.network.space import NetworkSettings
from kukeon.store import ResourceList
from tests.unit.api.samples import cell_doc
from tests.unit.framework.fakes import FakeStore


@dataclass(frozen=True)
class FakeCgroup:
    path: str
    subtree_controllers: tuple[str, ...] = ("cpu", "memory")


class FakeCgroups:
    def __init__(self) -> None:
        self.ensured: list[tuple[str, ...]] = []
        self.removed: list[tuple[str, ...]] = []
        self.failing: set[tuple[str, ...]] = set()
        self.present: set[tuple[str, ...]] = set()
        """Cgroups left on the host (``inspect`` finds them)."""
        self.limits: dict[tuple[str, ...], CgroupLimits | None] = {}
        """The limits each ensure asked for."""
        self.root_pids: list[int | None] = []
        """The kukeon root's pids.max, each time it was ensured."""

    async def inspect(self, path: CgroupPath) -> FakeCgroup | None:
        return FakeCgroup("/kukeon/" + "/".join(path.parts)) if path.parts in self.present else None

    async def offered_controllers(self) -> frozenset[str]:
        return frozenset({"cpu", "memory", "pids"})

    async def ensure(self, path: CgroupPath, *, limits: CgroupLimits | None = None) -> FakeCgroup:
        self.limits[path.parts] = limits
        self.ensured.append(path.parts)
        self.present.add(path.parts)
        return FakeCgroup("/kukeon/" + "/".join(path.parts))

    async def ensure_root(self, *, pids_max: int | None) -> FakeCgroup:
        self.root_pids.append(pids_max)
        return FakeCgroup("/kukeon")

    async def ensure_log_copiers(self, realm: str) -> None:
        self.present.add((realm, LOG_COPIERS))

    def log_copier_procs(self, realm: str) -> tuple[Path, ...]:
        return (Path("/sys/fs/cgroup/cpu/kukeon", realm, LOG_COPIERS, "cgroup.procs"),)

    async def children(self, path: CgroupPath | None) -> list[str]:
        parent = path.parts if path is not None else ()
        depth = len(parent) + 1
        return sorted({p[-1] for p in self.present if len(p) == depth and p[:-1] == parent})

    async def remove(self, path: CgroupPath) -> None:
        if path.parts in self.failing:
            raise OSError(f"cgroup {'/'.join(path.parts)} is busy")
        self.removed.append(path.parts)
        self.present.discard(path.parts)


class FakeNamespaces:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, str]] = {}
        self.purged: list[str] = []

    async def list(self) -> list[Namespace]:
        return [Namespace(name, labels) for name, labels in sorted(self.items.items())]

    async def ensure(self, name: str, *, labels: Mapping[str, str]) -> None:
        self.items.setdefault(name, {}).update(labels)

    async def purge(self, name: str) -> bool:
        self.purged.append(name)
        return self.items.pop(name, None) is not None


class FakeContainers:
    def __init__(self, containers: dict[str, Container]) -> None:
        self._containers = containers
        self.filters: list[str] = []

    async def list(self, *filters: str) -> list[Container]:
        self.filters.extend(filters)
        return list(self._containers.values())

    async def get(self, container_id: str) -> Container:
        from kukeon.runtime.containerd.errors import ContainerdError

        try:
            return self._containers[container_id]
        except KeyError:
            raise ContainerdError(f"container {container_id} not found") from None


class FakeContainerd:
    def __init__(self) -> None:
        self.namespaces = FakeNamespaces()
        self.by_namespace: dict[str, dict[str, Container]] = {}
        self.events: Any = None

    def add(self, namespace: str, container_id: str, **labels: str) -> Container:
        self.namespaces.items.setdefault(namespace, {})
        container = Container(
            id=container_id,
            image="busybox",
            labels=labels,
            runtime="io.containerd.runc.v2",
            snapshotter="overlayfs",
            snapshot_key=container_id,
        )
        self.by_namespace.setdefault(namespace, {})[container_id] = container
        return container

    def containers(self, namespace: str) -> FakeContainers:
        return FakeContainers(self.by_namespace.setdefault(namespace, {}))


@dataclass(frozen=True)
class FakeSpaceNetwork:
    bridge_name: str
    subnet: IPv4Network
    gateway: IPv4Address
    cni_config_path: Path


@dataclass
class FakeNetns:
    names: set[str] = field(default_factory=set)

    async def list(self) -> list[str]:
        return sorted(self.names)


class FakeSubnets:
    def __init__(self) -> None:
        self.assigned: dict[str, IPv4Network] = {}
        self.error: Exception | None = None

    async def assignments(self) -> dict[str, IPv4Network]:
        if self.error is not None:
            raise self.error
        return dict(self.assigned)


class FakeNetworks:
    def __init__(self, state_dir: Path, instance: str = "") -> None:
        self.settings = NetworkSettings(state_dir=state_dir, instance=instance)
        self.subnets = FakeSubnets()
        self.netns = FakeNetns()
        self.owned: set[str] = set()
        self.detached: list[tuple[str, Path | None]] = []
        self.failing_detach: set[str] = set()
        self.ensured: list[dict[str, Any]] = []
        self.removed: list[dict[str, Any]] = []
        self.ensure_error: Exception | None = None
        self.remove_error: Exception | None = None
        self.idle: set[str] = set()
        """Idle bridges on the host (``remove_idle_bridges``)."""

    async def owned_netns(self) -> set[str]:
        return set(self.owned)

    async def detach_cell(self, *, cell_id: str, cni_config_path: Path | None) -> None:
        if cell_id in self.failing_detach:
            raise OSError(f"CNI DEL of {cell_id} failed")
        self.detached.append((cell_id, cni_config_path))

    async def ensure_space_network(self, **args: Any) -> FakeSpaceNetwork:
        if self.ensure_error is not None:
            raise self.ensure_error
        self.ensured.append(args)
        return FakeSpaceNetwork(
            bridge_name=f"kk-{args['realm']}-{args['space']}",
            subnet=IPv4Network("10.88.3.0/24"),
            gateway=IPv4Address("10.88.3.1"),
            cni_config_path=args["cni_config_path"],
        )

    async def remove_space_network(self, **args: Any) -> None:
        if self.remove_error is not None:
            raise self.remove_error
        self.removed.append(args)

    def bridge_of(self, realm: str, space: str) -> str:
        return f"kk-{realm}-{space}"

    async def remove_idle_bridges(
        self, live: Callable[[], Awaitable[Collection[str]]] | None = None
    ) -> list[str]:
        """Every bridge in ``idle`` the registry does not name (``live``)."""
        kept = set(await live()) if live is not None and self.idle else set()
        swept = sorted(self.idle - kept)
        self.idle -= set(swept)
        return [f"bridge {name}" for name in swept]

    async def joined_cells(self, network: str) -> list[str]:
        """Cells of other spaces on ``network`` (none here)."""
        return []


@dataclass
class FakeHost:
    """The fakes behind one ``Host``, for assertions."""

    host: Host
    containerd: FakeContainerd
    cgroups: FakeCgroups
    networks: FakeNetworks


def make_host(tmp_path: Path, *, node: str = "n1", instance: str = "") -> FakeHost:
    containerd, cgroups = FakeContainerd(), FakeCgroups()
    networks = FakeNetworks(tmp_path / "state", instance)
    host = Host(
        settings=HostSettings(
            node_name=node, state_dir=tmp_path / "state", cni_conf_dir=tmp_path / "cni"
        ),
        containerd=cast(Any, containerd),
        cgroups=cast(Any, cgroups),
        networks=cast(Any, networks),
    )
    return FakeHost(host, containerd, cgroups, networks)


class ScopedStore(FakeStore):
    """``FakeStore`` whose lists keep only the objects within ``scope`` (as etcd's ranges)."""

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList:
        listing = await super().list(kind, scope, label_selector=label_selector)
        items = [obj for obj in listing.items if _key(obj)[: len(scope)] == scope]
        return ResourceList(items, listing.resource_version)

    def invalid_under(self, kind: Kind, scope: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
        """Nothing stored here is invalid: the store holds objects, not documents."""
        return ()


def _key(obj: AnyResource) -> tuple[str, ...]:
    from kukeon.api import key_of

    return key_of(obj)


def handler_context(store: Any, *, node: str = "n1", kind: Kind = Kind.REALM) -> HandlerContext:
    return HandlerContext(
        kind=kind,
        key=(),
        cause=Cause.CHANGE,
        retry=0,
        node_name=node,
        store=store,
        logger=logging.LoggerAdapter(logging.getLogger(__name__)),
    )


def cell(
    name: str = "c",
    *,
    realm: str = "r",
    space: str = "s",
    stack: str = "st",
    node: str | None = "n1",
    **spec: Any,
) -> Cell:
    doc = cell_doc(name, **spec)
    doc["spec"].update({"realmId": realm, "spaceId": space, "stackId": stack})
    if node is not None:
        doc["spec"]["nodeName"] = node
    found = parse_resource(doc)
    assert isinstance(found, Cell)
    return found
