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
space's subnet (``spoofed``).

The cells here are network namespaces attached as kukeond attaches them; the raw socket is
opened in the sender's namespace by root, as a container's process with the default
capabilities may.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
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


def _in(netns: Path, script: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", netns.name, sys.executable, "-c", script, *map(str, args)]


async def echo_answer(
    asker: Path, server: object, port: int, own_port: int, *, spoof_from: Path | None = None
) -> str:
    """What ``asker``, bound to ``own_port``, hears back from ``server:port``; with
    ``spoof_from``, that namespace first sends a datagram "from" ``server:port`` to it."""
    process = await asyncio.create_subprocess_exec(
        *_in(asker, _ASK, server, port, own_port, 1.0),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.strip() == b"bound", f"asker did not start: {line!r}"
        if spoof_from is not None:
            address = await _address_in(asker)
            code, output = await arun(*_in(spoof_from, _SPOOF, server, port, address, own_port))
            assert code == 0, output
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        answer = await asyncio.wait_for(process.stdout.readline(), 10)
        return answer.decode().strip()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def _address_in(netns: Path) -> str:
    code, output = await arun("ip", "netns", "exec", netns.name, "ip", "-4", "-o", "addr")
    assert code == 0, output
    for line in output.splitlines():
        fields = line.split()
        if fields[1] != "lo":
            return fields[3].split("/")[0]
    raise AssertionError(f"no address in {netns.name}: {output}")


async def test_a_spoofed_source_opens_no_flow_to_another_realm(harness: NetworkHarness) -> None:
    """Cells attached as kukeond attaches them (netlink); a space on CNI has the same chain."""
    realm, space = harness.new_names()
    other_space = harness.new_names()[1]
    other_realm, foreign_space = harness.new_names()
    allow = EgressRuleset(default="allow")
    for where in ((realm, space), (realm, other_space), (other_realm, foreign_space)):
        await harness.space(*where, allow, builtin=True)
    sender = await harness.cell(realm, space, builtin=True)
    asker = await harness.cell(realm, other_space, builtin=True)
    foreign = await harness.cell(other_realm, foreign_space, builtin=True)
    assert isinstance(sender, CellAttachment)
    assert isinstance(asker, CellAttachment)
    assert isinstance(foreign, CellAttachment)
    port = 20000 + secrets.randbelow(20000)
    async with serving(_ECHO, port, netns=foreign.netns_path):  # a UDP echo server
        # Without a spoofed packet first, the other realm's cell is not reached.
        assert await echo_answer(asker.netns_path, foreign.ip, port, port + 1) == "no answer"
        answer = await echo_answer(
            asker.netns_path, foreign.ip, port, port + 2, spoof_from=sender.netns_path
        )
    assert answer == "no answer", "a spoofed datagram opened a flow to another realm's cell"
    bridge = bridge_name(realm, space, harness.settings.instance)
    counters = await harness.networks.egress.counters(bridge=bridge)
    assert {c.name: c.packets for c in counters}["spoofed"] >= 1
