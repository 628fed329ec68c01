"""A cell cannot reach what listens on the host's 127.0.0.1 only, after a published port went.

Publishing a port that 127.0.0.1 reaches sets ``route_localnet=1`` on the cell's bridge (the
loopback DNAT needs it), which also makes the host take packets from that bridge addressed
to 127.0.0.0/8 (CVE-2020-8558); ``ports-guard`` drops those. The guard went with the last
publication while the bridge kept ``route_localnet=1``: every cell left on the bridge then
reached the host's loopback-only listeners (kukeond's metrics, a ``kukectl ui`` or
``kukectl port-forward`` of a local user, any service of the host's on 127.0.0.1).

The cell's packets are sent as a container with ``CAP_NET_RAW`` (in the default set) can
send them: a raw Ethernet frame to the gateway's MAC, from the cell's network namespace
(``nsenter``, the host's python3). The same frame addressed to the bridge's own address is
the control: it arrives, so the one to 127.0.0.1 that does not was really sent. A bridge
an older kukeond left at ``route_localnet=1`` without the guard is closed at the next start.

The table deleted by another process (what ``nft flush ruleset`` does to it) takes the
guard too: the bridge is closed at once, and the table, guard, egress rule and publication
come back by themselves (``controllers/nftkeeper.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from kukeon.daemon.app import Daemon
from kukeon.runtime.network import cell_network_id
from kukeon.runtime.network.ports import parse_ports_table
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

SEND_FRAME = r"""
import socket, struct, sys, time
target, port = sys.argv[1], int(sys.argv[2])
route = [l.split() for l in open("/proc/net/route").read().splitlines()[1:]]
gateway = next(socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
               for f in route if f[1] == "00000000")
if target == "gateway":
    target = gateway
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.connect((gateway, 9))
source = probe.getsockname()[0]
probe.send(b"")  # so that the gateway's MAC is in the ARP table
mac = None
for _ in range(50):
    for f in (l.split() for l in open("/proc/net/arp").read().splitlines()[1:]):
        if f[0] == gateway and f[3] != "00:00:00:00:00:00":
            mac = f[3]
    if mac:
        break
    time.sleep(0.1)
own = open("/sys/class/net/eth0/address").read().strip()
payload = b"from-the-cell"
udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                     socket.inet_aton(source), socket.inet_aton(target))
total = sum(struct.unpack("!10H", header))
total = (total & 0xFFFF) + (total >> 16)
header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
raw.bind(("eth0", 0))
raw.send(bytes.fromhex(mac.replace(":", "")) + bytes.fromhex(own.replace(":", ""))
         + b"\x08\x00" + header + udp)
print(gateway)
"""


@contextlib.contextmanager
def _listener(address: str) -> Iterator[socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind((address, 0))
        udp.settimeout(3)
        yield udp
    finally:
        udp.close()


def _send_from_cell(netns: Path, target: str, port: int) -> str:
    """Send the frame from the cell's namespace; the gateway's address."""
    sent = subprocess.run(
        ["nsenter", f"--net={netns}", "python3", "-c", SEND_FRAME, target, str(port)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert sent.returncode == 0, sent.stderr
    return sent.stdout.strip()


def _received(udp: socket.socket) -> bytes | None:
    try:
        return udp.recv(100)
    except TimeoutError:
        return None


async def test_a_cell_reaches_no_loopback_listener_of_the_host_after_a_release(
    kukeond: Kukeond,
) -> None:
    if shutil.which("python3") is None or shutil.which("nsenter") is None:
        pytest.skip("needs the host's python3 and nsenter")
    k = kukeond
    await k.hierarchy()
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        port = int(probe.getsockname()[1])
    code, _, err = await kukectl(k, "run", "web", "--image", k.image.name, "-p", f"{port}:80",
                                 *scope, "--", "sh", "-c", "exec sleep 3600")  # fmt: skip
    assert code == 0, err
    stay, _, setting = await _stay_beside_web(k)
    assert setting.read_text().strip() == "1"  # web's loopback publication needs it

    # The last publication goes; stay is still on the bridge.
    code, _, err = await kukectl(k, "delete", "cell", "web", *scope)
    assert code == 0, err
    await k.wait_gone(Kind.CELL, cell_key(k, "web"))

    netns = k.config.netns_dir / cell_network_id(stay, k.config.instance)
    await _assert_no_loopback_reached(netns)
    assert setting.read_text().strip() == "0"

    # What an older kukeond left (the bridge at 1, no guard) is closed at the next start.
    setting.write_text("1\n")
    await k.daemon.stop()
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    await k.wait_for(Kind.CELL, stay, state="Ready")
    for _ in range(100):
        if setting.read_text().strip() == "0":
            break
        await asyncio.sleep(0.1)
    assert setting.read_text().strip() == "0"
    await _assert_no_loopback_reached(netns)


async def _stay_beside_web(k: Kukeond) -> tuple[tuple[str, ...], str, Path]:
    """Cell ``stay`` beside ``web`` (made by the test), both Ready: its key, their bridge
    and the bridge's ``route_localnet``."""
    stay = cell_key(k, "stay")
    await k.apply(cell_doc(k, "stay", [container(k, "main")]))
    await k.wait_for(Kind.CELL, cell_key(k, "web"), state="Ready")
    ready = await k.wait_for(Kind.CELL, stay, state="Ready")
    assert isinstance(ready, Cell)
    bridge = ready.status.network.bridge_name
    assert bridge
    return stay, bridge, Path("/proc/sys/net/ipv4/conf") / bridge / "route_localnet"


