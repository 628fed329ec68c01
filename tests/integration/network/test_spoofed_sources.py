"""A cell cannot send from an address that is not its space's: realms stay a network boundary.

A container has ``CAP_NET_RAW`` (the runtime's default set, every security level), so it
can write IPv4 packets with any source address. The node routes between its bridges and
checked no source, so a cell of realm ``r`` sent a datagram "from" a cell of another realm
to a cell of a second space of ``r``; conntrack took it for a flow that other realm's cell
had opened, and the second cell's datagram back to it was that flow's reply: ``established``
passes every space's chain, so realm ``r`` spoke both ways with the other realm's UDP
services, which ``other-realm`` (a new connection to another realm's bridge) is there to
refuse. The same packets leave the node un-masqueraded, with whatever source a tenant
chose. Each space's chain now drops a packet from its bridge whose IPv4 source is not in the
space's subnet (``spoofed``). A forged ICMP error from a cell's own address is the other
way across (the last test).

The cells here are network namespaces attached as kukeond attaches them; the raw socket is
opened in the sender's namespace by root, as a container's process with the default
capabilities may.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kukeon.runtime.network import CellAttachment, EgressRuleset, bridge_name
from tests.integration.network.conftest import NetworkHarness, arun, serving

pytestmark = pytest.mark.integration

_ECHO = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1])))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    data, peer = s.recvfrom(2048)\n"
    "    s.sendto(b'echo:' + data, peer)\n"
)

_SPOOF = (
    "import socket, struct, sys\n"
    "source, port, target, target_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], "
    "int(sys.argv[4])\n"
    "payload = b'spoofed'\n"
    "udp = struct.pack('!HHHH', port, target_port, 8 + len(payload), 0) + payload\n"
    "header = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,\n"
    "    socket.inet_aton(source), socket.inet_aton(target))\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
    "for _ in range(3):\n"
    "    s.sendto(header + udp, (target, 0))\n"
)

_ASK = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', int(sys.argv[3])))\n"
    "s.settimeout(float(sys.argv[4]))\n"
    "print('bound', flush=True)\n"
    "sys.stdin.readline()\n"
    "s.sendto(b'hello', (sys.argv[1], int(sys.argv[2])))\n"
    "try:\n"
    "    while True:\n"
    "        data, _ = s.recvfrom(2048)\n"
    "        if data.startswith(b'echo:'):\n"
    "            print(data.decode(), flush=True); break\n"
    "except TimeoutError:\n"
    "    print('no answer', flush=True)\n"
)


_FORGE_ERROR = (
    "import socket, struct, sys\n"
    "own, victim, peer, port, peer_port = sys.argv[1:4] + [int(a) for a in sys.argv[4:6]]\n"
    "def checksum(data):\n"
    "    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))\n"
    "    total = (total >> 16) + (total & 0xFFFF)\n"
    "    return ~(total + (total >> 16)) & 0xFFFF\n"
    "def ip(source, target, protocol, length):\n"
    "    head = struct.pack('!BBHHHBBH4s4s', 0x45, 0, length, 1, 0, 64, protocol, 0,\n"
    "        socket.inet_aton(source), socket.inet_aton(target))\n"
    "    return head[:10] + struct.pack('!H', checksum(head)) + head[12:]\n"
    "quoted = ip(victim, peer, 17, 28 + 4) + struct.pack('!HHHH', port, peer_port, 12, 0)\n"
    "icmp = struct.pack('!BBHI', 3, 3, 0, 0) + quoted\n"
    "icmp = icmp[:2] + struct.pack('!H', checksum(icmp)) + icmp[4:]\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
    "for _ in range(3):\n"
    "    s.sendto(ip(own, victim, 1, 20 + len(icmp)) + icmp, (victim, 0))\n"
)
"""An ICMP port unreachable from the sender's own address to ``victim``, quoting a datagram
``victim:port`` sent to ``peer:peer_port``, as a router on the way would."""

_TALK = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(2.0)\n"
    "s.connect((sys.argv[1], int(sys.argv[2])))\n"
    "s.send(b'one'); s.recv(2048)\n"
    "print('ready', s.getsockname()[1], flush=True)\n"
    "sys.stdin.readline()\n"
    "time.sleep(0.3)\n"
    "try:\n"
    "    s.send(b'two'); print(s.recv(2048).decode(), flush=True)\n"
    "except ConnectionRefusedError:\n"
    "    print('refused', flush=True)\n"
)
"""A connected UDP socket's flow to ``argv[1]:argv[2]``: its first exchange, then (once
told) whether the second is answered or refused (an ICMP error received meanwhile)."""


def _in(netns: Path, script: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", netns.name, sys.executable, "-c", script, *map(str, args)]


@dataclass
class Talk:
    """A script in a cell's namespace that said its first line and waits to be told to go."""

    process: asyncio.subprocess.Process
    first: list[bytes]
    """The first line's words."""

    async def go(self) -> str:
        """Tell it to go; the next line it says."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()
        return (await asyncio.wait_for(self.process.stdout.readline(), 10)).decode().strip()


@contextlib.asynccontextmanager
async def talking(netns: Path, script: str, *args: object) -> AsyncIterator[Talk]:
    """``script`` run in ``netns`` with ``args``, once it said its first line; killed after."""
    process = await asyncio.create_subprocess_exec(
        *_in(netns, script, *args), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 10)
        yield Talk(process, first.split())
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def echo_answer(
    asker: Path, server: object, port: int, own_port: int, *, spoof_from: Path | None = None
) -> str:
    """What ``asker``, bound to ``own_port``, hears back from ``server:port``; with
    ``spoof_from``, that namespace first sends a datagram "from" ``server:port`` to it."""
    async with talking(asker, _ASK, server, port, own_port, 1.0) as talk:
        assert talk.first == [b"bound"], f"asker did not start: {talk.first!r}"
        if spoof_from is not None:
            address = await _address_in(asker)
            code, output = await arun(*_in(spoof_from, _SPOOF, server, port, address, own_port))
            assert code == 0, output
        return await talk.go()


async def _address_in(netns: Path) -> str:
    code, output = await arun("ip", "netns", "exec", netns.name, "ip", "-4", "-o", "addr")
    assert code == 0, output
    for line in output.splitlines():
        fields = line.split()
        if fields[1] != "lo":
            return fields[3].split("/")[0]
    raise AssertionError(f"no address in {netns.name}: {output}")


async def cells_in(harness: NetworkHarness, *where: tuple[str, str]) -> list[CellAttachment]:
    """A cell in each (realm, space), attached as kukeond attaches them (netlink; a space on
    CNI has the same chain), every space allowing all egress."""
    cells: list[CellAttachment] = []
    for realm, space in where:
        await harness.space(realm, space, EgressRuleset(default="allow"), builtin=True)
        cell = await harness.cell(realm, space, builtin=True)
        assert isinstance(cell, CellAttachment)
        cells.append(cell)
    return cells


async def counted(harness: NetworkHarness, realm: str, space: str) -> dict[str, int]:
    """The packets each counted rule of the space's chain matched."""
    bridge = bridge_name(realm, space, harness.settings.instance)
    return {c.name: c.packets for c in await harness.networks.egress.counters(bridge=bridge)}


