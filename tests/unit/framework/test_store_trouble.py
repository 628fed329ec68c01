"""A full or unreachable etcd refuses every object's pass at once: said as the process's
condition (a warning when it starts, then a line a minute), never a traceback per object
and pass, and no status write that the full etcd would refuse too."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kukeon.api import Kind, Realm
from kukeon.framework import HandlerContext, OperatorRunner
from kukeon.framework.storetrouble import StoreTrouble
from kukeon.store import SpaceExceeded, Unavailable

from .fakes import FakeStore, realm
from .test_operator import operator


def test_a_refusal_is_said_when_it_starts_then_once_a_minute() -> None:
    now = [0.0]
    trouble = StoreTrouble(every=60.0, clock=lambda: now[0])
    assert trouble.level("EtcdFull") == (logging.WARNING, 0)
    now[0] = 10.0
    assert trouble.level("EtcdFull") == (logging.DEBUG, 0)
    assert trouble.level("EtcdFull") == (logging.DEBUG, 0)
    assert trouble.level("EtcdUnavailable") == (logging.WARNING, 2)  # another condition
    now[0] = 69.0
    assert trouble.level("EtcdUnavailable") == (logging.DEBUG, 0)
    now[0] = 71.0
    assert trouble.level("EtcdUnavailable") == (logging.WARNING, 1)  # a minute on, counted


async def test_a_full_etcd_is_said_once_without_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each pass of each object logged the refusal with a traceback (UnexpectedError), and
    # a second warning when its status write was refused too.
    store = FakeStore()
    op = operator(store, backoff_max=0.01)
    calls: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        calls.append(obj.metadata.name)
        if len(calls) < 12:
            raise SpaceExceeded("update Realm: etcd refused the write: database space exceeded")

    for name in ("a", "b", "c"):
        await store.create(realm(name))
    with caplog.at_level(logging.DEBUG, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: len(calls) >= 12)
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