async def _assert_no_loopback_reached(netns: Path) -> None:
    gateway = await asyncio.to_thread(_send_from_cell, netns, "gateway", 9)
    with _listener(gateway) as control, _listener("127.0.0.1") as loopback:
        await asyncio.to_thread(_send_from_cell, netns, "gateway", control.getsockname()[1])
        assert await asyncio.to_thread(_received, control) == b"from-the-cell"
        await asyncio.to_thread(_send_from_cell, netns, "127.0.0.1", loopback.getsockname()[1])
        loopback.settimeout(2)
        got = await asyncio.to_thread(_received, loopback)
        assert got is None, "a cell's packet reached a listener on the host's 127.0.0.1"


def _table(name: str) -> dict[str, Any] | None:
    shown = subprocess.run(
        ["nft", "-j", "list", "table", "inet", name], capture_output=True, text=True, check=False
    )
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def _whole(name: str, bridge: str) -> bool:
    """The egress allow rule, the cell's publication and a whole guard over the bridge."""
    listing = _table(name)
    if listing is None:
        return False
    ports = parse_ports_table(listing)
    egress_rules = [
        item["rule"].get("comment")
        for item in listing["nftables"]
        if item.get("rule", {}).get("chain") == f"egress-{bridge}"
    ]
    return bridge in ports.guarded and bool(ports.cell_chains()) and "rule-1" in egress_rules


async def test_a_deleted_table_comes_back_and_no_bridge_is_open_without_its_guard(
    kukeond: Kukeond,
) -> None:
    """What ``nft flush ruleset`` (nftables.service's start or reload) did: kukeond's table
    went, with the space's egress rule, the published port and ``ports-guard``, while the
    bridge kept ``route_localnet=1``; nothing wrote them again before the next change of
    the space or the cell (or the 300 s resync). Only the test kukeond's own table is
    deleted here: other tables of the host are not this test's."""
    if shutil.which("python3") is None or shutil.which("nsenter") is None:
        pytest.skip("needs the host's python3 and nsenter")
    k = kukeond
    table = k.config.nft_table
    # The node's pool allowed: the control frame to the gateway must arrive.
    allow = [{"cidr": str(k.config.subnet_pool)}, {"cidr": "192.0.2.0/24"}]
    egress = {"default": "deny", "allow": allow}
    await k.hierarchy(network={"egress": egress})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    page = "h138-restored"
    httpd = f"mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www"
    await k.apply(
        cell_doc(k, "web", [container(k, "srv", script=httpd, ports=[f"127.0.0.1:{port}:80"])])
    )
    stay, bridge, setting = await _stay_beside_web(k)
    await _until(lambda: _whole(table, bridge), within=30)
    assert setting.read_text().strip() == "1"
    await asyncio.sleep(1)  # the cells' passes done: none writes the table meanwhile

    seen: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()

    async def sample() -> None:
        while True:
            seen.append((loop.time(), setting.read_text().strip()))
            await asyncio.sleep(0.005)

    sampler = asyncio.ensure_future(sample())
    try:
        await asyncio.to_thread(
            subprocess.run, ["nft", "delete", "table", "inet", table], check=True
        )
        deleted_at = loop.time()
        await _until(lambda: _whole(table, bridge), within=15)
        restored_in = loop.time() - deleted_at
        await _until(lambda: setting.read_text().strip() == "1", within=15)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    closed = [at - deleted_at for at, value in seen if at >= deleted_at and value == "0"]
    assert closed, "route_localnet stayed 1 while ports-guard was gone"
    assert closed[0] < 1.0, f"closed {closed[0]:.3f} s after the table went"
    assert restored_in < 10, restored_in

    # Whole again: the guard keeps the cell from the host's loopback, the port answers.
    netns = k.config.netns_dir / cell_network_id(stay, k.config.instance)
    await _assert_no_loopback_reached(netns)
    assert page in await _http_get("127.0.0.1", port)
    assert k.daemon.events is not None

    async def said() -> bool:
        assert k.daemon.events is not None
        return any(
            event.reason == "NetworkRulesRestored"
            and event.involved_object.kind == "Space"
            and event.involved_object.name == "s1"
            and "deleted the table" in event.message
            for event in (await k.daemon.events.list(k.realm)).items
        )

    for _ in range(100):
        if await said():
            break
        await asyncio.sleep(0.1)
    assert await said()


async def _until(condition: Callable[[], bool], *, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "not within the bound"
        await asyncio.sleep(0.05)


async def _http_get(host: str, port: int) -> str:
    for _ in range(50):
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(3):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                answer = (await reader.read()).decode(errors="replace")
                writer.close()
                return answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"{host}:{port} did not answer")
