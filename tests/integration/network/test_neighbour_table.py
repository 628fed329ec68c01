"""A cell cannot fill the host's neighbour (ARP) table: only its space's leased addresses get in.

The host's IPv4 neighbour table is one for the whole host (``net.ipv4.neigh.default.
gc_thresh3``, 1,024 by default, and an entry younger than 5 s is not forced out); full, the
host resolves no new neighbour on any interface, its LAN gateway included. A cell made
entries in it three ways, every container having ``CAP_NET_RAW``:

* an ARP request for the gateway from any sender address: the host makes an entry for the
  sender on the space's bridge (an address outside every subnet included);
* IP sent through the gateway to unleased addresses of another space of its realm (or of
  its own subnet): the host routes it onto that bridge and resolves each destination (an
  incomplete entry apiece);
* IP from an unleased address of its own subnet (which ``spoofed`` let through): the host's
  answer is for that address, which it resolves on the bridge.

Each space kukeon attaches itself now accepts ARP on its bridge only from an address leased
to one of its cells (an ``arp`` table beside the ``inet`` one), an IPv4 source on its bridge
only from one too, and routes to its bridge only to one; the sets follow the cells' attach
and detach. Another realm's subnet is dropped in the forward hook already, before the host
resolves anything (the last test).

Measured with a raw socket in a cell's namespace, as a container's process may write;
``COUNT`` addresses each, far below the host's table.
"""

from __future__ import annotations

import asyncio
import sys
from ipaddress import IPv4Address, IPv4Network

import pytest

from kukeon.runtime.network import CellAttachment, EgressRuleset, bridge_name
from tests.integration.network.conftest import NetworkHarness, arun, ping

pytestmark = pytest.mark.integration

COUNT = 24

_ARP = (
    "import fcntl, socket, struct, sys\n"
    "ifname, target = sys.argv[1], socket.inet_aton(sys.argv[2])\n"
    "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
    "s.bind((ifname, 0))\n"
    "mac = s.getsockname()[4]\n"
    "for sender in sys.argv[3:]:\n"
    "    arp = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, mac,\n"
    "        socket.inet_aton(sender), b'\\0' * 6, target)\n"
    "    s.send(b'\\xff' * 6 + mac + b'\\x08\\x06' + arp)\n"
)
"""An ARP request for ``argv[2]`` from each sender address ``argv[3:]``, out of ``argv[1]``."""

_SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "for target in sys.argv[1:]:\n"
    "    s.sendto(b'x', (target, 9))\n"
)
"""A UDP datagram to each address of ``argv[1:]``."""

_FROM = (
    "import socket, struct, sys\n"
    "target = socket.inet_aton(sys.argv[1])\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
    "echo = struct.pack('!BBHHH', 8, 0, 0, 1, 1)\n"
    "total = sum(struct.unpack('!4H', echo))\n"
    "total = (total >> 16) + (total & 0xFFFF)\n"
    "echo = echo[:2] + struct.pack('!H', ~(total + (total >> 16)) & 0xFFFF) + echo[4:]\n"
    "for source in sys.argv[2:]:\n"
    "    head = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(echo), 1, 0, 64, 1, 0,\n"
    "        socket.inet_aton(source), target)\n"
    "    s.sendto(head + echo, (sys.argv[1], 0))\n"
)
"""An ICMP echo request to ``argv[1]`` from each source address ``argv[2:]``."""


async def in_cell(cell: CellAttachment, script: str, *args: object) -> None:
    code, output = await arun(
        "ip", "netns", "exec", cell.netns_path.name, sys.executable, "-c", script,
        *map(str, args),
    )  # fmt: skip
    assert code == 0, output


