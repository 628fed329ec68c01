"""kill -9 kukeond while it brings up 10 cells; the next kukeond finishes the job, cleanly.

kukeond runs as a real subprocess here (a SIGKILL cannot be delivered to an in-process
daemon). It works on private host resources as the in-process fixture does; the test
imports the test image into the realm's namespace itself, then creates the cells, kills the
daemon as soon as some containers exist, starts a new one and checks that every cell is
Ready with exactly one container, task, network namespace, cgroup and IPAM lease each.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from kukeon.api import AnyResource, Cell, Kind, Secret, Space, parse_resource
from kukeon.runtime.containerd import ContainerdClient, realm_namespace
from kukeon.runtime.containerd.tasks import TaskStatus
from kukeon.runtime.network import network_id_prefix
from kukeon.store import Conflict, EtcdConfig, NotFound, Registry
from kukeon.store.encryption import Keyring
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd, clean_namespace
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukeond import kukeond_config, sweep_host
from tests.fixtures.services import require_binary, require_root
from tests.fixtures.sessions import spawn_service

from .helpers import SLEEPER

pytestmark = pytest.mark.integration

KUKEOND = Path(sys.executable).parent / "kukeond"
CELLS = [f"c{i}" for i in range(10)]


@dataclass
class DaemonProcess:
    """A kukeond subprocess and what it was started with."""

    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: list[int] = field(default_factory=list)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = spawn_service(self.argv, stdout=log)
        self.starts.append(self.process.pid)

    def kill(self) -> None:
        """SIGKILL the daemon process only, as a crash would (workloads live on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""


@dataclass
class Setup:
    daemon: DaemonProcess
    registry: Registry
    containerd: ContainerdClient
    realm: str
    image: BusyboxImage
    state_dir: Path
    netns_dir: Path
    cni_conf_dir: Path
    cgroup_root: str
    instance: str
    etcd: EtcdConfig

    @property
    def namespace(self) -> str:
        return realm_namespace(self.realm, self.instance)

    async def wait(self, kind: Kind, key: tuple[str, ...], state: str, within: float) -> None:
        deadline = asyncio.get_running_loop().time() + within
        last = None
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(NotFound):
                last = await self.registry.get(kind, key)
                if str(last.status.state) == state:
                    return
            await asyncio.sleep(0.2)
        # The whole status (reason, message, containers) says which step it stopped at.
        seen = "absent" if last is None else last.status.model_dump_json(exclude_none=True)
        raise AssertionError(
            f"{kind.value} {'/'.join(key)} is not {state}: {seen}\n{self.daemon.tail()}"
        )


def _argv(config: object, tmp: Path) -> list[str]:
    from kukeon.daemon.config import DaemonConfig

    assert isinstance(config, DaemonConfig)
    return [
        str(KUKEOND),
        "--etcd-endpoints", ",".join(config.etcd_endpoints),
        "--etcd-ca-file", str(config.etcd_ca_file),
        "--etcd-cert-file", str(config.etcd_cert_file),
        "--etcd-key-file", str(config.etcd_key_file),
        "--etcd-prefix", config.etcd_prefix,
        "--containerd-address", str(config.containerd_address),
        "--state-dir", str(config.state_dir),
        "--run-dir", str(config.run_dir),
        "--node-name", config.node_name,
        "--cgroup-root", config.cgroup_root,
        "--cni-conf-dir", str(config.cni_conf_dir),
        "--netns-dir", str(config.netns_dir),
        "--nft-table", config.nft_table,
        "--subnet-pool", str(config.subnet_pool),
        "--metrics-address", "127.0.0.1:0",
        "--stop-grace-seconds", "1",
        "--parent-wait-seconds", "0.2",
        "--no-bootstrap",
    ]  # fmt: skip


@pytest.fixture
async def crashable(
    tmp_path: Path,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
) -> AsyncIterator[Setup]:
    require_root()
    require_binary("bridge", "containernetworking-plugins", "/usr/lib/cni", "/opt/cni/bin")
    require_binary("nft", "nftables")
    config = kukeond_config(
        tmp_path, containerd=containerd_daemon, etcd=etcd_server, prefix=etcd_key_prefix
    )
    daemon = DaemonProcess(argv=_argv(config, tmp_path), log=tmp_path / "kukeond.log")
    registry = await Registry.connect(etcd_server.config(key_prefix=etcd_key_prefix))
    containerd = ContainerdClient(containerd_daemon.address)
    setup = Setup(
        daemon=daemon,
        registry=registry,
        containerd=containerd,
        realm=f"r{secrets.token_hex(3)}",
        image=containerd_test_image,
        state_dir=config.state_dir,
        netns_dir=config.netns_dir,
        cni_conf_dir=config.cni_conf_dir,
        cgroup_root=config.cgroup_root,
        instance=config.instance,
        etcd=etcd_server.config(key_prefix=etcd_key_prefix),
    )
    spaces: list[str] = []
    try:
        daemon.start()
        yield setup
    finally:
        with contextlib.suppress(Exception):
            listed = await registry.list(Kind.SPACE, (setup.realm,))
            spaces = [space.metadata.name for space in listed.items]
        if daemon.process is None or daemon.process.poll() is not None:
            daemon.start()  # the realm's teardown goes through its finalizers
        with contextlib.suppress(Exception):
            await registry.delete(Kind.REALM, (setup.realm,), cascade=True)
            with contextlib.suppress(AssertionError):
                await _wait_gone(registry, (setup.realm,), within=60)
        daemon.stop()
        with contextlib.suppress(Exception):
            await clean_namespace(containerd, setup.namespace)
        await containerd.close()
        await sweep_host(config, realm=setup.realm, spaces=spaces)  # netns dir unmounted too
        with contextlib.suppress(Exception):
            await registry.client.delete_prefix(etcd_key_prefix.encode() + b"/")
        await registry.close()
        shutil.rmtree(config.state_dir, ignore_errors=True)


async def _wait_gone(registry: Registry, key: tuple[str, ...], *, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        try:
            await registry.get(Kind.REALM, key)
        except NotFound:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"realm {key} is still there")


def _doc(**document: object) -> AnyResource:
    return parse_resource({"apiVersion": "kukeon.io/v1beta1", **document})


async def make_hierarchy(s: Setup) -> None:
    """Realm, space s1 and stack st1 Ready, the test image in the realm's namespace."""
    realm = s.realm
    await s.registry.create(_doc(kind="Realm", metadata={"name": realm}, spec={}))
    await s.registry.create(_doc(kind="Space", metadata={"name": "s1"}, spec={"realmId": realm}))
    await s.registry.create(
        _doc(kind="Stack", metadata={"name": "st1"}, spec={"realmId": realm, "spaceId": "s1"})
    )
    await s.wait(Kind.STACK, (realm, "s1", "st1"), "Ready", within=60)
    await s.containerd.images(s.namespace).import_archive(s.image.archive)


def _cgroup_children(setup: Setup, *parts: str) -> Iterator[tuple[Path, set[str]]]:
    """Per mounted hierarchy holding the path: the names of its child cgroups."""
    relative = "/".join((setup.cgroup_root.strip("/"), *parts))
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        path = hierarchy / relative
        if path.is_dir():
            yield path, {child.name for child in path.iterdir() if child.is_dir()}


STUBBORN = ["-c", "trap '' TERM; while :; do sleep 1; done"]
"""A container that outlives its SIGTERM: its stop takes the cell's whole grace."""


async def _create_cells(s: Setup, *, stubborn: int = 0) -> None:
    """The ten cells; the first ``stubborn`` ignore SIGTERM and have a 10 s grace, so a
    teardown of them all is still under way seconds after the others are gone."""

    def spec(index: int) -> dict[str, object]:
        slow = index < stubborn
        container = {
            "id": "main",
            "image": s.image.name,
            "command": "sh",
            "args": STUBBORN if slow else SLEEPER,
        }
        grace = {"terminationGracePeriodSeconds": 10} if slow else {}
        return {
            "realmId": s.realm,
            "spaceId": "s1",
            "stackId": "st1",
            **grace,
            "containers": [container],
        }

    await asyncio.gather(
        *(
            s.registry.create(_doc(kind="Cell", metadata={"name": name}, spec=spec(index)))
            for index, name in enumerate(CELLS)
        )
    )


async def test_kill_9_mid_bringup_then_restart_converges(crashable: Setup) -> None:
    s = crashable
    realm = s.realm
    await make_hierarchy(s)
    await _create_cells(s)
    # Kill as soon as the daemon is part-way: some containers made, not all cells Ready.
    containers = s.containerd.containers(s.namespace)
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        if len(await containers.list()) >= 3:
            break
        await asyncio.sleep(0.02)
    s.daemon.kill()
    ready_at_kill = [
        c.metadata.name
        for c in (await s.registry.list(Kind.CELL, (realm,))).items
        if str(c.status.state) == "Ready"
    ]
    assert len(ready_at_kill) < len(CELLS), "the daemon was not killed mid-bringup"

    s.daemon.start()
    for name in CELLS:
        await s.wait(Kind.CELL, (realm, "s1", "st1", name), "Ready", within=90)

    await _assert_exactly_the_cells(s)


async def _assert_exactly_the_cells(s: Setup) -> None:
    """Every cell Ready with exactly one container, task, network namespace, attachment,
    cgroup and IPAM lease each, and nothing else of the realm's on the host."""
    realm = s.realm
    containers = s.containerd.containers(s.namespace)
    expected = {f"s1_st1_{name}_main" for name in CELLS}
    assert {c.id for c in await containers.list()} == expected
    tasks = await s.containerd.tasks(s.namespace).list()
    assert sorted(t.container_id for t in tasks) == sorted(expected)
    assert all(t.status == TaskStatus.RUNNING for t in tasks)

    cells = [c for c in (await s.registry.list(Kind.CELL, (realm,))).items if isinstance(c, Cell)]
    assert {c.metadata.name for c in cells} == set(CELLS)
    assert all(len(c.status.containers) == 1 for c in cells)
    ips = {c.status.network.ip for c in cells}
    assert len(ips) == len(CELLS)

    prefix = network_id_prefix(s.instance)
    network_ids = {f"{prefix}{realm}_s1_st1_{name}" for name in CELLS}
    assert {p.name for p in s.netns_dir.iterdir()} == network_ids
    attachments = s.state_dir / "network" / "attachments"
    assert {p.stem for p in attachments.glob("*.json")} == network_ids

    for path, children in _cgroup_children(s, realm, "s1", "st1"):
        assert children == set(CELLS), path

    space = await s.registry.get(Kind.SPACE, (realm, "s1"))
    assert isinstance(space, Space)
    bridge = space.status.network.bridge_name
    assert bridge
    leases = s.state_dir / "network" / "ipam" / bridge
    leased: dict[str, str] = {}
    for entry in leases.iterdir():
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(entry.name)
            leased[entry.name] = entry.read_text().splitlines()[0].strip()
    assert set(leased) == ips, leased
    assert set(leased.values()) == network_ids
    conflists = [p.name for p in s.cni_conf_dir.glob("*.conflist")]
    assert len(conflists) == 1, conflists


async def test_kill_9_ten_times_mid_bringup_leaves_exactly_the_cells(crashable: Setup) -> None:
    """The same, killed ten times at different points of the bring-up (the start-up of
    kukeond itself included): nothing lost, nothing duplicated, no orphan."""
    s = crashable
    await make_hierarchy(s)
    await _create_cells(s)
    phases = random.Random(15)  # fixed: a failure can be replayed
    for _round in range(10):
        await asyncio.sleep(phases.uniform(0.2, 2.0))
        s.daemon.kill()
        s.daemon.start()
    for name in CELLS:
        await s.wait(Kind.CELL, (s.realm, "s1", "st1", name), "Ready", within=120)
    await _assert_exactly_the_cells(s)
    assert len(s.daemon.starts) == 11


async def test_kill_9_mid_cascade_delete_of_a_space_leaves_nothing(crashable: Setup) -> None:
    """kill -9 while a space's cascade delete tears its ten cells down; the next kukeond
    finishes it: the space gone and nothing of it left on the host."""
    s = crashable
    realm = s.realm
    await make_hierarchy(s)
    await _create_cells(s, stubborn=5)
    for name in CELLS:
        await s.wait(Kind.CELL, (realm, "s1", "st1", name), "Ready", within=90)
    space = await s.registry.get(Kind.SPACE, (realm, "s1"))
    assert isinstance(space, Space)
    bridge = space.status.network.bridge_name
    assert bridge
    await s.registry.delete(Kind.SPACE, (realm, "s1"), cascade=True)
    containers = s.containerd.containers(s.namespace)
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        if len(await containers.list()) <= 7:
            break
        await asyncio.sleep(0.02)
    s.daemon.kill()
    left_at_kill = len(await containers.list())
    assert left_at_kill > 0, "the daemon was not killed mid-teardown"

    s.daemon.start()
    deadline = asyncio.get_running_loop().time() + 120
    while asyncio.get_running_loop().time() < deadline:
        try:
            await s.registry.get(Kind.SPACE, (realm, "s1"))
        except NotFound:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"space s1 is still there\n{s.daemon.tail()}")
    assert await containers.list() == []
    assert await s.containerd.tasks(s.namespace).list() == []
    assert [p.name for p in s.netns_dir.iterdir()] == []
    attachments = s.state_dir / "network" / "attachments"
    assert not attachments.exists() or list(attachments.glob("*.json")) == []
    assert not (s.state_dir / "network" / "ipam" / bridge).exists()
    assert list(s.cni_conf_dir.glob("*.conflist")) == []
    for path, children in _cgroup_children(s, realm):
        assert "s1" not in children, path
    shown = await asyncio.to_thread(
        subprocess.run, ["ip", "link", "show", bridge], capture_output=True, check=False
    )
    assert shown.returncode != 0, f"bridge {bridge} is still there"


