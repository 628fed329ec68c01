"""A realm's serial key as the usage index follows it: who owns it, what a lost attempt
waits for, and that a relist (etcd compacted past the watch) ends that wait."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aetcd import rpc

from kukeon.store import KeyLayout, QuotaExceeded, Unavailable
from kukeon.store.quotaserial import Behind, QuotaSlot
from kukeon.store.realmquota import QuotaLimits, RealmQuotas

SERIAL = b"/kukeon/registry/quotaserials/r"
CELL = b"/kukeon/registry/cells/r/s/st/c"


class _Config:
    retry_timeout = 0.3


def _index() -> RealmQuotas:
    quotas = RealmQuotas(
        client=cast(Any, None),
        config=cast(Any, _Config()),
        layout=KeyLayout(),
        defaults=QuotaLimits(2, None),
    )
    quotas._synced.set()  # as after the first list
    return quotas


def _response(succeeded: bool, revision: int, serial: tuple[bytes, int] | None) -> Any:
    kvs = [SimpleNamespace(value=serial[0], mod_revision=serial[1])] if serial else []
    return SimpleNamespace(
        succeeded=succeeded,
        header=SimpleNamespace(revision=revision),
        responses=[SimpleNamespace(response_range=SimpleNamespace(kvs=kvs))],
    )


def _slot(quotas: RealmQuotas) -> QuotaSlot:
    return QuotaSlot(quotas, "r", objects=1, storage_bytes=10, label="cell c")


def test_the_serial_key_is_not_an_object_of_the_realm() -> None:
    quotas = _index()
    quotas.observe(SERIAL, b"token", 5)
    assert quotas.usage("r").objects == 0
    assert quotas.serial_state("r").revision == 5


async def test_a_take_over_compares_the_revision_then_its_writes_compare_the_token() -> None:
    quotas = _index()
    quotas.observe(SERIAL, b"theirs", 7)
    slot = _slot(quotas)
    async with slot.attempt() as guard:
        assert not guard.owned
        assert guard.compares[0].target == rpc.Compare.MOD
        assert guard.compares[0].mod_revision == 7
        assert slot.settle(guard, _response(True, 9, None)) is None
    assert quotas.owned_serial("r") == guard.token
    async with slot.attempt() as owned:
        assert owned.owned
        assert owned.compares[0].target == rpc.Compare.VALUE
        assert owned.compares[0].value == guard.token
    # Another node's write, as the watch shows it: the serial is no longer this node's.
    quotas.observe(SERIAL, b"theirs-again", 12)
    assert quotas.owned_serial("r") is None


async def test_a_realm_without_a_serial_key_compares_it_as_absent() -> None:
    slot = _slot(_index())
    async with slot.attempt() as guard:
        assert guard.compares[0].mod_revision == 0


async def test_a_lost_attempt_names_what_the_index_must_see_first() -> None:
    quotas = _index()
    slot = _slot(quotas)
    async with slot.attempt() as guard:
        behind = slot.settle(guard, _response(False, 20, (b"theirs", 15)))
    assert behind == Behind(15, absent=False)
    assert quotas.lost_rounds == 1
    async with slot.attempt() as guard:
        # The serial as compared: something else failed (the key exists...), not this.
        assert slot.settle(guard, _response(False, 20, None)) is None
    async with slot.attempt() as guard:
        # Its own earlier attempt, applied before its answer was lost: no loss.
        assert slot.settle(guard, _response(False, 21, (guard.token, 21))) is None
    assert quotas.owned_serial("r") == guard.token
    async with slot.attempt() as guard:
        # The key removed under an owner's token: wait for the removal.
        assert slot.settle(guard, _response(False, 30, None)) == Behind(30, absent=True)
    assert quotas.owned_serial("r") is None


async def test_a_lost_attempt_waits_for_the_watch_or_a_relist() -> None:
    quotas = _index()
    waiting = asyncio.create_task(quotas.wait_for_serial("r", Behind(15, absent=False)))
    await asyncio.sleep(0.01)
    quotas.observe(SERIAL, b"older", 14)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    quotas.observe(SERIAL, b"theirs", 15)
    await asyncio.wait_for(waiting, 1)
    # etcd compacted past the watch: the index lists again at a later revision.
    waiting = asyncio.create_task(quotas.wait_for_serial("r", Behind(40, absent=False)))
    await asyncio.sleep(0.01)
    quotas._rebuild({}, {}, 50, {"r": quotas.serial_state("r")})
    await asyncio.wait_for(waiting, 1)
    with pytest.raises(Unavailable):
        await quotas.wait_for_serial("r", Behind(99, absent=False))


async def test_each_attempt_checks_the_quota_again() -> None:
    quotas = _index()
    async with quotas.reserve("r", objects=1, storage_bytes=10, label="c1") as slot:
        # Another node's write the index saw meanwhile fills the realm (limit 2).
        quotas.observe(CELL, b"x", 3)
        quotas.observe(CELL + b"2", b"x", 4)
        with pytest.raises(QuotaExceeded):
            async with slot.attempt():
                pass


async def test_a_creates_hold_steps_aside_while_its_key_is_counted() -> None:
    quotas = _index()
    async with quotas.reserve("r", objects=1, storage_bytes=10, label="c", creates=CELL):
        assert quotas.usage("r").objects == 1
        quotas.observe(CELL, b"x", 3)  # the watch shows the write before its answer
        assert quotas.usage("r").objects == 1
        quotas.observe(CELL, None, 4)  # removed meanwhile: the hold counts again
        assert quotas.usage("r").objects == 1
        quotas.assume(CELL, b"x", 5)
    assert quotas.usage("r").objects == 1