async def neighbours(bridge: str) -> set[IPv4Address]:
    """The host's IPv4 neighbour entries on ``bridge``, whatever their state: from a whole
    dump (one the kernel interrupted, the table changing meanwhile, is read again)."""
    while True:
        code, output = await arun("ip", "-4", "neigh", "show", "dev", bridge)
        assert code == 0, output
        if "Dump was interrupted" not in output:
            return {IPv4Address(line.split()[0]) for line in output.splitlines() if line}


def unleased(subnet: IPv4Network, leased: set[IPv4Address]) -> list[IPv4Address]:
    """``COUNT`` addresses of ``subnet`` (from its top) that no cell holds."""
    hosts = [a for a in reversed(list(subnet.hosts())) if a not in leased]
    return hosts[:COUNT]


async def cells(harness: NetworkHarness, realm: str, space: str, n: int) -> list[CellAttachment]:
    await harness.space(realm, space, EgressRuleset(default="allow"), builtin=True)
    made = [await harness.cell(realm, space, builtin=True) for _ in range(n)]
    assert all(isinstance(cell, CellAttachment) for cell in made)
    return [cell for cell in made if isinstance(cell, CellAttachment)]


async def test_arp_from_an_unleased_sender_makes_no_host_entry(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    sender, other = await cells(harness, realm, space, 2)
    bridge = bridge_name(realm, space, harness.settings.instance)
    outside = [IPv4Address("198.18.0.0") + 1 + i for i in range(COUNT)]  # benchmark range
    inside = unleased(sender.subnet, {sender.ip, other.ip})
    assert sender.gateway is not None
    await in_cell(sender, _ARP, sender.ifname, sender.gateway, *outside, *inside)
    made = (await neighbours(bridge)) & {*outside, *inside}
    assert not made, f"{len(made)} host entries from ARP of unleased senders"
    # A cell's own address still resolves the gateway and is resolved by the host.
    code, output = await ping(other.netns_path, other.gateway)
    assert code == 0, output
    assert other.ip in await neighbours(bridge)


async def test_routed_ip_to_unleased_addresses_makes_no_host_entry(
    harness: NetworkHarness,
) -> None:
    realm, space = harness.new_names()
    second = harness.new_names()[1]
    (sender,) = await cells(harness, realm, space, 1)
    (reached,) = await cells(harness, realm, second, 1)
    targets = unleased(reached.subnet, {reached.ip}) + unleased(sender.subnet, {sender.ip})
    await in_cell(sender, _SEND, *targets)
    made: set[IPv4Address] = set()
    for where in (space, second):
        made |= (await neighbours(bridge_name(realm, where, harness.settings.instance))) & {
            *targets
        }
    assert not made, f"{len(made)} host entries resolving unleased addresses"
    # A leased address of the other space is still reached through the gateway.
    code, output = await ping(sender.netns_path, reached.ip)
    assert code == 0, output


async def test_an_unleased_source_of_the_subnet_makes_no_host_entry(
    harness: NetworkHarness,
) -> None:
    realm, space = harness.new_names()
    (sender,) = await cells(harness, realm, space, 1)
    assert sender.gateway is not None
    sources = unleased(sender.subnet, {sender.ip})
    await in_cell(sender, _FROM, sender.gateway, *sources)
    bridge = bridge_name(realm, space, harness.settings.instance)
    made = (await neighbours(bridge)) & set(sources)
    assert not made, f"{len(made)} host entries answering unleased sources"


async def test_the_leased_set_follows_attach_detach_and_a_deleted_table(
    harness: NetworkHarness,
) -> None:
    """A cell attached after the space is reached at once, a detached cell's address is
    refused again, and a space's chains come back whole after both tables went."""
    realm, space = harness.new_names()
    (first,) = await cells(harness, realm, space, 1)
    late = await harness.cell(realm, space, builtin=True)  # after the space's apply
    assert isinstance(late, CellAttachment)
    assert first.gateway is not None
    code, output = await ping(late.netns_path, first.gateway)
    assert code == 0, output
    bridge = bridge_name(realm, space, harness.settings.instance)
    conflist = harness.conflist_path(realm, space)
    await harness.networks.detach_cell(cell_id=late.cell_id, cni_config_path=conflist)
    code, output = await arun("ip", "neigh", "flush", "dev", bridge)
    assert code == 0, output
    await in_cell(first, _ARP, first.ifname, first.gateway, late.ip)
    assert late.ip not in await neighbours(bridge), "a detached cell's address is still leased"
    table = harness.settings.nft_table
    for family in ("inet", "arp"):
        code, output = await arun("nft", "delete", "table", family, table)
        assert code == 0, output
    await harness.space(realm, space, EgressRuleset(default="allow"), builtin=True)
    code, output = await ping(first.netns_path, first.gateway)
    assert code == 0, output
    await in_cell(first, _ARP, first.ifname, first.gateway, late.ip)
    assert late.ip not in await neighbours(bridge)


async def test_another_realms_subnet_is_dropped_before_resolution(
    harness: NetworkHarness,
) -> None:
    """Held already before the fix: ``other-realm`` drops it in the forward hook, which
    comes before the host's neighbour lookup for the packet's next hop."""
    realm, space = harness.new_names()
    other_realm, other_space = harness.new_names()
    (sender,) = await cells(harness, realm, space, 1)
    (foreign,) = await cells(harness, other_realm, other_space, 1)
    targets = unleased(foreign.subnet, {foreign.ip})
    await in_cell(sender, _SEND, *targets)
    bridge = bridge_name(other_realm, other_space, harness.settings.instance)
    assert not (await neighbours(bridge)) & set(targets)


_ECHO6 = (
    "import socket, sys\n"
    "ifindex = socket.if_nametoindex(sys.argv[1])\n"
    "for source in sys.argv[2:]:\n"
    "    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)\n"
    "    s.bind((source, 0, 0, ifindex))\n"
    "    s.sendto(bytes([128, 0, 0, 0, 0, 1, 0, 1]), ('ff02::1', 0, 0, ifindex))\n"
    "    s.close()\n"
)
"""An ICMPv6 echo request to every node of ``argv[1]``'s link from each source ``argv[2:]``
(the kernel sums a raw ICMPv6 socket's packets)."""


async def test_ipv6_from_a_cell_makes_no_host_entry(harness: NetworkHarness) -> None:
    """The host's IPv6 neighbour table is the whole host's as well (``net.ipv6.neigh.default.
    gc_thresh3``): a bridge with IPv6 answered an echo (or a solicitation) from every source
    a cell named, resolving each. Bridges kukeon makes carry no IPv6. The sources are added
    to the cell's interface here, where a container would write the packets itself."""
    realm, space = harness.new_names()
    (sender,) = await cells(harness, realm, space, 1)
    bridge = bridge_name(realm, space, harness.settings.instance)
    sources = [f"fe80::1:{index:x}" for index in range(1, COUNT + 1)]
    netns = sender.netns_path.name
    for source in sources:
        code, output = await arun(
            "ip", "-n", netns, "-6", "addr", "add", f"{source}/64", "dev", sender.ifname,
            "nodad",
        )  # fmt: skip
        assert code == 0, output
    for _ in range(50):  # a bridge with IPv6 answers once its address is past DAD (~1 s)
        code, output = await arun("ip", "-6", "addr", "show", "dev", bridge)
        if "tentative" not in output:
            break
        await asyncio.sleep(0.1)
    await in_cell(sender, _ECHO6, sender.ifname, *sources)
    code, output = await arun("ip", "-6", "neigh", "show", "dev", bridge)
    assert code == 0, output
    made = {line.split()[0] for line in output.splitlines() if line} & set(sources)
    assert not made, f"{len(made)} host IPv6 entries from a cell's sources"
    code, output = await arun("ip", "-6", "addr", "show", "dev", bridge)
    assert code == 0, output
    assert "inet6" not in output, output
