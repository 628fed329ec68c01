"""Several in-process kukeond "hosts" sharing one etcd prefix and one private containerd.

Each node has its own node name, state dir, cgroup root, nft table, netns dir and subnet
pool (what `tests.fixtures.kukeond.kukeond_config` gives a daemon; the subnet pool is
shared, see `make_config`), short lease and
lost-node timings, and labels `fleet-index=<i>`. They share the session's containerd, so
they share its namespaces: the orphan collector only looks at containers labelled with
its own node, and `crash` removes a stopped node's workloads by hand, as a host that
loses power would.

Teardown deletes the test's realm through the store (cascading, finalizers done by the
nodes still running), stops every node, and sweeps whatever is left on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import AnyResource, Cell, Kind, Node, parse_resource
from kukeon.daemon.app import Daemon
from kukeon.daemon.config import DaemonConfig
from kukeon.runtime.containerd import ContainerdClient, realm_namespace
from kukeon.runtime.containerd.containers import MANAGED_FILTER, label_filter
from kukeon.store import NotFound, Registry
from kukeon.store.encryption import Keyring
from tests.fixtures.containerd import (
    SLEEPER_SCRIPT,
    BusyboxImage,
    PrivateContainerd,
    clean_namespace,
)
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukeond import kukeond_config, set_host_timings, sweep_host
from tests.fixtures.services import require_binary, require_root

LEASE_TTL = 3
HEARTBEAT_SECONDS = 1.0
LOST_TIMEOUT = 4.0
SLEEPER = ["-c", SLEEPER_SCRIPT]
LABEL_NODE = "kukeon.io/node"


@dataclass
class FleetNode:
    name: str
    config: DaemonConfig
    daemon: Daemon | None = None


@dataclass
class Fleet:
    registry: Registry
    containerd: ContainerdClient
    realm: str
    image: BusyboxImage
    make_config: Callable[[int], DaemonConfig]
    nodes: dict[str, FleetNode] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        # The nodes serve one etcd prefix: one installation, one namespace per realm.
        return realm_namespace(self.realm, self.make_config(0).instance)

    @property
    def names(self) -> list[str]:
        return list(self.nodes)

    async def add_node(self, index: int) -> FleetNode:
        config = self.make_config(index)
        node = FleetNode(name=config.node_name, config=config)
        self.nodes[node.name] = node
        await self.start(node.name)
        return node

    async def start(self, name: str) -> Daemon:
        node = self.nodes[name]
        daemon = Daemon(node.config)
        await daemon.start()
        node.daemon = daemon
        speed_up(daemon)
        return daemon

    async def crash(self, name: str) -> None:
        """Stop a node as a power loss would: leases left to expire, workloads gone."""
        node = self.nodes[name]
        daemon = node.daemon
        assert daemon is not None
        assert daemon.operator is not None
        assert daemon.fleet is not None
        daemon.fleet.agent.release_on_exit = False
        await daemon.operator.stop(release_leases=False)
        await daemon.stop()
        node.daemon = None
        await self.remove_workloads_of(name)

    def is_leader(self, name: str) -> bool:
        daemon = self.nodes[name].daemon
        return (
            daemon is not None
            and daemon.operator is not None
            and (daemon.operator.is_leader("scheduler"))
        )

    async def leader(self, *, within: float = 30.0) -> str:
        """The node whose scheduler leads, once one does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            leaders = [name for name in self.names if self.is_leader(name)]
            if leaders:
                return leaders[0]
            await asyncio.sleep(0.05)  # a flag of each node's operator, no read
        raise AssertionError(f"no scheduler leader among {self.names} after {within} s")

    async def remove_workloads_of(self, name: str) -> None:
        containers = self.containerd.containers(self.namespace)
        tasks = self.containerd.tasks(self.namespace)
        node_filter = f"{MANAGED_FILTER},{label_filter({LABEL_NODE: name})}"
        for container in await containers.list(node_filter):
            with contextlib.suppress(Exception):
                await tasks.kill(container.id, 9, all=True)
                await asyncio.wait_for(tasks.wait(container.id), 10)
            with contextlib.suppress(Exception):
                await tasks.delete(container.id)
            with contextlib.suppress(Exception):
                await containers.delete(container.id)

    async def containers_of(self, name: str) -> list[str]:
        node_filter = f"{MANAGED_FILTER},{label_filter({LABEL_NODE: name})}"
        return [c.id for c in await self.containerd.containers(self.namespace).list(node_filter)]

    async def all_containers(self) -> list[str]:
        return [c.id for c in await self.containerd.containers(self.namespace).list(MANAGED_FILTER)]

    async def apply(self, document: dict[str, Any]) -> AnyResource:
        return await self.registry.create(
            parse_resource({"apiVersion": "kukeon.io/v1beta1", **document})
        )

    async def hierarchy(self) -> None:
        await self.apply({"kind": "Realm", "metadata": {"name": self.realm}, "spec": {}})
        await self.apply(
            {"kind": "Space", "metadata": {"name": "s1"}, "spec": {"realmId": self.realm}}
        )
        await self.apply(
            {
                "kind": "Stack",
                "metadata": {"name": "st1"},
                "spec": {"realmId": self.realm, "spaceId": "s1"},
            }
        )
        await self.wait_for(Kind.STACK, (self.realm, "s1", "st1"), state="Ready")
        first = next(n for n in self.nodes.values() if n.daemon is not None)
        assert first.daemon is not None
        assert first.daemon.controllers is not None
        await first.daemon.controllers.images.import_archive(
            namespace=self.namespace, path=self.image.archive
        )

    def cell_doc(self, name: str, **spec: Any) -> dict[str, Any]:
        container = {"id": "main", "image": self.image.name, "command": "sh", "args": SLEEPER}
        return {
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "realmId": self.realm,
                "spaceId": "s1",
                "stackId": "st1",
                "containers": [container],
                **spec,
            },
        }

    def cell_key(self, name: str) -> tuple[str, ...]:
        return (self.realm, "s1", "st1", name)

    async def cells(self) -> list[Cell]:
        listed = await self.registry.list(Kind.CELL, (self.realm, "s1", "st1"))
        return [c for c in listed.items if isinstance(c, Cell)]

    async def node(self, name: str) -> Node:
        found = await self.registry.get(Kind.NODE, (name,))
        assert isinstance(found, Node)
        return found

    async def wait_for(
        self,
        kind: Kind,
        key: tuple[str, ...],
        *,
        state: str | None = None,
        until: Callable[[AnyResource], bool] | None = None,
        within: float = 60.0,
    ) -> AnyResource:
        last: AnyResource | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            with contextlib.suppress(NotFound):
                last = await self.registry.get(kind, key)
                if state is not None and str(last.status.state) == state:
                    return last
                if until is not None and until(last):
                    return last
            await asyncio.sleep(0.2)
        shown = None if last is None else last.model_dump(mode="json", exclude_none=True)
        raise AssertionError(f"{kind.value} {'/'.join(key)} did not get there: {shown}")

    async def wait_all(
        self, check: Callable[[list[Cell]], bool], *, within: float = 120.0
    ) -> list[Cell]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        cells: list[Cell] = []
        while loop.time() < deadline:
            cells = await self.cells()
            if check(cells):
                return cells
            await asyncio.sleep(0.3)
        summary = {c.metadata.name: (c.spec.node_name, str(c.status.state)) for c in cells}
        raise AssertionError(f"cells did not get there: {summary}")


