"""A local user's listener on kukeond's /metrics address does not keep kukeond down.

Found as ``nobody`` (helper-154's local-user pass): the metrics address is a fixed
unprivileged port (127.0.0.1:9464 by default), and an address in use stopped kukeond's
start (StartupError, exit 1), so any account that bound the port first (at boot, between
two of systemd's restarts) kept the node's control plane down, its API socket included.
Now a listener of another account than root is logged, kukeond starts, and it listens on
the address once the user lets it go; root's listener still stops the start.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from kukeon.daemon import metricslistener
from kukeon.daemon.app import Daemon
from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.starterrors import StartupError
from tests.fixtures.containerd import PrivateContainerd
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukeond import kukeond_config, metrics_headers
from tests.fixtures.services import free_tcp_port, require_root
from tests.fixtures.squatter import nobody_listening

pytestmark = pytest.mark.integration


async def _scrape(url: str, headers: dict[str, str]) -> str:
    """The page at ``url``; "" while nothing listens there."""
    try:
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(url) as reply,
        ):
            return await reply.text() if reply.status == 200 else ""
    except aiohttp.ClientConnectionError:
        return ""


@pytest.fixture
def config_at(
    tmp_path: Path,
    containerd_daemon: PrivateContainerd,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
) -> Callable[[str], DaemonConfig]:
    """A test kukeond's configuration with its /metrics on the address given."""

    def make(address: str) -> DaemonConfig:
        return kukeond_config(
            tmp_path,
            containerd=containerd_daemon,
            etcd=etcd_server,
            prefix=etcd_key_prefix,
            overrides={"metrics_address": address},
        )

    return make


async def test_a_local_users_listener_on_the_metrics_address_does_not_stop_kukeond(
    config_at: Callable[[str], DaemonConfig],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_tcp_port()
    address = f"127.0.0.1:{port}"
    monkeypatch.setattr(metricslistener, "RETRY_SECONDS", 0.2)
    config = config_at(address)
    daemon = Daemon(config)
    try:
        with nobody_listening(port) as squatter:
            with caplog.at_level(logging.ERROR, logger="kukeon.daemon.endpoints"):
                await daemon.start()  # before: StartupError 'Address already in use'
            said = [r.getMessage() for r in caplog.records if r.name == "kukeon.daemon.endpoints"]
            assert any(address in line and "uid 65534 (nobody)" in line for line in said), said
            assert daemon.metrics_url is None
            # The API socket answers: the control plane is up.
            connector = aiohttp.UnixConnector(path=str(config.api_socket))
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get("http://kukeond/readyz") as ready,
            ):
                assert ready.status in (200, 503)  # served (readiness may still be settling)
            squatter.terminate()
            squatter.wait(timeout=10)
        url, scraped = f"http://{address}/metrics", ""
        deadline = time.monotonic() + 10
        while "kukeon_" not in scraped and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            scraped = await _scrape(url, metrics_headers(config))
        assert "kukeon_" in scraped, scraped[:500]
        assert daemon.metrics_url == url
    finally:
        await daemon.stop()
    # Stopped with kukeond: the address is free again.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


async def test_roots_listener_on_the_metrics_address_still_stops_the_start(
    config_at: Callable[[str], DaemonConfig],
) -> None:
    """Another service of the host (a listener of root's) is the operator's to sort out."""
    require_root()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        daemon = Daemon(config_at(f"127.0.0.1:{held.getsockname()[1]}"))
        with pytest.raises(StartupError, match=r"in use \(--metrics-address\)"):
            await daemon.start()
