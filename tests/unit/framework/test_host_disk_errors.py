"""A write the host's disk refuses (full, over quota, read-only) is the host's condition, not
a bug: the object's status names it (HostDiskFull, HostDiskReadOnly), it is logged in one
line without a traceback, and the pass is retried."""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

import pytest

from kukeon.api import Kind, Realm
from kukeon.framework import HandlerContext, OperatorRunner
from kukeon.framework.processing import describe_host_disk_error, host_disk_reason

from .fakes import FakeStore, realm
from .test_operator import operator


def _full(path: str | None = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([path] if path else []))


def test_the_reason_is_found_through_the_chain() -> None:
    assert host_disk_reason(_full()) == "HostDiskFull"
    assert host_disk_reason(OSError(errno.EDQUOT, "quota")) == "HostDiskFull"
    assert host_disk_reason(OSError(errno.EROFS, "ro")) == "HostDiskReadOnly"
    assert host_disk_reason(OSError(errno.EACCES, "no")) is None
    assert host_disk_reason(KeyError("x")) is None
    outer = RuntimeError("wrapped")
    outer.__cause__ = _full("/var/lib/kukeon/network/ipam/x")
    assert host_disk_reason(outer) == "HostDiskFull"
    message = describe_host_disk_error(outer)
    assert message.startswith("No space left on device writing /var/lib/kukeon/network/ipam/x")


async def test_a_full_disk_is_said_in_the_status_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store)
    calls: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise _full()

    await store.create(realm("full"))
    with caplog.at_level(logging.WARNING, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: store.status_writes >= 1)
            written = await store.get(Kind.REALM, ("full",))
            await runner.wait_for(lambda: len(calls) >= 3)  # retried until the disk takes it
    assert written.status.reason == "HostDiskFull"
    assert "No space left on device" in (written.status.message or "")
    records: list[Any] = [r for r in caplog.records if getattr(r, "key", None) == "full"]
    assert records
    assert all(r.exc_info is None for r in records)
    assert records[0].reason == "HostDiskFull"
