"""The /metrics endpoint: own listener, handler on another app, content negotiation."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Network

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from kukeon.metrics import metrics_handler, parse_address, serve_metrics
from tests.fixtures.rawhttp import closed, expectation_failed, read_answer, send_head


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("kukeon_test_events", "Test events.", registry=registry).inc(3)
    return registry


async def test_serve_metrics_on_a_free_port_and_stop() -> None:
    server = await serve_metrics("127.0.0.1:0", registry=_registry())
    try:
        assert server.port > 0
        async with aiohttp.ClientSession() as session, session.get(server.url) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "kukeon_test_events_total 3.0" in await reply.text()
    finally:
        await server.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(server.url)


async def test_text_format_even_when_openmetrics_is_preferred() -> None:
    server = await serve_metrics("127.0.0.1:0", registry=_registry())
    try:
        headers = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url, headers=headers) as reply,
        ):
            assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert "kukeon_test_events_total 3.0" in await reply.text()
    finally:
        await server.stop()


async def test_handler_on_another_app() -> None:
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(_registry()))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/metrics") as reply,
        ):
            assert "kukeon_test_events_total" in await reply.text()
    finally:
        await runner.cleanup()


async def test_a_taken_port_is_a_clear_error() -> None:
    first = await serve_metrics("127.0.0.1:0", registry=_registry())
    try:
        with pytest.raises(OSError, match=f"cannot listen for /metrics on 127.0.0.1:{first.port}"):
            await serve_metrics(f"127.0.0.1:{first.port}", registry=_registry())
    finally:
        await first.stop()


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
    ],
)
def test_parse_address(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["9464", "host:", "host:http", "h:70000"])
def test_parse_address_refuses(address: str) -> None:
    with pytest.raises(ValueError, match="metrics address"):
        parse_address(address)


async def test_expect_on_the_own_listener() -> None:
    """No '100 Continue' for a body no route reads (the answer closes the connection), and
    a 417 Status, not aiohttp's plain text, for an expectation other than 100-continue."""
    server = await serve_metrics("127.0.0.1:0", registry=_registry())
    try:
        announced = {"Content-Length": str(10 * 1024 * 1024), "Expect": "100-continue"}
        for method, code in (("GET", "200"), ("POST", "405")):
            connection = await asyncio.open_connection("127.0.0.1", server.port)
            reader, writer = await send_head(connection, method, "/metrics", announced)
            try:
                status, _, _ = await read_answer(reader)
                assert status.startswith(f"HTTP/1.1 {code}"), status
                assert await closed(reader)
            finally:
                writer.close()
        connection = await asyncio.open_connection("127.0.0.1", server.port)
        sent = await send_head(connection, "GET", "/metrics", {"Expect": "x-magic"})
        assert "'x-magic'" in (await expectation_failed(sent))["message"]
    finally:
        await server.stop()


async def test_a_client_of_a_refused_network_gets_a_403_and_no_series() -> None:
    """kukeond refuses its subnetPool (its cells): the series name every realm's objects."""
    refused = (IPv4Network("127.0.0.0/8"),)
    server = await serve_metrics("127.0.0.1:0", registry=_registry(), refused=refused)
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/"):
                async with session.get(f"http://127.0.0.1:{server.port}{path}") as reply:
                    assert reply.status == 403
                    text = await reply.text()
                    assert "kukeon_test_events" not in text
                    assert "127.0.0.0/8" in text
    finally:
        await server.stop()
    other = await serve_metrics(
        "127.0.0.1:0", registry=_registry(), refused=(IPv4Network("10.88.0.0/16"),)
    )
    try:
        async with aiohttp.ClientSession() as session, session.get(other.url) as reply:
            assert reply.status == 200
            assert "kukeon_test_events_total 3.0" in await reply.text()
    finally:
        await other.stop()
