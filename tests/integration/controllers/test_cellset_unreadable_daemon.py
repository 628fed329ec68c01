"""A running set whose stored document becomes undecodable, in kukeond: its cells run on.

The leader's pass read the set by name from etcd (its cache no longer had it: the watch
skips an invalid version, as a deletion) and failed there, the whole pass, logging
"cell set pass failed" at every pass, each second, for as long as the key stayed
(tests/integration/store/test_cellset_unreadable.py: read from etcd's list, its cells were
deleted). Now its cells are kept, said once, and the set is managed again once fixed."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aetcd import rpc

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.daemon.test_unreadable_cells import MALFORMED, put_raw, until

from .test_cellsets import cells_of, set_doc, settle

pytestmark = pytest.mark.integration


async def test_a_set_made_unreadable_keeps_its_cells_and_its_passes(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(set_doc(k, 2))
    running = sorted(c.metadata.name for c in await settle(k, 2))
    key = k.registry.key_for(Kind.CELL_SET, (k.realm, "s1", "st1", "web"))
    client = k.registry.client
    good = (
        (await client.kvstub.Range(rpc.RangeRequest(key=key.encode()), metadata=client.metadata))
        .kvs[0]
        .value
    )
    fleet = k.daemon.fleet
    assert fleet is not None
    caplog.set_level(logging.INFO, logger="kukeon.controllers")
    await put_raw(k.registry, key, MALFORMED)
    passes = fleet.cellsets.passes

    async def passed_five_times() -> bool:
        return fleet.cellsets.passes >= passes + 5

    await until(passed_five_times)
    cells = await cells_of(k)
    assert sorted(c.metadata.name for c in cells) == running
    assert all(c.metadata.deletion_timestamp is None for c in cells)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "cell set pass failed" in m], messages
    assert len([m for m in messages if "kept, unmanaged" in m]) == 1, messages

    await put_raw(k.registry, key, good)
    await asyncio.sleep(0)
    assert sorted(c.metadata.name for c in await settle(k, 2)) == running
