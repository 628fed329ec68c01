"""The realms' usage index counts each key once, whatever the order in which a write's own
report and the watch's event arrive, and a stale change never overrides a newer one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from kukeon.store import KeyLayout, QuotaExceeded, Unavailable, realmquota
from kukeon.store.realmquota import QuotaLimits, RealmQuotas, Usage, limits_of

ROOT = "/kukeon/registry"
CELL = f"{ROOT}/cells/r/s/st/c".encode()
REALM = f"{ROOT}/realms/r".encode()


NO_DEFAULTS = QuotaLimits(None, None)


def _index(defaults: QuotaLimits = NO_DEFAULTS) -> RealmQuotas:
    quotas = RealmQuotas(
        client=cast(Any, None), config=cast(Any, _Config()), layout=KeyLayout(), defaults=defaults
    )
    quotas._synced.set()  # as after the first list
    return quotas


class _Config:
    retry_timeout = 1.0


def _size(key: bytes, value: bytes) -> int:
    return len(key) + len(value)


def test_a_write_and_its_watch_event_count_once() -> None:
    quotas = _index()
    quotas.assume(CELL, b"x" * 10, 5)
    quotas.observe(CELL, b"x" * 10, 5)
    assert quotas.usage("r") == Usage(1, _size(CELL, b"x" * 10))


def test_a_write_the_watch_has_already_passed_is_not_counted_again() -> None:
    quotas = _index()
    quotas.observe(CELL, b"x", 5)
    quotas.observe(CELL, None, 6)  # deleted right after
    quotas._revision = 6
    quotas.assume(CELL, b"x", 5)  # the create's own report, late
    assert quotas.usage("r") == Usage(0, 0)
    assert "r" not in quotas.realms()


def test_a_stale_event_does_not_undo_a_newer_write() -> None:
    quotas = _index()
    quotas.assume(CELL, b"x" * 100, 9)
    quotas.observe(CELL, b"x", 7)  # the watch is behind the write
    assert quotas.usage("r").storage_bytes == _size(CELL, b"x" * 100)


def test_a_realm_documents_limits_follow_its_newest_version() -> None:
    quotas = _index(QuotaLimits(50, None))
    quotas.assume(REALM, b'{"spec":{"quota":{"objects":3}}}', 10)
    quotas.observe(REALM, b'{"spec":{}}', 8)  # older than the write just made
    assert quotas.limits("r") == QuotaLimits(3, None)
    quotas.observe(REALM, b'{"spec":{}}', 11)
    assert quotas.limits("r") == QuotaLimits(50, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"spec":{"quota":{"objects":3,"storageBytes":10}}}', QuotaLimits(3, 10)),
        (b'{"spec":{"quota":{"objects":-1,"storageBytes":true}}}', QuotaLimits(None, None)),
        (b'{"spec":{"quota":"lots"}}', QuotaLimits(None, None)),
        (b"\xff not json", QuotaLimits(None, None)),
        (b"[]", QuotaLimits(None, None)),
    ],
)
def test_a_stored_realms_limits_are_read_as_untrusted(value: bytes, expected: QuotaLimits) -> None:
    assert limits_of(value) == expected


async def test_reservations_in_flight_count_against_the_limit() -> None:
    quotas = _index(QuotaLimits(2, None))
    async with (
        quotas.reserve("r", objects=1, storage_bytes=10, label="a"),
        quotas.reserve("r", objects=1, storage_bytes=10, label="b"),
    ):
        with pytest.raises(QuotaExceeded):
            async with quotas.reserve("r", objects=1, storage_bytes=10, label="c"):
                pass
    assert quotas.usage("r") == Usage(0, 0)
    # A growth (no new object) is refused only by the bytes limit.
    async with quotas.reserve("r", objects=0, storage_bytes=10**9, label="d"):
        pass


async def test_a_hold_across_a_relist_is_released() -> None:
    """A relist (after compaction, or the index's task restarted) while a write is in
    flight carries the hold over to the new index; the write's end must release it there,
    not in the index the relist replaced (the realm stayed charged for ever)."""
    quotas = _index(QuotaLimits(3, None))
    async with quotas.reserve("r", objects=1, storage_bytes=50, label="cell c"):
        quotas._rebuild({}, {}, 10)  # what _list ends with
        assert quotas.usage("r") == Usage(1, 50)
    assert quotas.usage("r") == Usage(0, 0)
    await quotas.check("r", objects=3, storage_bytes=0, label="cell c")  # all of it free


def test_keys_written_around_the_registry_neither_stop_nor_skew_the_index() -> None:
    """What etcdctl may leave under the registry: keys too short to name an object, a realm
    name that is not UTF-8, a realm key with more parts, a kind the quota does not count."""
    quotas = _index()
    odd = [
        f"{ROOT}/cells".encode(),
        f"{ROOT}/cells/".encode(),
        f"{ROOT}/realms/r/extra".encode(),
        f"{ROOT}/nodes/n1".encode(),
        f"{ROOT}/unknown/r/x".encode(),
        b"/elsewhere/cells/r/s/st/c",
    ]
    for revision, key in enumerate(odd, start=1):
        quotas.observe(key, b"{}", revision)
    assert quotas.usage("r") == Usage(0, 0)
    assert quotas.limits("r") == NO_DEFAULTS
    # A key naming a realm in bytes that are not UTF-8 is counted, apart from "r".
    quotas.observe(f"{ROOT}/cells/".encode() + b"\xff\xfe/s/st/c", b"x", 20)
    assert quotas.usage("r") == Usage(0, 0)
    assert [realm for realm in quotas.realms() if realm != "r"] == ["\ufffd\ufffd"]
    quotas.observe(f"{ROOT}/cells/".encode() + b"\xff\xfe/s/st/c", None, 21)
    assert list(quotas.realms()) == []


SPACE = f"{ROOT}/spaces/r/s1".encode()
SPACE_LIMIT = b'{"spec":{"quota":{"spaces":2}}}'


async def test_spaces_are_counted_against_their_own_limit() -> None:
    """Each space takes a subnet of a node's pool on every node it runs cells on: a realm
    creating spaces could exhaust the pool for every realm. `spec.quota.spaces` bounds them,
    created and in flight; other objects do not count; a deleted space frees its place."""
    quotas = _index()
    assert limits_of(SPACE_LIMIT) == QuotaLimits(None, None, 2)
    quotas.observe(REALM, SPACE_LIMIT, 3)
    # A space naming a cniConfigPath counts as well: that is only where its conflist is
    # written, its subnet still comes from the node's pool.
    quotas.observe(SPACE, b'{"spec":{"cniConfigPath":"/etc/kukeon/cni"}}', 4)
    quotas.observe(CELL, b"{}", 5)  # not a space
    assert quotas.usage("r").spaces == 1
    second = f"{ROOT}/spaces/r/s2".encode()
    third = f"{ROOT}/spaces/r/s3".encode()
    async with quotas.reserve(
        "r", objects=1, storage_bytes=10, label="space s2", creates=second, spaces=1
    ) as slot:
        assert quotas.usage("r").spaces == 2
        slot._check()  # an attempt's check: its own create counted once
        with pytest.raises(QuotaExceeded) as refused:
            await quotas.check("r", objects=1, storage_bytes=10, label="space s3", spaces=1)
        assert [cause.field for cause in refused.value.causes] == ["spec.quota.spaces"]
        assert "2 of 2 spaces in use" in str(refused.value)
        quotas.observe(second, b"{}", 6)  # the watch shows it before the write's answer
        assert quotas.usage("r").spaces == 2
    # not a space: the objects limit (none here) decides
    await quotas.check("r", objects=1, storage_bytes=10, label="stack st")
    quotas.observe(SPACE, None, 7)
    await quotas.check("r", objects=1, storage_bytes=10, label="space s3", spaces=1)
    async with quotas.reserve(
        "r", objects=1, storage_bytes=10, label="space s3", creates=third, spaces=1
    ):
        pass
    assert quotas.usage("r").spaces == 1


async def test_etcd_unavailable_is_a_warning_and_a_list_again_not_a_crash(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With etcd down past the store's retries, the index's list and watch raised
    Unavailable out of run(): the supervisor logged 'kukeon-realm-usage crashed' at ERROR
    with a traceback, at every outage (seen by hand: kill -9 of etcd for 20 s)."""
    monkeypatch.setattr(realmquota, "RELIST_AFTER_UNAVAILABLE", 0.01, raising=False)
    quotas = _index()
    lists: list[int] = []
    follows: list[int] = []

    async def listing() -> None:
        lists.append(1)
        if len(lists) == 1:
            raise Unavailable("list the realms' usage: etcd is unavailable after 20s")

    async def following() -> None:
        follows.append(1)
        if len(follows) == 1:
            raise Unavailable("watch the realms' usage: etcd unreachable for 20s")
        await asyncio.Event().wait()

    monkeypatch.setattr(quotas, "_list", listing)
    monkeypatch.setattr(quotas, "_follow", following)
    caplog.set_level(logging.WARNING, logger="kukeon.store.realmquota")
    running = asyncio.create_task(quotas.run())
    try:
        for _ in range(200):
            if len(follows) == 2:
                break
            await asyncio.sleep(0.01)
        assert not running.done()
        assert (len(lists), len(follows)) == (3, 2)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    said = [r for r in caplog.records if "realm usage:" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING] * 2
    assert all(r.exc_info is None for r in said)
