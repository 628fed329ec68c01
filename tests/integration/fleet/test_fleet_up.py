"""The fleet as hack/fleet-up.sh makes it: three hosts in their own network namespaces,
each with its own containerd, on a 3-member etcd; stop an etcd member, kill -9 one
kukeond and bring it back.

Here the hosts really are apart (own bridge per space, own iptables, own runc state), so
this is where a returning node's orphan collection is checked end to end.
"""

from __future__ import annotations

import asyncio
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
from kukeon.apiserver.client import ApiClient
from kukeon.apiserver.paths import collection_path
from tests.fixtures.containerd import BusyboxImage
from tests.fixtures.services import require_binary, require_root

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
LEASE_TTL = 3
SLEEPER = ["-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


@pytest.fixture
def fleet_dir() -> Iterator[Path]:
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
    env = {
        **os.environ,
        "KUKEON_NODE_LEASE_TTL": str(LEASE_TTL),
        "KUKEON_NODE_HEARTBEAT_SECONDS": "1",
        "KUKEON_FLEET_KUKEOND_ARGS": "--node-lost-timeout 3",
    }
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
async def clients(fleet_dir: Path) -> AsyncIterator[dict[str, ApiClient]]:
    opened = {
        f"n{i}": ApiClient(server=f"unix://{fleet_dir}/n{i}/run/kukeond.sock") for i in (1, 2, 3)
    }
    try:
        yield opened
    finally:
        for client in opened.values():
            await client.close()


def cell(name: str, image: str, **spec: Any) -> Cell:
    parsed = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "containers": [{"id": "main", "image": image, "command": "sh", "args": SLEEPER}],
                **spec,
            },
        }
    )
    assert isinstance(parsed, Cell)
    return parsed


async def cells(client: ApiClient) -> dict[str, Cell]:
    listed = await client.list(Kind.CELL)
    return {c.metadata.name: c for c in listed.items if isinstance(c, Cell)}


async def wait_until(check: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def host_containers(fleet_dir: Path, node: str) -> set[str]:
    socket = fleet_dir / node / "containerd" / "containerd.sock"
    listed = subprocess.run(
        ["ctr", "--address", str(socket), "-n", "default.kukeon.io", "containers", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(listed.stdout.split())


async def test_kill_9_a_host_then_it_returns_clean(
    fleet_dir: Path, clients: dict[str, ApiClient], containerd_test_image: BusyboxImage
) -> None:
    for client in clients.values():  # images are node-local: import on every host
        await client.upload(
            collection_path(Kind.REALM, ()) + "/default/images", containerd_test_image.archive
        )
    api = clients["n1"]
    image = containerd_test_image.name
    for index in range(6):
        await api.create(cell(f"w{index}", image))
    await api.create(cell("pinned", image, nodeName="n3"))

    async def all_ready() -> bool:
        found = await cells(api)
        return len(found) == 7 and all(str(c.status.state) == "Ready" for c in found.values())

    await wait_until(all_ready, within=120, what="every cell Ready")
    before = await cells(api)
    assert {c.spec.node_name for c in before.values()} == {"n1", "n2", "n3"}
    moving = {name for name, c in before.items() if c.spec.node_name == "n3"} - {"pinned"}
    assert moving

    # One etcd member goes away for the rest of the test: nothing may be lost.
    os.kill(int((fleet_dir / "etcd" / "m1" / "pid").read_text()), 15)
    pid = int((fleet_dir / "n3" / "kukeond.pid").read_text())
    os.kill(pid, 9)
    killed = time.monotonic()

    async def n3_not_ready() -> bool:
        node = await api.get(Kind.NODE, ("n3",))
        return isinstance(node, Node) and str(node.status.state) == "NotReady"

    await wait_until(n3_not_ready, within=LEASE_TTL + 5 + 5, what="n3 NotReady")
    assert time.monotonic() - killed <= LEASE_TTL + 5 + 5

    async def moved() -> bool:
        found = await cells(api)
        return (
            all(
                found[name].spec.node_name in ("n1", "n2")
                and str(found[name].status.state) == "Ready"
                for name in moving
            )
            and str(found["pinned"].status.state) == "Unknown"
        )

    await wait_until(moved, within=60, what="n3's unpinned cells Ready elsewhere")

    await asyncio.to_thread(
        subprocess.run, [str(fleet_dir / "n3" / "start-kukeond")], check=True, timeout=30
    )

    async def n3_back() -> bool:
        node = await api.get(Kind.NODE, ("n3",))
        found = await cells(api)
        return str(node.status.state) == "Ready" and str(found["pinned"].status.state) == "Ready"

    await wait_until(n3_back, within=60, what="n3 Ready again with its pinned cell")
    after = await cells(api)
    for node in ("n1", "n2", "n3"):
        wanted = {f"default_default_{n}_main" for n, c in after.items() if c.spec.node_name == node}
        assert await asyncio.to_thread(host_containers, fleet_dir, node) == wanted, node
