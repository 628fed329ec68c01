"""A fleet whose whole etcd is down does not fence its cells; a node cut off alone does.

Three in-process kukeonds on a private etcd (the fleet fixture's ``etcd_server`` is
overridden here: this test stops it), each with its TCP API over TLS, the fleet token
(role ``node``) and a scheduler-placed cell of its own. ``fenceAfterSeconds`` is short
(2.5 s), ``nodeLostTimeout`` long enough that nothing is moved.

- etcd SIGSTOPped for twice the fence delay and more: every node asks its peers, all
  answer that they cannot reach etcd, and every node holds its fence
  (``kukeon_node_fence_held`` 1): no node fences, every container runs on (same pid);
  after SIGCONT every hold is released and still nothing was fenced.
- one node's etcd connection cut (its endpoint is a proxy that stops passing bytes, as a
  partition does): its peers reach etcd, so it fences (its cell's container stops) and the
  others neither hold nor fence; with the connection back it unfences and its cell runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from kukeon.api import Kind
from kukeon.daemon.app import Daemon
from kukeon.daemon.node import NodeAgent
from kukeon.runtime.containerd import ContainerdClient, realm_namespace
from kukeon.runtime.containerd.tasks import TaskStatus
from tests.fixtures.containerd import PrivateContainerd, clean_namespace
from tests.fixtures.etcd import EtcdServer, running_etcd_server
from tests.fixtures.services import free_tcp_port, require_binary
from tests.integration.fleet.conftest import Fleet, FleetNode

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
FENCE_AFTER = 2.5
LOST_TIMEOUT = 40.0
"""No cell is moved within a test; the grace after a peer regains etcd is 5 s."""


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    """A private etcd: these tests stop it (the session's serves every other test)."""
    with running_etcd_server() as etcd:
        yield etcd


class Blackhole:
    """A TCP proxy to etcd that, cut, holds every byte back (a partition, not a refusal)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._pumps: set[asyncio.Task[None]] = set()
        self.namespaces: set[str] = set()
        """Containerd namespaces of the nodes behind it, removed at the end."""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await source.read(1 << 16):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.close()

    async def close(self) -> None:
        self.flowing.set()
        if self.server is not None:
            self.server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)


def fleet_settings(tmp_path: Path) -> dict[str, object]:
    """TLS for 127.0.0.1, a tokens file mapping the fleet token to role node."""
    require_binary("openssl", "openssl")
    pki = tmp_path / "pki"
    subprocess.run(
        ["bash", str(REPO / "hack" / "make-ca.sh"), "--out", str(pki), "--quiet"],
        check=True,
        capture_output=True,
    )
    token = secrets.token_hex(16)
    (tmp_path / "fleet.token").write_text(token + "\n")
    (tmp_path / "fleet.token").chmod(0o600)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump({"tokens": [{"token": token, "user": "fleet", "role": "node"}]})
    )
    tokens.chmod(0o600)
    return {
        "api_tls_cert_file": pki / "server.crt",
        "api_tls_key_file": pki / "server.key",
        "api_tokens_file": tokens,
        "fleet_token_file": tmp_path / "fleet.token",
        "fleet_ca_file": pki / "ca.crt",
        "fence_after_seconds": FENCE_AFTER,
        "node_lost_timeout": LOST_TIMEOUT,
    }


async def start_nodes(
    fleet: Fleet, tmp_path: Path, count: int, etcd_of: dict[int, str] | None = None
) -> list[str]:
    settings = fleet_settings(tmp_path)
    for index in range(count):
        extra: dict[str, object] = {"api_address": f"127.0.0.1:{free_tcp_port()}"}
        if etcd_of and index in etcd_of:
            extra["etcd_endpoints"] = (etcd_of[index],)
        config = fleet.make_config(index).model_copy(update={**settings, **extra})
        fleet.nodes[config.node_name] = FleetNode(name=config.node_name, config=config)
        await fleet.start(config.node_name)
    return fleet.names


def daemon_of(fleet: Fleet, name: str) -> Daemon:
    daemon = fleet.nodes[name].daemon
    assert daemon is not None
    return daemon


def agent_of(fleet: Fleet, name: str) -> NodeAgent:
    running = daemon_of(fleet, name).fleet
    assert running is not None
    return running.agent


async def until(check: object, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if check() if callable(check) else check:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within}s: {what}")


async def one_cell_each(fleet: Fleet, names: list[str]) -> None:
    """A scheduler-placed cell on each node (its selector), Ready; the view of every node
    holds the other two with their API endpoints."""
    await fleet.hierarchy()
    controllers = daemon_of(fleet, names[0]).controllers
    assert controllers is not None
    for namespace in namespaces(fleet) - {fleet.namespace}:
        await controllers.images.import_archive(namespace=namespace, path=fleet.image.archive)
    for index, _ in enumerate(names):
        await fleet.apply(fleet.cell_doc(f"c{index}", nodeSelector={"fleet-index": str(index)}))
    for index, _ in enumerate(names):
        await fleet.wait_for(Kind.CELL, fleet.cell_key(f"c{index}"), state="Ready")

    def views_complete() -> bool:
        return all(
            sorted(p for p, e in agent_of(fleet, n).peers.peers.items() if e)
            == sorted(set(names) - {n})
            for n in names
        )

    await until(views_complete, 20, "every node's view holds its two peers")


def namespaces(fleet: Fleet) -> set[str]:
    """Each node's namespace of the realm: a node whose etcd endpoint differs (the proxy) is
    another installation's tag (``DaemonConfig.instance``), so another namespace."""
    return {realm_namespace(fleet.realm, node.config.instance) for node in fleet.nodes.values()}


async def running_pids(fleet: Fleet) -> dict[str, int]:
    running: dict[str, int] = {}
    for namespace in namespaces(fleet):
        tasks = await fleet.containerd.tasks(namespace).list()
        running |= {t.container_id: t.pid for t in tasks if t.status == TaskStatus.RUNNING}
    return running


def fenced_stops(fleet: Fleet, name: str) -> int:
    controllers = daemon_of(fleet, name).controllers
    assert controllers is not None
    return controllers.departures.stats.fenced


def gauge(fleet: Fleet, name: str, metric: str) -> float:
    value = daemon_of(fleet, name).metrics_registry.get_sample_value(metric)
    assert value is not None, f"{metric} is not on /metrics"
    return value


@contextlib.contextmanager
def stopped(etcd: EtcdServer) -> Iterator[None]:
    process = etcd.member.process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


async def test_an_etcd_down_for_every_node_fences_no_node(
    fleet: Fleet, tmp_path: Path, etcd_server: EtcdServer
) -> None:
    names = await start_nodes(fleet, tmp_path, 3)
    await one_cell_each(fleet, names)
    before = await running_pids(fleet)
    assert len(before) == 3
    with stopped(etcd_server):
        await until(
            lambda: all(agent_of(fleet, n).fence_held for n in names),
            FENCE_AFTER + 10,
            "every node holds its fence",
        )
        for name in names:
            assert gauge(fleet, name, "kukeon_node_fence_held") == 1
        await asyncio.sleep(FENCE_AFTER * 2)  # held on, asked again and again
        for name in names:
            agent = agent_of(fleet, name)
            assert agent.fence_held, name
            assert not agent.fenced, name
            assert agent.silent_for() > FENCE_AFTER * 2
    assert await running_pids(fleet) == before  # nothing stopped, nothing restarted

    def released() -> bool:
        agents = [agent_of(fleet, n) for n in names]
        return all(not a.fence_held and a.silent_for() < FENCE_AFTER for a in agents)

    await until(released, 20, "every node renewed its lease and released its hold")
    assert [fenced_stops(fleet, n) for n in names] == [0, 0, 0]
    assert await running_pids(fleet) == before


@pytest.fixture
async def blackhole(
    etcd_server: EtcdServer, containerd_daemon: PrivateContainerd
) -> AsyncIterator[Blackhole]:
    """The proxy; after the fleet's teardown (requested before it), the namespaces the
    fleet's own teardown does not know (the proxied node's) are removed."""
    host, _, port = etcd_server.endpoint.removeprefix("https://").rpartition(":")
    proxy = Blackhole((host, int(port)))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
        client = ContainerdClient(containerd_daemon.address)
        try:
            for namespace in proxy.namespaces:
                await clean_namespace(client, namespace)
        finally:
            await client.close()


async def test_a_node_cut_from_etcd_alone_fences_as_its_peers_reach_etcd(
    blackhole: Blackhole, fleet: Fleet, tmp_path: Path
) -> None:
    cut = {0: f"https://127.0.0.1:{blackhole.port}"}
    names = await start_nodes(fleet, tmp_path, 3, etcd_of=cut)
    blackhole.namespaces = namespaces(fleet) - {fleet.namespace}
    await one_cell_each(fleet, names)
    alone, others = names[0], names[1:]
    before = await running_pids(fleet)
    (its_container,) = [cid for cid in before if cid.endswith("_c0_main")]
    blackhole.flowing.clear()
    try:
        await until(
            lambda: agent_of(fleet, alone).fenced,
            FENCE_AFTER + 15,
            f"{alone} fences",
        )
        assert gauge(fleet, alone, "kukeon_node_fence_held") == 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while its_container in (running := await running_pids(fleet)):  # stopped by the fence
            assert loop.time() < deadline, f"{its_container} still runs on fenced {alone}"
            await asyncio.sleep(0.2)
        for name in others:
            agent = agent_of(fleet, name)
            assert not agent.fenced
            assert not agent.fence_held
            assert fenced_stops(fleet, name) == 0
        assert running == {c: p for c, p in before.items() if c != its_container}
    finally:
        blackhole.flowing.set()
    await until(
        lambda: not agent_of(fleet, alone).fenced,
        30,
        f"{alone} unfences",
    )
    await fleet.wait_for(Kind.CELL, fleet.cell_key("c0"), state="Ready")


async def test_with_etcd_down_a_peer_that_does_not_answer_makes_the_others_fence(
    fleet: Fleet, tmp_path: Path, etcd_server: EtcdServer
) -> None:
    names = await start_nodes(fleet, tmp_path, 3)
    await one_cell_each(fleet, names)
    asking, gone = names[:2], names[2]
    # gone dies as a host that loses power: still in the others' view (its lease has not
    # expired when etcd stops), but it answers nobody: they may not vouch for the fleet.
    await fleet.crash(gone)
    with stopped(etcd_server):
        await until(
            lambda: all(agent_of(fleet, n).fenced for n in asking),
            FENCE_AFTER + 15,
            f"{asking} fence",
        )
        for name in asking:
            assert not agent_of(fleet, name).fence_held
            assert gauge(fleet, name, "kukeon_node_fenced") == 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await running_pids(fleet):  # every scheduler-placed cell stopped
            assert loop.time() < deadline, await running_pids(fleet)
            await asyncio.sleep(0.2)
    await until(lambda: not any(agent_of(fleet, n).fenced for n in asking), 30, f"{asking} unfence")
    await fleet.start(gone)  # back, so that the realm's teardown need not wait it out