def speed_up(daemon: Daemon) -> None:
    """Short stop grace and parent polling on the running controllers (as the controller
    tests do): `sh` as PID 1 takes the whole grace to stop otherwise."""
    set_host_timings(daemon, stop_grace_seconds=1.0, parent_wait_seconds=0.2)


@pytest.fixture
async def fleet(
    tmp_path: Path,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
) -> AsyncIterator[Fleet]:
    require_root()
    require_binary("bridge", "containernetworking-plugins", "/usr/lib/cni", "/opt/cni/bin")
    require_binary("nft", "nftables")
    realm = f"r{secrets.token_hex(3)}"
    shared_pool: list[IPv4Network] = []
    # Every node of a fleet seals and opens Secrets with the same keys (docs/fleet.md).
    key_file = tmp_path / "encryption-keys.yaml"
    keyring, _ = Keyring.load_or_create(key_file)

    def make_config(index: int) -> DaemonConfig:
        base = kukeond_config(
            tmp_path / f"n{index}",
            containerd=containerd_daemon,
            etcd=etcd_server,
            prefix=etcd_key_prefix,
        )
        if not shared_pool:
            shared_pool.append(base.subnet_pool)
        return base.model_copy(
            update={
                # One pool for every node: the nodes share the host's network namespace, so
                # a space's bridge is one link that must get one gateway address from all
                # of them (separate hosts would each have their own bridge).
                "subnet_pool": shared_pool[0],
                "node_name": f"{realm}-n{index}",
                "node_labels": {"fleet-index": str(index)},
                "node_lease_ttl": LEASE_TTL,
                "node_heartbeat_seconds": HEARTBEAT_SECONDS,
                "node_lost_timeout": LOST_TIMEOUT,
                "scheduler_interval": 0.5,
                "encryption_key_file": key_file,
            }
        )

    registry = await Registry.connect(
        etcd_server.config(key_prefix=etcd_key_prefix), keyring=keyring
    )
    containerd = ContainerdClient(containerd_daemon.address)
    running = Fleet(
        registry=registry,
        containerd=containerd,
        realm=realm,
        image=containerd_test_image,
        make_config=make_config,
    )
    try:
        yield running
    finally:
        with contextlib.suppress(Exception):
            await registry.delete(Kind.REALM, (realm,), cascade=True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while loop.time() < deadline:
                try:
                    await registry.get(Kind.REALM, (realm,))
                except NotFound:
                    break
                await asyncio.sleep(0.3)
        for node in running.nodes.values():
            if node.daemon is not None:
                with contextlib.suppress(Exception):
                    await node.daemon.stop()
        with contextlib.suppress(Exception):
            await clean_namespace(containerd, running.namespace)
        await containerd.close()
        for node in running.nodes.values():
            # (unmounts the netns directory as often as restarts bound it)
            await sweep_host(node.config, realm=realm, spaces=["s1"])
            shutil.rmtree(node.config.state_dir, ignore_errors=True)
        for node in running.nodes.values():
            with contextlib.suppress(Exception):
                await registry.delete(Kind.NODE, (node.name,))
        await registry.close()
