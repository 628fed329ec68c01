"""kukeond's ``/metrics`` listener asks for a bearer token, by default.

Found as ``nobody`` (helper-181): ``runuser -u nobody -- curl 127.0.0.1:9464/metrics`` gave
any local account every realm's names, states, CPU, memory and API request counts. With
``metrics_token_file``, a real kukeond answers nobody's curl 401 (``WWW-Authenticate:
Bearer``), a wrong token 403, the right one the series; the suite's real Prometheus scrapes
it with ``authorization: {credentials_file: ...}``. A token file every local user may read
stops the start. Without the setting (a kukeond started by hand, or by a configuration
without the key), kukeond asks for a token it generates once in ``<state-dir>/metrics-token``
(root's, 0600) and reuses across restarts; ``metrics_open`` alone serves the listener
openly, and kukeond says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kukeon.daemon.app import Daemon
from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.metricstoken import read_metrics_token
from kukeon.daemon.starterrors import StartupError
from tests.fixtures.containerd import PrivateContainerd
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukeond import kukeond_config
from tests.fixtures.localuser import walkable_base
from tests.fixtures.services import require_binary
from tests.integration.metrics.prometheus import PrometheusServer

pytestmark = pytest.mark.integration


@pytest.fixture
def config_with(
    tmp_path: Path,
    containerd_daemon: PrivateContainerd,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
) -> Callable[..., DaemonConfig]:
    """A test kukeond's configuration, /metrics on a free loopback port, with ``overrides``."""

    def make(**overrides: Any) -> DaemonConfig:
        return kukeond_config(
            tmp_path,
            containerd=containerd_daemon,
            etcd=etcd_server,
            prefix=etcd_key_prefix,
            overrides={"metrics_address": "127.0.0.1:0", **overrides},
        )

    return make


@contextlib.asynccontextmanager
async def _running(config: DaemonConfig) -> AsyncIterator[Daemon]:
    daemon = Daemon(config)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.stop()


async def _start_refused(config: DaemonConfig, match: str) -> None:
    """kukeond's start with ``config`` stops with a ``StartupError`` saying ``match``."""
    daemon = Daemon(config)
    try:
        with pytest.raises(StartupError, match=match):
            await daemon.start()
    finally:
        await daemon.stop()


def _nobody_curl(url: str, *headers: str) -> tuple[str, str]:
    """``nobody``'s curl of ``url``: the response's head and body."""
    require_binary("curl", "curl")
    command = ["runuser", "-u", "nobody", "--", "curl", "-sS", "-m", "10", "-D", "-", url]
    for header in headers:
        command += ["-H", header]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    head, _, body = done.stdout.partition("\n\n")  # text mode: CRLF read as LF
    return head, body


async def test_the_listener_answers_only_the_token_and_prometheus_scrapes_with_it(
    tmp_path: Path, config_with: Callable[..., DaemonConfig]
) -> None:
    token = secrets.token_hex(32)
    token_file = tmp_path / "metrics-token"  # pytest's 0700 directory: root's alone
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    async with _running(config_with(metrics_token_file=token_file)) as daemon:
        url = daemon.metrics_url
        assert url is not None
        head, body = await asyncio.to_thread(_nobody_curl, url)
        assert head.startswith("HTTP/1.1 401"), head
        assert 'www-authenticate: bearer realm="kukeon-metrics"' in head.lower(), head
        assert "kukeon_" not in body
        head, body = await asyncio.to_thread(
            _nobody_curl, url, f"Authorization: Bearer {secrets.token_hex(32)}"
        )
        assert head.startswith("HTTP/1.1 403"), head
        assert "kukeon_" not in body
        head, body = await asyncio.to_thread(_nobody_curl, url, f"Authorization: Bearer {token}")
        assert head.startswith("HTTP/1.1 200"), head
        assert "kukeon_" in body

        prometheus = PrometheusServer(
            binary=require_binary("prometheus", "prometheus"),
            targets=[url.removeprefix("http://").removesuffix("/metrics")],
            credentials_file=token_file,
        )
        try:
            await asyncio.to_thread(prometheus.start)
            await prometheus.wait_for_scrapes(2)
            assert await prometheus.series('{__name__=~"kukeon_.+"}')
        finally:
            prometheus.stop()


