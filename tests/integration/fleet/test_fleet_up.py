"""The fleet as hack/fleet-up.sh makes it: three hosts in their own network namespaces,
each with its own containerd, on a 3-member etcd; stop an etcd member, kill -9 one
kukeond and bring it back, then the etcd member.

Here the hosts really are apart (own bridge per space, own iptables, own runc state), so
this is where a returning node's orphan collection is checked end to end, and where the
real `kukectl` reads a cell's logs (and execs in it) through another node's TCP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, Kind, Node, parse_resource
from kukeon.client.apiclient import ApiClient
from kukeon.store.pki import EtcdPki
from tests.fixtures.containerd import BusyboxImage
from tests.fixtures.etcd import etcdctl_tls_args
from tests.fixtures.services import require_binary, require_root

from .conftest import SLEEPER

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
LEASE_TTL = 3
TICKER = ["-c", "trap 'exit 0' TERM; i=0; while :; do echo tick$i; i=$((i+1)); sleep 0.3; done"]
KUKECTL = str(REPO / ".venv" / "bin" / "kukectl")


@contextlib.contextmanager
def started_fleet(**settings: str) -> Iterator[Path]:
    """hack/fleet-up.sh with three nodes and these environment settings; fleet-down after."""
    require_root()
    for binary, package in (
        ("etcd", "etcd-server"),
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("ctr", "containerd"),
        ("ip", "iproute2"),
    ):
        require_binary(binary, package)
    require_binary("bridge", "containernetworking-plugins", "/usr/lib/cni", "/opt/cni/bin")
    # Short: unix socket paths below it must stay under 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="kf-", dir="/tmp")) / "fleet"
    env = {**os.environ, **settings}
    try:
        result = subprocess.run(
            [str(REPO / "hack" / "fleet-up.sh"), str(directory), "--nodes", "3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        yield directory
    finally:
        subprocess.run(
            [str(REPO / "hack" / "fleet-down.sh"), str(directory)],
            capture_output=True,
            timeout=180,
            check=False,
        )
        shutil.rmtree(directory.parent, ignore_errors=True)


@pytest.fixture
def fleet_dir() -> Iterator[Path]:
    with started_fleet(
        KUKEON_NODE_LEASE_TTL=str(LEASE_TTL),
        KUKEON_NODE_HEARTBEAT_SECONDS="1",
        KUKEON_FLEET_KUKEOND_ARGS="--node-lost-timeout 3",
    ) as directory:
        yield directory


@pytest.fixture
async def clients(fleet_dir: Path) -> AsyncIterator[dict[str, ApiClient]]:
    opened = {
        f"n{i}": ApiClient(server=f"unix://{fleet_dir}/n{i}/run/kukeond.sock") for i in (1, 2, 3)
    }
    try:
        yield opened
    finally:
        for client in opened.values():
            await client.close()


def cell(name: str, image: str, *, args: list[str] = SLEEPER, **spec: Any) -> Cell:
    parsed = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "containers": [{"id": "main", "image": image, "command": "sh", "args": args}],
                **spec,
            },
        }
    )
    assert isinstance(parsed, Cell)
    return parsed


async def cells(client: ApiClient) -> dict[str, Cell]:
    listed = await client.list(Kind.CELL)
    return {c.metadata.name: c for c in listed.items if isinstance(c, Cell)}


async def wait_until(
    check: Any, *, within: float, what: str, client: ApiClient | None = None
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    shown = ""
    if client is not None:  # where every cell is and why
        shown = "; ".join(
            f"{name}: {c.spec.node_name} {c.status.state} {c.status.reason} {c.status.message}"
            for name, c in (await cells(client)).items()
        )
    raise AssertionError(f"timed out waiting for {what}: {shown}")


def kukectl_via(fleet_dir: Path, node: str) -> list[str]:
    """kukectl talking to ``node``'s TCP API, as a user on another machine would."""
    address = (fleet_dir / node / "address").read_text().strip()
    return [
        KUKECTL,
        "--server",
        f"https://{address}:6443",
        "--token",
        (fleet_dir / "admin.token").read_text().strip(),
        "--certificate-authority",
        str(fleet_dir / "pki" / "ca.crt"),
    ]


