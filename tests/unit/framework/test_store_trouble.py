"""A full or unreachable etcd refuses every object's pass at once: said as the process's
condition (a warning when it starts, then a line a minute), never a traceback per object
and pass, and no status write that the full etcd would refuse too."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import Any

import pytest

from kukeon.api import Kind, Realm
from kukeon.framework import HandlerContext, OperatorRunner
from kukeon.framework.storetrouble import ConditionLog
from kukeon.store import SpaceExceeded, Unavailable

from .fakes import FakeStore, realm
from .test_operator import operator


def test_a_refusal_is_said_when_it_starts_then_once_a_minute() -> None:
    now = [0.0]
    trouble = ConditionLog(every=60.0, clock=lambda: now[0])
    assert trouble.level("EtcdFull") == (logging.WARNING, 0)
    now[0] = 10.0
    assert trouble.level("EtcdFull") == (logging.DEBUG, 0)
    assert trouble.level("EtcdFull") == (logging.DEBUG, 0)
    assert trouble.level("EtcdUnavailable") == (logging.WARNING, 2)  # another condition
    now[0] = 69.0
    assert trouble.level("EtcdUnavailable") == (logging.DEBUG, 0)
    now[0] = 71.0
    assert trouble.level("EtcdUnavailable") == (logging.WARNING, 1)  # a minute on, counted


FULL_ETCD = "update Realm: etcd refused the write: database space exceeded"


async def refused_passes(
    caplog: pytest.LogCaptureFixture, refusal: Callable[[int], Exception | None], passes: int
) -> FakeStore:
    """Three realms reconciled with ``refusal(n)`` raised at the nth pass (none: taken)
    until ``passes`` passes ran, logged at debug level into ``caplog``."""
    store = FakeStore()
    op = operator(store, backoff_max=0.01)
    calls: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        calls.append(obj.metadata.name)
        if (error := refusal(len(calls))) is not None:
            raise error

    for name in ("a", "b", "c"):
        await store.create(realm(name))
    with caplog.at_level(logging.DEBUG, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: len(calls) >= passes)
    return store


async def test_a_full_etcd_is_said_once_without_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each pass of each object logged the refusal with a traceback (UnexpectedError), and
    # a second warning when its status write was refused too.
    store = await refused_passes(
        caplog, lambda n: SpaceExceeded(FULL_ETCD) if n < 12 else None, passes=12
    )
    refused: list[Any] = [r for r in caplog.records if "database space exceeded" in r.message]
    assert len(refused) >= 11
    assert all(r.exc_info is None for r in refused)
    assert [r.levelno for r in refused].count(logging.WARNING) == 1
    assert refused[0].reason == "EtcdFull"
    assert store.status_writes == 0  # nothing written that the full etcd would refuse
    assert not [r for r in caplog.records if "could not record" in r.message]


async def test_an_unreachable_etcd_is_no_traceback_either(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store, backoff_max=0.01)
    calls: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise Unavailable("get Realm: etcd is unavailable after 10s of retries")

    await store.create(realm("r"))
    with caplog.at_level(logging.DEBUG, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: len(calls) >= 3)
    refused = [r for r in caplog.records if "etcd is unavailable" in r.message]
    assert [r.levelno for r in refused] == [logging.WARNING, logging.DEBUG]
    assert all(r.exc_info is None for r in refused)


def _disk_or_etcd(n: int) -> Exception | None:
    """A full disk at most passes, a full etcd at every fourth, then both take writes."""
    if n >= 16:
        return None
    if n % 4 == 0:
        return SpaceExceeded(FULL_ETCD)
    path = "/var/lib/kukeon/network/attachments/x.json"
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


async def test_a_full_disk_is_said_once_not_at_every_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every pass that writes to a full host disk is refused until room is freed: said when
    it starts, then at debug level (a line a minute with a count, the same ConditionLog as
    EtcdFull's), not a warning per object and retry. A full etcd met meanwhile is said on
    its own count: the two never take each other's turn."""
    await refused_passes(caplog, _disk_or_etcd, passes=16)
    disk: list[Any] = [r for r in caplog.records if getattr(r, "reason", None) == "HostDiskFull"]
    assert len(disk) >= 11
    assert [r.levelno for r in disk].count(logging.WARNING) == 1, "said at every retry"
    assert disk[0].levelno == logging.WARNING
    assert "x.json" in disk[0].getMessage()
    assert all(r.exc_info is None for r in disk)
    etcd: list[Any] = [r for r in caplog.records if getattr(r, "reason", None) == "EtcdFull"]
    assert [r.levelno for r in etcd].count(logging.WARNING) == 1
