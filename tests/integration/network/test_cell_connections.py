"""One cell cannot fill the host's conntrack table: new connections past its limit are dropped.

The conntrack table (``net.netfilter.nf_conntrack_max``, one for the whole host: a network
namespace other than the host's cannot lower it) holds an entry per flow the host forwards
or receives, every cell's included. When it is full, the kernel drops every new connection
of every realm and of the host itself. A cell sending one UDP datagram to each of many
ports makes one entry per port, which lives 30 s unanswered (``nf_conntrack_udp_timeout``), so
about 8,800 datagrams a second, which one Python loop in one cell sends, keep a
262,144-entry table full (derived from 200 of them making 200 entries, the first check below
without the rule). Each space's chain now
drops a new connection of a cell that holds kukeond's ``cellConnectionsLimit`` already
(``cell-connections``), before conntrack confirms it; the other cells are not held back.

Measured here at a small scale (a limit of 30, 200 datagrams) on cells attached as kukeond
attaches them, never near the host's real table.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from kukeon.runtime.network import (
    CellAttachment,
    EgressRuleset,
    bridge_name,
)
from tests.integration.network.conftest import (
    NetworkHarness,
    arun,
    new_harness,
    serving,
    tcp_connects,
)

pytestmark = pytest.mark.integration

LIMIT = 30
DATAGRAMS = 200

_SPRAY = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "for port in range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])):\n"
    "    s.sendto(b'x', (sys.argv[1], port))\n"
)

_SERVE = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(16)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    s.accept()[0].close()\n"
)


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[NetworkHarness]:
    """The network harness, its spaces' cells limited to ``LIMIT`` connections each."""
    harness = new_harness(tmp_path, cell_connections_limit=LIMIT)
    try:
        yield harness
    finally:
        await harness.cleanup()


def tracked_from(source: IPv4Address) -> int:
    """The host's conntrack entries whose original source is ``source``."""
    original = f"src={source}"
    with open("/proc/net/nf_conntrack") as table:
        # A line names the original direction's source first, then the reply's.
        return sum(1 for line in table if next(_sources(line), None) == original)


def _sources(line: str) -> Iterator[str]:
    return (field for field in line.split() if field.startswith("src="))


async def test_a_cell_holds_at_most_its_connection_limit(limited: NetworkHarness) -> None:
    realm, space = limited.new_names()
    await limited.space(realm, space, EgressRuleset(default="allow"), builtin=True)
    sprayer, server, neighbour = [await limited.cell(realm, space, builtin=True) for _ in range(3)]
    assert isinstance(sprayer, CellAttachment)
    assert isinstance(server, CellAttachment)
    assert isinstance(neighbour, CellAttachment)
    first = 20000 + secrets.randbelow(20000)
    code, output = await arun(
        "ip", "netns", "exec", sprayer.netns_path.name, sys.executable, "-c", _SPRAY,
        str(server.ip), str(first), str(DATAGRAMS),
    )  # fmt: skip
    assert code == 0, output
    assert tracked_from(sprayer.ip) <= LIMIT, "a cell held more connections than its limit"
    bridge = bridge_name(realm, space, limited.settings.instance)
    counted = {c.name: c.packets for c in await limited.networks.egress.counters(bridge=bridge)}
    assert counted["cell-connections"] >= DATAGRAMS - LIMIT, counted
    port = 20000 + secrets.randbelow(20000)
    async with serving(_SERVE, port, netns=server.netns_path):
        # The limit is the cell's: another cell of the space still connects, the full one not.
        assert await tcp_connects(neighbour.netns_path, server.ip, port)
        assert not await tcp_connects(sprayer.netns_path, server.ip, port, wait=1.0)


async def test_the_limit_is_back_after_the_table_is_deleted(limited: NetworkHarness) -> None:
    """The set the rule counts in is made once, in nft's text syntax; a ``flush ruleset``
    (nftables.service's start, firewalld's reload) deletes it with the table, and the next
    apply makes it again instead of failing on the missing set."""
    realm, space = limited.new_names()
    await limited.space(realm, space, builtin=True)
    code, output = await arun("nft", "delete", "table", "inet", limited.settings.nft_table)
    assert code == 0, output
    await limited.space(realm, space, builtin=True)
    bridge = bridge_name(realm, space, limited.settings.instance)
    counted = [c.name for c in await limited.networks.egress.counters(bridge=bridge)]
    assert "cell-connections" in counted
    code, output = await arun("nft", "list", "set", "inet", limited.settings.nft_table,
                              "cell_connections")  # fmt: skip
    assert code == 0, output
    assert "flags dynamic" in output