def _set(s: Setup, version: str) -> AnyResource:
    script = "trap 'exit 0' TERM; while :; do sleep 1; done"
    return _doc(
        kind="CellSet",
        metadata={"name": "web"},
        spec={
            "realmId": s.realm,
            "spaceId": "s1",
            "stackId": "st1",
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "id": "a",
                            "image": s.image.name,
                            "command": "sh",
                            "args": ["-c", script],
                            "env": [f"V={version}"],
                        }
                    ]
                },
            },
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        },
    )


async def _set_cells(s: Setup) -> list[Cell]:
    listed = await s.registry.list(Kind.CELL, (s.realm, "s1", "st1"))
    return [c for c in listed.items if isinstance(c, Cell)]


async def _settled(s: Setup, hash_: str, *, within: float) -> list[Cell]:
    deadline = asyncio.get_running_loop().time() + within
    cells: list[Cell] = []
    while asyncio.get_running_loop().time() < deadline:
        cells = await _set_cells(s)
        if len(cells) == 4 and all(
            c.metadata.labels.get("kukeon.io/template-hash") == hash_
            and str(c.status.state) == "Ready"
            and c.metadata.deletion_timestamp is None
            for c in cells
        ):
            return cells
        await asyncio.sleep(0.3)
    shown = [(c.metadata.name, str(c.status.state), c.metadata.labels) for c in cells]
    raise AssertionError(f"not settled on {hash_}: {shown}\n{s.daemon.tail()}")