async def test_a_token_file_every_local_user_reads_stops_the_start(
    config_with: Callable[..., DaemonConfig],
) -> None:
    with walkable_base("kukeon-metrics-token-") as base:
        token_file = base / "metrics-token"
        token_file.write_text(secrets.token_hex(32))
        token_file.chmod(0o644)  # what a umask of 022 makes
        await _start_refused(
            config_with(metrics_token_file=token_file),
            r"metrics_token_file.*every local user may read",
        )


async def test_without_the_setting_kukeond_asks_for_the_token_it_generates_and_keeps_it(
    config_with: Callable[..., DaemonConfig], caplog: pytest.LogCaptureFixture
) -> None:
    config = config_with()
    token_file = config.state_dir / "metrics-token"
    assert config.metrics_token_path == token_file
    with caplog.at_level(logging.INFO, logger="kukeon.daemon.metricstoken"):
        async with _running(config) as daemon:
            assert daemon.metrics_url is not None
            head, body = await asyncio.to_thread(_nobody_curl, daemon.metrics_url)
            assert head.startswith("HTTP/1.1 401"), head  # before: 200 and every series
            assert "kukeon_" not in body
            file_state = token_file.stat()
            assert (file_state.st_mode & 0o777, file_state.st_uid) == (0o600, 0)
            token = read_metrics_token(token_file)
            head, body = await asyncio.to_thread(
                _nobody_curl, daemon.metrics_url, f"Authorization: Bearer {token}"
            )
            assert head.startswith("HTTP/1.1 200"), head
            assert "kukeon_" in body
        # A restart asks for the same token: the scraper's configuration stays right.
        async with _running(config) as daemon:
            assert daemon.metrics_url is not None
            assert read_metrics_token(token_file) == token
            head, _ = await asyncio.to_thread(
                _nobody_curl, daemon.metrics_url, f"Authorization: Bearer {token}"
            )
            assert head.startswith("HTTP/1.1 200"), head
    said = [r for r in caplog.records if r.name == "kukeon.daemon.metricstoken"]
    assert [r.levelno for r in said] == [logging.INFO, logging.INFO], said
    assert all(str(token_file) in r.getMessage() for r in said)
    assert all(token not in r.getMessage() for r in caplog.records)


async def test_a_generated_token_file_others_may_rewrite_stops_the_start(
    config_with: Callable[..., DaemonConfig],
) -> None:
    """Judged as ``metrics_token_file`` is. (Modes wider than 0640 never get that far: the
    start narrows everything in the state directory first, this file too.)"""
    config = config_with()
    async with _running(config):
        pass
    token_file = config.state_dir / "metrics-token"
    os.chown(token_file, 65534, 65534)  # nobody's: they rewrite it, or open it to anyone
    await _start_refused(config, r"generated by kukeond.*belongs to")


async def test_metrics_open_serves_everyone_and_kukeond_says_so(
    config_with: Callable[..., DaemonConfig], caplog: pytest.LogCaptureFixture
) -> None:
    config = config_with(metrics_open=True)
    with caplog.at_level(logging.INFO, logger="kukeon.daemon.metricstoken"):
        async with _running(config) as daemon:
            assert daemon.metrics_url is not None
            head, body = await asyncio.to_thread(_nobody_curl, daemon.metrics_url)
            assert head.startswith("HTTP/1.1 200"), head
            assert "kukeon_" in body
    said = [r for r in caplog.records if r.name == "kukeon.daemon.metricstoken"]
    assert len(said) == 1, said
    assert said[0].levelno == logging.WARNING
    assert "any local account" in said[0].getMessage()
    assert "metrics_open" in said[0].getMessage()
    assert not (config.state_dir / "metrics-token").exists()
