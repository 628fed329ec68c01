"""An etcd known away is refused at once, said once, and probed until it answers.

Before, every request spent the whole retry budget (20 s by default) before its 503,
however many had already found etcd away (``kukeon.store.health``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest

from kukeon.apiserver.status import from_store_error
from kukeon.store import EtcdAway, OutcomeUnknown, Unavailable
from kukeon.store.connection import Retrier
from kukeon.store.health import (
    CHECK_WAIT_SECONDS,
    PROBE_MIN_GAP_SECONDS,
    PROBE_TIMEOUT_SECONDS,
    RETRY_AFTER_SECONDS,
    StoreHealth,
)
from tests.unit.store.test_connection import RetrierClient


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, "")


def _attempts(error: Exception | None) -> Any:
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if error is not None:
            raise error
        return "done"

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


_AWAY = _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")


async def test_after_one_request_spent_its_budget_the_next_are_refused_at_once() -> None:
    client = RetrierClient()
    retrier = Retrier(client=client, retry_timeout=0.3)  # type: ignore[arg-type]
    try:
        with pytest.raises(Unavailable) as first:
            await retrier.run(_attempts(_AWAY), what="get", repeatable=True)
        assert not isinstance(first.value, EtcdAway)  # that one did wait the budget
        loop = asyncio.get_running_loop()
        for _ in range(3):
            attempt = _attempts(None)
            started = loop.time()
            with pytest.raises(EtcdAway, match="get: etcd is unavailable") as refused:
                await retrier.run(attempt, what="get", repeatable=False)
            assert loop.time() - started < 0.05
            assert attempt.calls == []  # nothing sent: a write surely not applied
            assert refused.value.retry_after_seconds == RETRY_AFTER_SECONDS
        client.etcd_back = True
        await asyncio.sleep(PROBE_MIN_GAP_SECONDS)
        # The first request after etcd is back is served (its probe found it back).
        assert await retrier.run(_attempts(None), what="get", repeatable=True) == "done"
        assert not client.health.away
    finally:
        await client.health.close()


async def test_a_request_that_gets_through_ends_it_and_the_probe_stops() -> None:
    client = RetrierClient()
    try:
        client.health.failed("get: etcd is unavailable after 20s of retries")
        client.health.answered()  # e.g. a request that was retrying when it began
        assert not client.health.away
        await asyncio.sleep(0.4)  # past the probe's first wait
        assert client.probes == 0
    finally:
        await client.health.close()


async def test_it_is_said_once_when_it_begins_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = RetrierClient()
    caplog.set_level(logging.DEBUG, logger="kukeon.store.health")
    try:
        for _ in range(50):
            client.health.failed("etcd is unavailable after 20s of retries")
            with pytest.raises(EtcdAway):
                await client.health.check("list")
        client.health.answered()
        client.health.answered()
    finally:
        await client.health.close()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(said) == 2, said
    assert said[0].startswith("etcd is unreachable (etcd is unavailable after 20s")
    assert said[1].startswith("etcd answers again after ")


async def test_an_etcd_that_hangs_is_probed_once_for_many_requests_refused_in_a_second() -> None:
    probes: list[int] = []

    async def hangs() -> bool:
        probes.append(1)
        await asyncio.sleep(3600)  # a SIGSTOPped etcd: the probe's deadline ends it
        return True

    health = StoreHealth(hangs)
    loop = asyncio.get_running_loop()
    try:
        health.failed("etcd is unavailable after 20s of retries")
        started = loop.time()
        refused = await asyncio.gather(
            *(health.check(f"get {n}") for n in range(20)), return_exceptions=True
        )
        assert all(isinstance(error, EtcdAway) for error in refused)
        assert loop.time() - started < CHECK_WAIT_SECONDS + 0.5
        assert len(probes) == 1  # one probe in flight, shared
        await asyncio.sleep(PROBE_TIMEOUT_SECONDS)  # it timed out meanwhile
        assert health.away
    finally:
        await health.close()


async def test_an_outcome_unknown_write_does_not_mark_etcd_away() -> None:
    client = RetrierClient()
    retrier = Retrier(client=client, retry_timeout=5.0)  # type: ignore[arg-type]
    reset = _rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed")
    with pytest.raises(OutcomeUnknown):
        await retrier.run(_attempts(reset), what="put", repeatable=False)
    assert not client.health.away


def test_the_api_answers_503_with_retry_after() -> None:
    error = from_store_error(EtcdAway("get: etcd is unavailable", retry_after_seconds=1))
    assert error.code == 503
    assert error.headers["Retry-After"] == "1"
    assert error.to_status()["details"]["retryAfterSeconds"] == 1
    after_budget = from_store_error(Unavailable("get: etcd is unavailable after 20s"))
    assert after_budget.code == 503
    assert "Retry-After" not in after_budget.headers  # as before