async def test_kill_9_mid_rolling_update_leaves_exactly_the_new_cells(crashable: Setup) -> None:
    """kill -9 several times while a CellSet rolls to a new template: it ends with exactly
    its replicas, all of the new template, one container each, nothing else."""
    from kukeon.api import CellSet

    s = crashable
    await make_hierarchy(s)
    first = _set(s, "1")
    await s.registry.create(first)
    assert isinstance(first, CellSet)
    await _settled(s, first.template_hash(), within=120)
    second = _set(s, "2")
    assert isinstance(second, CellSet)
    while True:  # the set's controller writes its status meanwhile: read again on a conflict
        stored = await s.registry.get(Kind.CELL_SET, (s.realm, "s1", "st1", "web"))
        assert isinstance(stored, CellSet)
        try:
            await s.registry.update(stored.model_copy(update={"spec": second.spec}))
        except Conflict:
            continue
        break
    hash_ = second.template_hash()
    phases = random.Random(7)  # fixed: a failure can be replayed
    for _ in range(3):
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            cells = await _set_cells(s)
            if any(c.metadata.labels.get("kukeon.io/template-hash") == hash_ for c in cells):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(phases.uniform(0, 1.5))
        s.daemon.kill()
        s.daemon.start()
    cells = await _settled(s, hash_, within=180)
    containers = s.containerd.containers(s.namespace)
    expected = {f"s1_st1_{c.metadata.name}_a" for c in cells}
    assert {c.id for c in await containers.list()} == expected
    tasks = await s.containerd.tasks(s.namespace).list()
    assert sorted(t.container_id for t in tasks) == sorted(expected)
    prefix = network_id_prefix(s.instance)
    names = {f"{prefix}{s.realm}_s1_st1_{c.metadata.name}" for c in cells}
    assert {p.name for p in s.netns_dir.iterdir()} == names


