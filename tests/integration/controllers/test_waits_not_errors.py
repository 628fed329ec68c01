"""Waits are no errors, on a real kukeond: a stack waiting for its cell to leave the node
(``WaitingError``) and a cell waiting out its restart back-off (``Requeue``) count no
retry in ``kukeon_reconcile_retries_total`` (the "Reconcile errors" panel's second
query), a wait is logged at INFO once when it starts and at debug while it goes on, and
a cell in its back-off is not in ``kukeon_queue_depth`` (as Kubernetes' workqueue_depth
leaves out its delaying queue)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kukeon.api import AnyResource, Cell, ContainerState, Kind
from tests.fixtures.kukeond import Kukeond, metrics_headers

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

GRACE_SECONDS = 4
"""How long the cell's container (``sleep``, which ignores SIGTERM) takes to stop: the
stack's finalizer waits that long for it, a pass every ``parentWaitSeconds`` (0.2 s)."""


async def _sample(k: Kukeond, name: str, **labels: str) -> float:
    """The value of one series of kukeond's /metrics (0 when it is absent)."""
    assert k.daemon.metrics_url is not None
    async with (
        aiohttp.ClientSession(headers=metrics_headers(k.config)) as session,
        session.get(k.daemon.metrics_url) as reply,
    ):
        assert reply.status == 200
        text = await reply.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(n) == v for n, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_a_stack_waiting_for_its_cell_counts_no_retry_and_says_it_once(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    k = kukeond
    await k.hierarchy(stack="st-wait")
    key = cell_key(k, "slow", stack="st-wait")
    slow = container(k, "main", script="exec sleep 600")
    await k.apply(
        cell_doc(k, "slow", [slow], stack="st-wait", terminationGracePeriodSeconds=GRACE_SECONDS)
    )
    await k.wait_for(Kind.CELL, key, state="Ready", within=60)

    retries = await _sample(k, "kukeon_reconcile_retries_total", kind="Stack")
    waits = await _sample(k, "kukeon_reconcile_total", kind="Stack", result="waiting")
    stack = key[:3]
    with caplog.at_level(logging.DEBUG, logger="kukeon.framework"):
        await k.registry.delete(Kind.STACK, stack, cascade=True)
        await k.wait_gone(Kind.STACK, stack, within=GRACE_SECONDS + 30)
    waited = await _sample(k, "kukeon_reconcile_total", kind="Stack", result="waiting") - waits
    assert waited >= 3, waited  # the stack did wait, pass after pass
    assert await _sample(k, "kukeon_reconcile_retries_total", kind="Stack") == retries

    # Each statement of the wait is said once at INFO, its repeats at debug.
    where = f"Stack {'/'.join(stack)}"
    said = [
        r
        for r in caplog.records
        if r.name == "kukeon.framework.processing"
        and where in r.getMessage()
        and "not done yet" in r.getMessage()
    ]
    assert len(said) >= waited, (len(said), waited)
    statements = [r.getMessage() for r in said]
    for index, record in enumerate(said):
        new = index == 0 or statements[index] != statements[index - 1]
        assert record.levelno == (logging.INFO if new else logging.DEBUG), statements[index]
    assert sum(r.levelno == logging.INFO for r in said) < len(said), statements
    scheduled = [
        r
        for r in caplog.records
        if r.name == "kukeon.framework.queueing" and where in r.getMessage()
    ]
    assert scheduled, "every wait schedules its retry"
    assert {r.levelno for r in scheduled} == {logging.DEBUG}, [r.getMessage() for r in scheduled]


async def test_a_cell_in_its_back_off_is_no_backlog_and_no_retry(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "loop")
    looping = container(k, "app", script="exit 1", restartPolicy="always", restartBackoffSeconds=30)
    retries = await _sample(k, "kukeon_reconcile_retries_total", kind="Cell")
    await k.apply(cell_doc(k, "loop", [looping]))

    def waits(obj: AnyResource) -> bool:
        assert isinstance(obj, Cell)
        return any(c.state == ContainerState.WAITING for c in obj.status.containers)

    await k.wait_for(Kind.CELL, key, until=waits, within=60)
    # The pass that wrote Waiting settles into its requeue (its own write's watch event
    # may queue one more pass first: at load that takes seconds, so wait for it).
    # Requeued for 30 s: then not due, so not in the queue's depth.
    async with asyncio.timeout(20):
        while not (  # noqa: ASYNC110 (a /metrics sample has no event)
            await _sample(k, "kukeon_reconcile_total", kind="Cell", result="requeued") >= 1
            and await _sample(k, "kukeon_queue_depth", kind="Cell") == 0
        ):
            await asyncio.sleep(0.2)
    # And no retry.
    assert await _sample(k, "kukeon_reconcile_retries_total", kind="Cell") == retries
