"""Server-side cascading deletion: the request only marks, kukeond's leader deletes the
children, however many, and finishes after a kukeond restart in the middle."""

from __future__ import annotations

import asyncio
import time

import pytest

from kukeon.api import Kind
from kukeon.daemon.app import Daemon
from kukeon.store import KeyLayout, NotFound
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, container

pytestmark = pytest.mark.integration

CELLS = 5000
GHOST = "no-such-node"
"""Cells pinned to a node that never runs them: etcd work only, no containers."""


async def _create_cells(k: Kukeond) -> None:
    gate = asyncio.Semaphore(32)

    async def one(n: int) -> None:
        async with gate:
            await k.apply(cell_doc(k, f"c{n}", [container(k, "a")], nodeName=GHOST))

    await asyncio.gather(*(one(n) for n in range(CELLS)))


async def _stored_under_realm(k: Kukeond) -> int:
    prefix = KeyLayout(k.config.etcd_prefix).scope_prefix(Kind.CELL, (k.realm,)).encode()
    return len(await k.registry.client.get_prefix(prefix, keys_only=True))


async def test_a_realm_of_5000_cells_goes_across_a_restart(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await _create_cells(k)
    assert await _stored_under_realm(k) == CELLS

    started = time.monotonic()
    marked = await k.registry.delete(Kind.REALM, (k.realm,), cascade=True, background=True)
    assert time.monotonic() - started < 2.0  # the request's part is the mark only
    assert marked is not None
    assert marked.metadata.deletion_timestamp is not None

    # Some children go, then kukeond stops mid-way and comes back.
    deadline = time.monotonic() + 120
    while await _stored_under_realm(k) > CELLS * 0.7:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    await k.daemon.stop()
    left_at_restart = await _stored_under_realm(k)
    assert left_at_restart > 0
    k.daemon = Daemon(k.config)
    await k.daemon.start()

    while True:
        try:
            await k.registry.get(Kind.REALM, (k.realm,))
        except NotFound:
            break
        assert time.monotonic() < deadline, f"{await _stored_under_realm(k)} cells left"
        await asyncio.sleep(0.5)
    assert await _stored_under_realm(k) == 0
