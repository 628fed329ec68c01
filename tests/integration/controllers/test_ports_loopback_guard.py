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
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from kukeon.daemon.app import Daemon
from kukeon.runtime.network import cell_network_id
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
    stay = cell_key(k, "stay")
    await k.apply(cell_doc(k, "stay", [container(k, "main")]))
    await k.wait_for(Kind.CELL, cell_key(k, "web"), state="Ready")
    ready = await k.wait_for(Kind.CELL, stay, state="Ready")
    assert isinstance(ready, Cell)
    bridge = ready.status.network.bridge_name
    assert bridge
    setting = Path("/proc/sys/net/ipv4/conf") / bridge / "route_localnet"
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


async def _assert_no_loopback_reached(netns: Path) -> None:
    gateway = await asyncio.to_thread(_send_from_cell, netns, "gateway", 9)
    with _listener(gateway) as control, _listener("127.0.0.1") as loopback:
        await asyncio.to_thread(_send_from_cell, netns, "gateway", control.getsockname()[1])
        assert await asyncio.to_thread(_received, control) == b"from-the-cell"
        await asyncio.to_thread(_send_from_cell, netns, "127.0.0.1", loopback.getsockname()[1])
        loopback.settimeout(2)
        got = await asyncio.to_thread(_received, loopback)
        assert got is None, "a cell's packet reached a listener on the host's 127.0.0.1"
