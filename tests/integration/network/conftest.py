"""Fixtures for the network integration tests: real CNI plugins, netns, nftables, bridges.

Every host object gets a random name (other helpers run tests on this machine at the same
time) and a finalizer removes it even when the test failed: the cells' namespaces and CNI
attachments, the spaces' bridges, conflists and IPAM leases, and the private nft table.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kukeon.runtime.network import (
    EgressRuleset,
    NetworkSettings,
    SpaceNetworks,
    SpaceNetworkStatus,
    bridge_name,
)
from kukeon.runtime.network.cni import DEFAULT_PLUGIN_DIRS
from kukeon.runtime.network.egress import DEFAULT_CELL_CONNECTIONS, NftEgress
from tests.fixtures.hostleaks import (
    own_netns_prefix,
    own_nft_table,
    own_state_dir,
    random_pool,
)
from tests.fixtures.services import require_binary, require_root

CNI_DIRS = tuple(str(d) for d in DEFAULT_PLUGIN_DIRS)


def require_network_host() -> None:
    require_root()
    for plugin in ("host-local", "portmap", "firewall", "loopback"):
        require_binary(plugin, "containernetworking-plugins", *CNI_DIRS)
    require_binary("nft", "nftables")
    require_binary("iptables", "iptables")
    require_binary("ip", "iproute2")
    require_binary("busybox", "busybox-static")


def run(*argv: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


async def arun(*argv: str, limit: float = 30) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, "timeout"
    return process.returncode or 0, out.decode(errors="replace")


async def ping(netns: Path, address: object) -> tuple[int, str]:
    return await arun(
        "ip", "netns", "exec", netns.name, "busybox", "ping", "-c1", "-W1", str(address)
    )


_CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    address = (sys.argv[1], int(sys.argv[2]))\n"
    "    socket.create_connection(address, timeout=float(sys.argv[3])).close()\n"
    "except OSError as error:\n"
    "    print(type(error).__name__, error); sys.exit(1)\n"
)


async def tcp_connects(netns: Path, address: object, port: int, *, wait: float = 1.5) -> bool:
    """Whether a TCP connect from inside ``netns`` to ``address:port`` succeeds."""
    code, _ = await arun(
        "ip", "netns", "exec", netns.name, sys.executable, "-c", _CONNECT,
        str(address), str(port), str(wait),
    )  # fmt: skip
    return code == 0


KILLED_MID_ATTACH = """
import asyncio, os, signal, sys
from pathlib import Path
from kukeon.runtime.network import NetworkSettings, SpaceNetworks, veth
from ipaddress import IPv4Network

def die(port):
    os.kill(os.getpid(), signal.SIGKILL)

veth.configure_inside = die  # killed once the veth pair exists, before its address
settings = NetworkSettings(
    state_dir=Path(sys.argv[1]), nft_table=sys.argv[2], subnet_pool=IPv4Network(sys.argv[3])
)
asyncio.run(
    SpaceNetworks(settings=settings).attach_cell(
        cell_id=sys.argv[4], cni_config_path=Path(sys.argv[5]), builtin=True
    )
)
"""
"""``killed_in_a_child``'s script of a kukeond killed mid-attach (cell id, conflist)."""


async def killed_in_a_child(harness: NetworkHarness, script: str, *args: str) -> None:
    """Run ``script`` in a child on the harness's settings (argv 1-3: state directory, nft
    table, pool; then ``args``), which must die of SIGKILL where the script says."""
    settings = harness.settings
    code, output = await arun(
        sys.executable, "-c", textwrap.dedent(script), str(settings.state_dir),
        settings.nft_table, str(settings.subnet_pool), *args,
    )  # fmt: skip
    assert code == -9, output


@contextlib.contextmanager
def foreign_veth() -> Iterator[str]:
    """A veth pair no kukeon made (an operator's, another tool's), removed at the end."""
    name = f"kf{secrets.token_hex(4)}"
    run("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p", check=True)
    try:
        yield name
    finally:
        run("ip", "link", "del", name)


