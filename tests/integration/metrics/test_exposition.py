"""The exposition itself: promtool accepts it, deletes show at the next scrape, latency is fed."""

from __future__ import annotations

import asyncio
import subprocess
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kukeon.api import Kind, key_of
from tests.integration.metrics.conftest import MetricsSource

pytestmark = pytest.mark.integration


async def _scrape(source: MetricsSource) -> str:
    async with (
        aiohttp.ClientSession(headers=source.headers) as session,
        session.get(source.url) as reply,
    ):
        assert reply.status == 200
        return await reply.text()


def _series(text: str, name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_promtool_accepts_the_exposition(
    metrics_source: MetricsSource, promtool_binary: str
) -> None:
    text = await _scrape(metrics_source)
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool_binary, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    report = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 0, report
    assert report.strip() == "", f"promtool lint findings:\n{report}"


async def test_a_deleted_cell_is_gone_from_the_next_scrape(metrics_source: MetricsSource) -> None:
    cells = (await metrics_source.store.list(Kind.CELL, (metrics_source.realm,))).items
    victim = cells[0]
    name = victim.metadata.name
    before = await _scrape(metrics_source)
    assert any(s["cell"] == name for s in _series(before, "kukeon_cell_state"))

    await metrics_source.store.delete(Kind.CELL, key_of(victim))
    # The informer applies the DELETED event asynchronously; give it a bounded moment.
    deadline = time.monotonic() + 10
    while True:
        text = await _scrape(metrics_source)
        if not any(s.get("cell") == name for s in _series(text, "kukeon_cell_ready_observed")):
            break
        assert time.monotonic() < deadline, f"cell {name} still exposed 10s after its delete"
        await asyncio.sleep(0.05)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            same_cell = labels.get("cell") == name and labels.get("stack") == victim.spec.stack_id
            assert not same_cell, f"{sample.name}{labels} outlived its cell"
    others = {s["cell"] for s in _series(text, "kukeon_cell_ready_observed")}
    assert others == {cell.metadata.name for cell in cells[1:]}


async def test_etcd_and_containerd_calls_are_timed(metrics_source: MetricsSource) -> None:
    await metrics_source.poke()
    text = await _scrape(metrics_source)
    operations = {
        s["operation"] for s in _series(text, "kukeon_etcd_request_duration_seconds_count")
    }
    methods = {
        s["method"] for s in _series(text, "kukeon_containerd_request_duration_seconds_count")
    }
    assert {"KV.Range"} <= operations
    assert methods, "no containerd call was timed"
    assert all("." in method for method in methods | operations)