async def test_a_spoofed_source_opens_no_flow_to_another_realm(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    other_space = harness.new_names()[1]
    other_realm, foreign_space = harness.new_names()
    sender, asker, foreign = await cells_in(
        harness, (realm, space), (realm, other_space), (other_realm, foreign_space)
    )
    port = 20000 + secrets.randbelow(20000)
    async with serving(_ECHO, port, netns=foreign.netns_path):  # a UDP echo server
        # Without a spoofed packet first, the other realm's cell is not reached.
        assert await echo_answer(asker.netns_path, foreign.ip, port, port + 1) == "no answer"
        answer = await echo_answer(
            asker.netns_path, foreign.ip, port, port + 2, spoof_from=sender.netns_path
        )
    assert answer == "no answer", "a spoofed datagram opened a flow to another realm's cell"
    assert (await counted(harness, realm, space))["spoofed"] >= 1


async def test_a_forged_icmp_error_reaches_no_cell_of_another_realm(
    harness: NetworkHarness,
) -> None:
    """An ICMP error quoting a flow of two cells of realm ``f``, sent by a cell of realm
    ``r`` from its own address: conntrack ties it to the flow (*related*) or, the flow being
    masqueraded as here, to none (*invalid*, on which ``ct status ! dnat`` matches nothing),
    and both passed ``r``'s chain to the default verdict: ``r`` cut ``f``'s flow with a port
    unreachable (the ports known here; guessed otherwise), and could lower its path MTU."""
    realm, space = harness.new_names()
    other_realm, foreign_space = harness.new_names()
    second_space = harness.new_names()[1]
    forger, victim, peer = await cells_in(
        harness, (realm, space), (other_realm, foreign_space), (other_realm, second_space)
    )
    port = 20000 + secrets.randbelow(20000)
    async with (
        serving(_ECHO, port, netns=peer.netns_path),
        talking(victim.netns_path, _TALK, peer.ip, port) as talk,
    ):
        assert talk.first[:1] == [b"ready"], talk.first
        forged = (forger.ip, victim.ip, peer.ip, int(talk.first[1]), port)
        code, output = await arun(*_in(forger.netns_path, _FORGE_ERROR, *forged))
        assert code == 0, output
        answer = await talk.go()
    assert answer == "echo:two", "a forged ICMP error of another realm's cell cut the flow"
    dropped = await counted(harness, realm, space)
    assert dropped["other-realm-invalid"] + dropped["other-realm"] >= 1, dropped
