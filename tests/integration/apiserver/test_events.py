"""The Event routes: list and watch per realm or across realms, the reads' auth model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import EventType, InvolvedObject, new_event
from kukeon.apiserver import ApiSettings, build_runner
from kukeon.apiserver.events import EventRoutes
from kukeon.store import Registry
from kukeon.store.events import EventStore
from tests.fixtures.services import free_tcp_port
from tests.integration.apiserver.conftest import (
    EDITOR_TOKEN,
    VIEWER_TOKEN,
    Api,
    Certs,
    tls_session,
)

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


@pytest.fixture
async def events_api(
    registry: Registry, certs: Certs, tokens_file: Path
) -> AsyncIterator[tuple[Api, EventStore]]:
    """The API with the Event routes (as kukeond adds them) over a real EventStore."""
    store = EventStore(client=registry.client, config=registry.config, ttl=600)
    directory = Path(tempfile.mkdtemp(prefix="kukeon-api-"))
    settings = ApiSettings(
        socket_path=directory / "kukeond.sock",
        socket_group=None,
        tcp_address=f"127.0.0.1:{free_tcp_port()}",
        tls_cert_file=certs.cert,
        tls_key_file=certs.key,
        tokens_file=tokens_file,
        bookmark_interval=0.5,
    )
    runner = await build_runner(settings=settings, registry=registry)
    EventRoutes(store=store, bookmark_interval=0.5).add_routes(runner.app)
    await runner.start()
    api = Api(
        runner,
        registry,
        directory / "kukeond.sock",
        f"https://127.0.0.1:{runner.tcp_port}",
        certs.ca,
        CollectorRegistry(),
    )
    try:
        yield api, store
    finally:
        await runner.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def _emit(store: EventStore, realm: str, name: str, reason: str = "Started") -> None:
    await store.record(
        new_event(
            involved=InvolvedObject.of("Cell", (realm, "s", "st", name), f"uid-{name}"),
            reason=reason,
            message=f"{reason.lower()} container app",
            type=EventType.WARNING if reason == "OOMKilled" else EventType.NORMAL,
            at=datetime.now(UTC),
            node="n1",
        )
    )


def _objects(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted(
        (i["metadata"]["realm"], i["involvedObject"]["name"], i["reason"]) for i in body["items"]
    )


async def test_reads_follow_the_roles_and_realms(events_api: tuple[Api, EventStore]) -> None:
    api, store = events_api
    await _emit(store, "team", "web")
    await _emit(store, "other", "db", "OOMKilled")

    async with tls_session(api, EDITOR_TOKEN) as editor:
        mine = await editor.get(f"{V}/realms/team/events")
        assert mine.status == 200
        assert _objects(await mine.json()) == [("team", "web", "Started")]
        refused = await editor.get(f"{V}/realms/other/events")
        assert refused.status == 403, await refused.text()
        assert (await editor.get(f"{V}/realms/other/events?watch=true")).status == 403
        # Across realms: only its own realm's Events.
        everything = await editor.get(f"{V}/events")
        assert _objects(await everything.json()) == [("team", "web", "Started")]

    async with tls_session(api, VIEWER_TOKEN) as viewer:
        body = await (await viewer.get(f"{V}/events")).json()
        assert body["kind"] == "EventList"
        assert _objects(body) == [("other", "db", "OOMKilled"), ("team", "web", "Started")]

    async with tls_session(api, None) as anonymous:
        assert (await anonymous.get(f"{V}/events")).status == 401


async def test_field_selectors(events_api: tuple[Api, EventStore]) -> None:
    api, store = events_api
    await _emit(store, "team", "web")
    await _emit(store, "team", "web", "OOMKilled")
    await _emit(store, "team", "db")
    async with tls_session(api, VIEWER_TOKEN) as viewer:
        path = f"{V}/realms/team/events?fieldSelector="
        web = await (await viewer.get(path + "involvedObject.name=web")).json()
        assert _objects(web) == [("team", "web", "OOMKilled"), ("team", "web", "Started")]
        warnings = await (await viewer.get(path + "type=Warning,involvedObject.kind=Cell")).json()
        assert _objects(warnings) == [("team", "web", "OOMKilled")]
        bad = await viewer.get(path + "spec.image=x")
        assert bad.status == 400
        assert "not supported for Event" in (await bad.json())["message"]


async def test_label_selectors_see_that_events_have_no_labels(
    events_api: tuple[Api, EventStore],
) -> None:
    """labelSelector was ignored on Events: `tier=web` listed every one."""
    api, store = events_api
    await _emit(store, "team", "web")
    async with tls_session(api, VIEWER_TOKEN) as viewer:
        path = f"{V}/realms/team/events?labelSelector="
        for selector, count in (("tier=web", 0), ("tier", 0), ("!tier", 1), ("tier notin (a)", 1)):
            body = await (await viewer.get(path + selector)).json()
            assert len(body["items"]) == count, selector
        bad = await viewer.get(path + "tier in (a")
        assert bad.status == 400
        assert "'tier in (a'" in (await bad.json())["message"]
        # Gt and Lt: no Event has the label, none is chosen; no integer, a 400
        for selector in ("rank>1", "rank<1"):
            body = await (await viewer.get(path + selector)).json()
            assert body["items"] == [], selector
        bad = await viewer.get(path + "rank>x")
        assert bad.status == 400
        assert "'x' after > or <" in (await bad.json())["message"]


async def test_watch_streams_new_events_and_repeats(events_api: tuple[Api, EventStore]) -> None:
    api, store = events_api
    await _emit(store, "team", "web")
    lines: list[dict[str, Any]] = []

    async def follow(session: aiohttp.ClientSession) -> None:
        url = f"{V}/realms/team/events?watch=true&fieldSelector=involvedObject.name=web"
        async with session.get(url) as response:
            assert response.status == 200
            async for raw in response.content:
                line = json.loads(raw)
                if line["type"] == "BOOKMARK":
                    continue
                lines.append(line)
                if len(lines) == 3:
                    return

    async with tls_session(api, VIEWER_TOKEN) as viewer:
        watcher = asyncio.create_task(follow(viewer))
        await asyncio.sleep(0.5)
        await _emit(store, "team", "db")  # filtered out
        await _emit(store, "team", "web")  # a repeat of the first: its count goes to 2
        await _emit(store, "team", "web", "Restarted")
        try:
            async with asyncio.timeout(10):
                await watcher
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    assert [(line["type"], line["object"]["reason"]) for line in lines] == [
        ("ADDED", "Started"),
        ("MODIFIED", "Started"),
        ("ADDED", "Restarted"),
    ]
    assert lines[1]["object"]["count"] == 2
