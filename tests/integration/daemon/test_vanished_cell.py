"""A running cell whose key is removed from etcd behind kukeond's back (``etcdctl del``, a
restore from an older snapshot, a wiped etcd): no deletion ran, so no finalizer tears its
copy down, and nothing in etcd says it should run. An orphan pass runs at once and removes
its containers (before, they ran until the periodic pass, 300 s later)."""

from __future__ import annotations

import asyncio

import pytest
from aetcd import rpc

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container, task_ids

pytestmark = [pytest.mark.integration]


async def test_a_cell_whose_key_is_removed_stops_at_once(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "other", [container(k, "other")]))
    await k.apply(cell_doc(k, "gone", [container(k, "gone")]))
    await k.wait_for(Kind.CELL, cell_key(k, "gone"), state="Ready")
    await k.wait_for(Kind.CELL, cell_key(k, "other"), state="Ready")
    assert await task_ids(k) == {"s1_st1_gone_gone", "s1_st1_other_other"}

    client = k.registry.client
    etcd_key = k.registry.key_for(Kind.CELL, cell_key(k, "gone")).encode()
    await client.kvstub.DeleteRange(rpc.DeleteRangeRequest(key=etcd_key), metadata=client.metadata)

    deadline = asyncio.get_running_loop().time() + 30
    while "s1_st1_gone_gone" in await task_ids(k):
        assert asyncio.get_running_loop().time() < deadline, "the vanished cell still runs"
        await asyncio.sleep(0.2)
    assert await task_ids(k) == {"s1_st1_other_other"}