async def kukectl(fleet_dir: Path, node: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *kukectl_via(fleet_dir, node),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def check_logs_and_exec_through_other_nodes(fleet_dir: Path, talker: Cell) -> None:
    """`kukectl logs` (plain and -f) and `exec` of a cell on one node, through another."""
    here = talker.spec.node_name
    assert here
    other = next(n for n in ("n1", "n2", "n3") if n != here)
    code, out, err = await kukectl(fleet_dir, other, "logs", "talker", "--tail", "3")
    assert code == 0, err
    assert out.startswith("tick"), out

    follower = await asyncio.create_subprocess_exec(
        *kukectl_via(fleet_dir, other), "logs", "talker", "-f", "--tail", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        lines = [await asyncio.wait_for(follower.stdout.readline(), 10) for _ in range(3)]
    finally:
        follower.terminate()
        await follower.wait()
    numbers = [int(line.decode().strip().removeprefix("tick")) for line in lines]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]  # a live stream

    code, out, err = await kukectl(
        fleet_dir, other, "exec", "talker", "--", "sh", "-c", "echo inside; exit 3"
    )
    assert (code, out) == (3, "inside\n"), err


def etcd_keys(fleet_dir: Path, member: str, prefix: str) -> list[str]:
    """The keys under ``prefix`` as ``member`` alone has them (a serializable local read)."""
    endpoint = (fleet_dir / "endpoints").read_text().strip().split(",")[int(member[1:])]
    pki = EtcdPki(fleet_dir / "etcd" / "pki")
    listed = subprocess.run(
        ["etcdctl", "--endpoints", endpoint, *etcdctl_tls_args(pki), "get", prefix, "--prefix",
         "--keys-only", "--consistency=s"],
        env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line for line in listed.stdout.splitlines() if line]


def host_containers(fleet_dir: Path, node: str) -> set[str]:
    """The containers of realm `default` in the node's containerd: its namespace is
    `default.kukeon.io`, with the installation's tag in the middle (`default.<tag>.kukeon.io`)
    since the fleet's state directories are not /var/lib/kukeon."""
    socket = fleet_dir / node / "containerd" / "containerd.sock"

    def ctr(*args: str) -> list[str]:
        listed = subprocess.run(
            ["ctr", "--address", str(socket), *args], capture_output=True, text=True, check=True
        )
        return listed.stdout.split()

    namespaces = [
        name
        for name in ctr("namespaces", "ls", "-q")
        if name.startswith("default.") and name.endswith(".kukeon.io")
    ]
    return {
        cid for namespace in namespaces for cid in ctr("-n", namespace, "containers", "ls", "-q")
    }


async def test_kill_9_a_host_then_it_returns_clean(
    fleet_dir: Path, clients: dict[str, ApiClient], containerd_test_image: BusyboxImage
) -> None:
    api = clients["n1"]
    for node in clients:  # images are node-local: n1's API forwards each import to its node
        archive = str(containerd_test_image.archive)
        code, out, err = await kukectl(fleet_dir, "n1", "image", "import", archive, "--node", node)
        assert code == 0, err
        assert f"imported into realm default on node {node}" in out
    image = containerd_test_image.name
    for index in range(6):
        await api.create(cell(f"w{index}", image))
    await api.create(cell("pinned", image, nodeName="n3"))
    await api.create(cell("talker", image, args=TICKER, nodeName="n2"))

    async def all_ready() -> bool:
        found = await cells(api)
        return len(found) == 8 and all(str(c.status.state) == "Ready" for c in found.values())

    await wait_until(all_ready, within=120, what="every cell Ready", client=api)
    before = await cells(api)
    assert {c.spec.node_name for c in before.values()} == {"n1", "n2", "n3"}
    moving = {name for name, c in before.items() if c.spec.node_name == "n3"} - {"pinned"}
    assert moving
    await check_logs_and_exec_through_other_nodes(fleet_dir, before["talker"])

    # One etcd member goes away during the node loss and the rescheduling: nothing is lost.
    etcd_pid = int((fleet_dir / "etcd" / "m1" / "pid").read_text())
    os.kill(etcd_pid, 15)
    pid = int((fleet_dir / "n3" / "kukeond.pid").read_text())
    os.kill(pid, 9)
    killed = time.monotonic()

    async def n3_not_ready() -> bool:
        node = await api.get(Kind.NODE, ("n3",))
        return isinstance(node, Node) and str(node.status.state) == "NotReady"

    # n3 may have been the scheduler's leader: then a new one is elected (its lease's TTL)
    # and waits its heartbeat grace (at least 20 s) for a node it has not heard in its term.
    within = LEASE_TTL + 5 + 5 + LEASE_TTL + 20
    await wait_until(n3_not_ready, within=within, what="n3 NotReady")
    assert time.monotonic() - killed <= within
    # The fleet keeps working on two etcd members: a new cell is placed and runs.
    await clients["n2"].create(cell("during", image))

    async def moved() -> bool:
        found = await cells(api)
        return (
            all(
                found[name].spec.node_name in ("n1", "n2")
                and str(found[name].status.state) == "Ready"
                for name in {*moving, "during"}
            )
            and str(found["pinned"].status.state) == "Unknown"
        )

    await wait_until(
        moved, within=60, what="n3's unpinned cells (and a new one) Ready elsewhere", client=api
    )
    # The lost node's cells are refused with a reason, not forwarded into the void.
    code, _, err = await kukectl(fleet_dir, "n1", "logs", "pinned")
    assert code == 1
    assert "pinned is on node n3, but that node is NotReady" in err, err

    await asyncio.to_thread(
        subprocess.run, [str(fleet_dir / "n3" / "start-kukeond")], check=True, timeout=30
    )

    async def n3_back() -> bool:
        node = await api.get(Kind.NODE, ("n3",))
        found = await cells(api)
        return str(node.status.state) == "Ready" and str(found["pinned"].status.state) == "Ready"

    await wait_until(n3_back, within=60, what="n3 Ready again with its pinned cell", client=api)
    after = await cells(api)
    # Every cell document survived, each where it was or where the scheduler moved it.
    assert set(after) == {*before, "during"}
    for name, old in before.items():
        placed = ("n1", "n2") if name in moving else (old.spec.node_name,)
        assert after[name].spec.node_name in placed, name
        assert after[name].metadata.uid == old.metadata.uid, name
    for node in ("n1", "n2", "n3"):
        wanted = {f"default_default_{n}_main" for n, c in after.items() if c.spec.node_name == node}
        assert await asyncio.to_thread(host_containers, fleet_dir, node) == wanted, node

    # The etcd member comes back and catches up with what happened without it.
    await asyncio.to_thread(
        subprocess.run, [str(fleet_dir / "etcd" / "m1" / "start-etcd")], check=True, timeout=30
    )
    cell_prefix = "/kukeon/registry/cells/"
    wanted_keys = await asyncio.to_thread(etcd_keys, fleet_dir, "m0", cell_prefix)
    assert len(wanted_keys) == len(after)

    async def m1_caught_up() -> bool:
        try:
            keys = await asyncio.to_thread(etcd_keys, fleet_dir, "m1", cell_prefix)
        except subprocess.CalledProcessError:
            return False
        return keys == wanted_keys

    await wait_until(m1_caught_up, within=30, what="etcd member m1 back with every cell")
    await check_logs_and_exec_through_other_nodes(fleet_dir, after["talker"])
