"""Cells resolve each other by name: a cell's name, `<name>.<stack>` and its containers'
`networksAliases` are in the hosts file of every cell on the same network of this node, and
a cell that goes leaves them. Before, an alias was only in the cell's own hosts file.

The `kukeond` fixture deletes the realm and sweeps the host after the test, passed or failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers.cellfiles import CellFiles
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in

pytestmark = pytest.mark.integration


async def _ready_ip(k: Kukeond, name: str, **where: str) -> str:
    cell = await k.wait_for(Kind.CELL, cell_key(k, name, **where), state="Ready", within=60)
    assert isinstance(cell, Cell)
    assert cell.status.network.ip is not None
    return cell.status.network.ip


def _hosts(k: Kukeond, name: str) -> str:
    return CellFiles(k.config.state_dir, (k.realm, "s1", "st1", name)).hosts.read_text()


async def _until(check: Callable[[], bool], what: str, within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.1)


async def test_cells_of_a_space_resolve_each_other_by_name_and_alias(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "web", [container(k, "main", networksAliases=["frontend"])]))
    web_ip = await _ready_ip(k, "web")
    await k.apply(cell_doc(k, "db", [container(k, "main")]))
    db_ip = await _ready_ip(k, "db")

    # The newer cell's first pass already lists the older one; the older one's file is
    # rewritten once the newer one has its address.
    assert f"{web_ip}\tfrontend" in _hosts(k, "db")
    await _until(lambda: f"{db_ip}\tdb.st1" in _hosts(k, "web"), "db in web's hosts file")
    for name, address in (("frontend", web_ip), ("web.st1", web_ip)):
        code, output = await exec_in(k, "s1_st1_db_main", "ping", "-c", "1", "-W", "2", name)
        assert code == 0, output
        assert address in output
    code, output = await exec_in(k, "s1_st1_web_main", "ping", "-c", "1", "-W", "2", "db")
    assert code == 0, output
    assert db_ip in output

    # The cell goes: its names leave the others' files (the same file: its inode is kept).
    inode = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", "web")).hosts.stat().st_ino
    await k.registry.delete(Kind.CELL, cell_key(k, "db"))
    await k.wait_gone(Kind.CELL, cell_key(k, "db"))
    await _until(lambda: "db" not in _hosts(k, "web").split(), "db gone from web's hosts file")
    assert CellFiles(k.config.state_dir, (k.realm, "s1", "st1", "web")).hosts.stat().st_ino == inode
    code, output = await exec_in(k, "s1_st1_web_main", "cat", "/etc/hosts")
    assert code == 0, output
    assert f"{db_ip}\t" not in output
