"""The rule that holds a cell to ``cellConnectionsLimit`` entries of the host's conntrack
table, and the dynamic set it counts in (``egress`` puts it in each space's chain).

Pure rendering only.
"""

from __future__ import annotations

import logging
from typing import Any

from kukeon.runtime.network.nfttable import FAMILY

log = logging.getLogger(__name__)

CELL_CONNECTIONS_COMMENT = "cell-connections"
CELL_CONNECTIONS_SET = "cell_connections"
CELL_CONNECTIONS_SOURCES = 65536
"""Source addresses the set counts for at once: a /16 pool's."""


def cell_connections_rule(
    saddr: dict[str, Any], limit: int
) -> list[tuple[str | None, list[dict[str, Any]], str]]:
    """A new connection of a source already holding ``limit`` in conntrack, dropped (none
    for 0): the dynamic set keeps one count per source address."""
    if not limit:
        return []
    count = {"ct count": {"val": limit, "inv": True}}
    over = {"set": {"op": "add", "elem": saddr, "set": f"@{CELL_CONNECTIONS_SET}", "stmt": [count]}}
    new = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["new"]}}
    return [(CELL_CONNECTIONS_COMMENT, [new, over], "drop")]


def connections_set_script(table: str) -> str:
    """The table and its ``cell_connections`` set, in nft's text syntax: its JSON (nft
    1.0.6) cannot say ``dynamic``, and a set made without the flag is not the one the
    kernel holds once a rule adds to it (each later ``add set`` of it was EEXIST)."""
    return (
        f"add table {FAMILY} {table}\n"
        f"add set {FAMILY} {table} {CELL_CONNECTIONS_SET} "
        f"{{ type ipv4_addr; size {CELL_CONNECTIONS_SOURCES}; flags dynamic; }}\n"
    )