async def test_kill_9_mid_image_import_leaves_no_staging_file(crashable: Setup) -> None:
    """kill -9 while an image archive is being sent: the next kukeond removes what the
    interrupted import left under the state directory (nothing else can ever remove
    it)."""
    s = crashable
    await make_hierarchy(s)
    socket = s.state_dir.parent / "run" / "kukeond.sock"
    incoming = s.state_dir / "images" / "incoming"
    archive = s.image.archive.read_bytes()
    sent = asyncio.Event()
    hold = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield archive[: len(archive) // 2]
        sent.set()
        await hold.wait()  # never: the daemon dies first
        yield archive[len(archive) // 2 :]

    url = f"http://kukeond/apis/kukeon.io/v1beta1/realms/{s.realm}/images"
    connector = aiohttp.UnixConnector(path=str(socket))
    async with aiohttp.ClientSession(connector=connector) as http:
        upload = asyncio.ensure_future(
            http.post(url, data=body(), headers={"Content-Type": "application/x-tar"})
        )
        try:
            await asyncio.wait_for(sent.wait(), 30)
            deadline = asyncio.get_running_loop().time() + 30
            while not (incoming.is_dir() and any(p.stat().st_size for p in incoming.iterdir())):
                assert asyncio.get_running_loop().time() < deadline, "nothing staged"
                await asyncio.sleep(0.05)
            s.daemon.kill()
        finally:
            upload.cancel()
            await asyncio.gather(upload, return_exceptions=True)
    left = sorted(p.name for p in incoming.iterdir())
    assert left, "the killed import left nothing: the test did not kill it mid-way"

    s.daemon.start()
    await s.wait(Kind.REALM, (s.realm,), "Ready", within=60)
    deadline = asyncio.get_running_loop().time() + 60
    while sorted(p.name for p in incoming.iterdir()):
        assert asyncio.get_running_loop().time() < deadline, (left, s.daemon.tail())
        await asyncio.sleep(0.2)
    archives = s.state_dir / "images"
    assert list(archives.glob("*.partial")) == []


async def _serving(socket: Path, s: Setup, within: float = 60.0) -> None:
    """Until the restarted kukeond answers /readyz with 200."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            connector = aiohttp.UnixConnector(path=str(socket))
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.get("http://kukeond/readyz") as response,
            ):
                if response.status == 200:
                    return
        assert asyncio.get_running_loop().time() < deadline, s.daemon.tail()
        await asyncio.sleep(0.2)


async def _envelope_keys(s: Setup) -> list[str]:
    """The key id of every sealed Secret value in etcd."""
    prefix = f"{s.registry.layout.kind_prefix(Kind.SECRET).rstrip('/')}/{s.realm}/"
    stored = await s.registry.client.get_prefix(prefix.encode())
    return [json.loads(kv.value)["encryptedData"]["keyId"] for kv in stored]


async def test_kill_9_mid_key_rotation_leaves_every_value_readable(crashable: Setup) -> None:
    """kill -9 while rotate-key seals the Secrets again: the key file already names the
    new key current and keeps the old one, so every value opens after the restart, some
    under each key. The restarted kukeond warns that the rotation was interrupted (its
    marker in the state directory); rotate-key run again finishes the job and clears it."""
    s = crashable
    await make_hierarchy(s)
    key_file = s.state_dir / "encryption-keys.yaml"
    keyring = Keyring.load(key_file)
    old = keyring.current
    sealing = await Registry.connect(s.etcd, keyring=keyring)
    count = 150
    try:
        await asyncio.gather(
            *(
                sealing.create(
                    _doc(
                        kind="Secret",
                        metadata={"name": f"s{i}", "realm": s.realm},
                        stringData={"v": f"value-{i}"},
                    )
                )
                for i in range(count)
            )
        )
    finally:
        await sealing.close()
    assert set(await _envelope_keys(s)) == {old}

    socket = s.state_dir.parent / "run" / "kukeond.sock"
    url = "http://kukeond/apis/kukeon.io/v1beta1/encryption/rotate-key"
    connector = aiohttp.UnixConnector(path=str(socket))
    async with aiohttp.ClientSession(connector=connector) as http:
        rotation = asyncio.ensure_future(http.post(url, json={"prune": True}))
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while len(set(await _envelope_keys(s))) < 2:
                assert not rotation.done(), "the rotation ended before it was seen mid-way"
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            s.daemon.kill()
        finally:
            rotation.cancel()
            await asyncio.gather(rotation, return_exceptions=True)
    at_kill = await _envelope_keys(s)
    assert len(set(at_kill)) == 2, "not killed mid-way"
    marker = s.state_dir / "key-rotation-in-progress.json"
    assert marker.exists(), "the rotation left no trace of being cut short"

    logged = s.daemon.log.stat().st_size
    s.daemon.start()
    await _serving(socket, s)
    after = Keyring.load(key_file)
    # The restarted kukeond says the rotation was cut short, and how to finish it.
    since_restart = s.daemon.log.read_bytes()[logged:].decode(errors="replace")
    assert "key rotation on this node was interrupted" in since_restart, s.daemon.tail()
    assert f"rotate-key --key-id {after.current}" in since_restart
    assert old in after.key_ids
    assert after.current != old
    opening = await Registry.connect(s.etcd, keyring=after)
    try:
        listed = await opening.list(Kind.SECRET, (s.realm,))
        values = {
            secret.metadata.name: (secret.values() or {})["v"]
            for secret in listed.items
            if isinstance(secret, Secret)
        }
    finally:
        await opening.close()
    assert values == {f"s{i}": f"value-{i}".encode() for i in range(count)}

    # Run again, it says what it finds and finishes: every value under the new key.
    connector = aiohttp.UnixConnector(path=str(socket))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(url, json={"keyId": after.current, "prune": True}) as response,
    ):
        answer = await response.json()
        assert response.status == 200, answer
    assert answer["previousKeyId"] == after.current
    assert answer["currentKeyId"] == after.current
    assert 0 < answer["documentsResealed"] < count, answer
    assert answer["removedKeyIds"] == [old]
    assert set(await _envelope_keys(s)) == {after.current}
    assert not marker.exists(), "a completed rotation keeps saying it was interrupted"