@dataclass
class NetworkHarness:
    """A :class:`SpaceNetworks` on private settings that remembers what it created."""

    networks: SpaceNetworks
    suffix: str
    spaces: list[tuple[str, str, Path]] = field(default_factory=list)
    cells: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def settings(self) -> NetworkSettings:
        return self.networks.settings

    def new_names(self) -> tuple[str, str]:
        return f"r{secrets.token_hex(2)}", f"s{secrets.token_hex(2)}"

    def new_cell_id(self) -> str:
        return f"kkt-{self.suffix}-{secrets.token_hex(3)}"

    def conflist_path(self, realm: str, space: str) -> Path:
        return (
            self.settings.state_dir
            / "cni"
            / f"{bridge_name(realm, space, self.settings.instance)}.conflist"
        )

    async def space(
        self, realm: str, space: str, egress: EgressRuleset | None = None, *, builtin: bool = False
    ) -> SpaceNetworkStatus:
        path = self.conflist_path(realm, space)
        if (realm, space, path) not in self.spaces:
            self.spaces.append((realm, space, path))
        return await self.networks.ensure_space_network(
            realm=realm,
            space=space,
            cni_config_path=path,
            egress=egress or EgressRuleset(),
            builtin=builtin,
        )

    async def cell(
        self, realm: str, space: str, cell_id: str | None = None, *, builtin: bool = False
    ) -> object:
        cell_id = cell_id or self.new_cell_id()
        path = self.conflist_path(realm, space)
        self.cells.append((cell_id, path))
        return await self.networks.attach_cell(
            cell_id=cell_id, cni_config_path=path, builtin=builtin
        )

    async def cleanup(self) -> None:
        for cell_id, path in reversed(self.cells):
            with contextlib.suppress(Exception):
                await self.networks.detach_cell(cell_id=cell_id, cni_config_path=path)
            with contextlib.suppress(Exception):
                await self.networks.netns.remove(cell_id)
        for realm, space, path in reversed(self.spaces):
            with contextlib.suppress(Exception):
                await self.networks.remove_space_network(
                    realm=realm, space=space, cni_config_path=path
                )
            run("ip", "link", "del", bridge_name(realm, space, self.settings.instance))
        for family in ("inet", "arp"):
            run("nft", "delete", "table", family, self.settings.nft_table)


def new_harness(
    tmp_path: Path, *, cell_connections_limit: int = DEFAULT_CELL_CONNECTIONS
) -> NetworkHarness:
    """A harness on private names (its nft table, netns and state directory registered for
    the leak checks), its spaces' cells limited to ``cell_connections_limit`` connections."""
    require_network_host()
    suffix = secrets.token_hex(3)
    own_nft_table(f"kukeon_test_{suffix}")
    own_netns_prefix(f"kkt-{suffix}-")
    settings = NetworkSettings(
        state_dir=tmp_path / "state",
        nft_table=f"kukeon_test_{suffix}",
        subnet_pool=random_pool(),
    )
    own_state_dir(settings.state_dir)
    egress = NftEgress(table=settings.nft_table, cell_connections_limit=cell_connections_limit)
    return NetworkHarness(networks=SpaceNetworks(settings=settings, egress=egress), suffix=suffix)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[NetworkHarness]:
    harness = new_harness(tmp_path)
    try:
        yield harness
    finally:
        await harness.cleanup()


@dataclass
class NetnsServer:
    """A TCP listener started inside a network namespace (accepts and closes)."""

    process: asyncio.subprocess.Process


_SERVE = (
    "import socket, sys, selectors\n"
    "sel = selectors.DefaultSelector()\n"
    "for port in sys.argv[2:]:\n"
    "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind((sys.argv[1], int(port))); s.listen(16); sel.register(s, selectors.EVENT_READ)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    for key, _ in sel.select():\n"
    "        conn, _ = key.fileobj.accept(); conn.close()\n"
)


@contextlib.asynccontextmanager
async def serving(script: str, *args: object, netns: Path | None = None) -> AsyncIterator[None]:
    """Python ``script`` (which prints ``ready`` once it serves) run with ``args``, in
    ``netns`` or on the host, until the block ends."""
    prefix = ["ip", "netns", "exec", netns.name] if netns is not None else []
    process = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-c", script, *(str(a) for a in args),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.strip() == b"ready", f"server did not start: {line!r}"
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def tcp_listener(
    address: object, ports: Sequence[int], *, netns: Path | None = None
) -> AsyncIterator[None]:
    """Listen on ``address`` for each port, in ``netns`` or on the host, until the block ends."""
    async with serving(_SERVE, address, *ports, netns=netns):
        yield
