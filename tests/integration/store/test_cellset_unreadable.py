"""A cell set whose stored document does not decode keeps its cells.

Lists skip an invalid document, so the set controller's pass took such a set for deleted
and deleted every cell it owned (``_set_gone``, answered by the list when the sets are not
read from the operator's cache); read by name (from the cache) it failed the whole pass,
each second, for as long as the key stayed. The document is put with the registry's etcd
client, as ``etcdctl put`` would."""

from __future__ import annotations

import logging

import pytest
from aetcd import rpc

from kukeon.api import Cell, Kind
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry

from .test_cellset_quota_status import _set
from .test_realm_quotas import _parents

pytestmark = pytest.mark.integration

SET = ("r", "s", "st", "web")


async def _cells(registry: Registry) -> list[Cell]:
    return [c for c in (await registry.list(Kind.CELL, ("r",))).items if isinstance(c, Cell)]


async def test_an_unreadable_set_keeps_its_cells_until_fixed_or_deleted(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    await _parents(registry, "r")
    await registry.create(_set(2))
    controller = CellSetController(registry=registry)
    await controller.run_pass()
    made = sorted(c.metadata.name for c in await _cells(registry))
    assert len(made) == 2
    client = registry.client
    key = registry.key_for(Kind.CELL_SET, SET).encode()
    good = (await client.kvstub.Range(rpc.RangeRequest(key=key), metadata=client.metadata)).kvs[0]
    await client.kvstub.Put(
        rpc.PutRequest(key=key, value=b'{"kind": "CellSet", broken'), metadata=client.metadata
    )
    caplog.set_level(logging.WARNING, logger="kukeon.controllers.cellsets")
    for _ in range(3):
        await controller.run_pass()
    kept = await _cells(registry)
    assert sorted(c.metadata.name for c in kept) == made
    assert all(c.metadata.deletion_timestamp is None for c in kept)
    said = [r.getMessage() for r in caplog.records if "kept, unmanaged" in r.getMessage()]
    assert said == [
        "cell set r/s/st/web: its stored document is invalid (the registry's "
        "warning says why); its 2 cell(s) are kept, unmanaged, until it is fixed "
        "or deleted"
    ]

    # Fixed: managed again (scaled to what the document says).
    await client.kvstub.Put(rpc.PutRequest(key=key, value=good.value), metadata=client.metadata)
    await controller.run_pass()
    assert sorted(c.metadata.name for c in await _cells(registry)) == made

    # Bad again, then deleted: the set is gone, and its cells with it.
    await client.kvstub.Put(rpc.PutRequest(key=key, value=b"{"), metadata=client.metadata)
    await controller.run_pass()
    assert len(await _cells(registry)) == 2
    await client.kvstub.DeleteRange(rpc.DeleteRangeRequest(key=key), metadata=client.metadata)
    await controller.run_pass()
    assert all(c.metadata.deletion_timestamp is not None for c in await _cells(registry))
