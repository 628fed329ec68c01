"""``metrics_token_file``: the file kukeond refuses, the token it reads, the one it generates
when the setting is unset, ``metrics_open``, the answers of the listener that asks for it
(``kukeon.daemon.metricstoken``)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from kukeon.daemon.config import ConfigError, load_config
from kukeon.daemon.metricstoken import (
    generated_metrics_token,
    read_metrics_token,
    requiring_token,
    warn_open_listener,
)
from kukeon.daemon.starterrors import StartupError
from kukeon.metrics import serve_metrics

TOKEN = "3f9c0d1e2b7a4c5d6e8f9a0b1c2d3e4f"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every local user gets through (pytest's own is 0700, where a file's
    mode lets no one else in whatever it is), removed after."""
    directory = Path(tempfile.mkdtemp(prefix="kukeon-metrics-token-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _token_file(directory: Path, text: str, mode: int) -> Path:
    path = directory / "metrics-token"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_a_file_only_root_and_its_group_read_gives_its_first_line(
    open_dir: Path, mode: int
) -> None:
    path = _token_file(open_dir, f"\n  {TOKEN}  \nsecond line\n", mode)
    assert read_metrics_token(path) == TOKEN


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o666, 0o602])
def test_a_file_others_may_read_or_write_is_refused(open_dir: Path, mode: int) -> None:
    path = _token_file(open_dir, TOKEN, mode)
    with pytest.raises(StartupError, match=r"metrics_token_file.*open to other local users") as e:
        read_metrics_token(path)
    assert TOKEN not in str(e.value)


def test_a_file_of_another_account_is_refused(open_dir: Path) -> None:
    path = _token_file(open_dir, TOKEN, 0o600)
    os.chown(path, 65534, 65534)  # nobody: they rewrite it, or open it to anyone
    with pytest.raises(StartupError, match="belongs to"):
        read_metrics_token(path)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "is empty"),
        ("\n \n", "is empty"),
        ("short\n", "at least 16"),
        ("a token with spaces in it\n", "without spaces"),
        ("tökentökentökentöken\n", "visible ASCII"),
    ],
)
def test_a_token_a_header_cannot_carry_is_refused(open_dir: Path, text: str, said: str) -> None:
    with pytest.raises(StartupError, match=said):
        read_metrics_token(_token_file(open_dir, text, 0o600))


def test_a_missing_file_is_refused_naming_the_setting(open_dir: Path) -> None:
    with pytest.raises(StartupError, match=r"cannot read .*\(metrics_token_file\)"):
        read_metrics_token(open_dir / "absent")


def test_the_setting_is_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("metricsTokenFile: /etc/kukeon/metrics-token\n")
    assert load_config(config_file=config_file, environ={}).metrics_token_file == Path(
        "/etc/kukeon/metrics-token"
    )
    environ = {"KUKEON_METRICS_TOKEN_FILE": "/run/secrets/token"}
    assert load_config(environ=environ).metrics_token_file == Path("/run/secrets/token")
    assert load_config(environ={}).metrics_token_file is None


def test_without_a_setting_the_token_is_the_generated_one(tmp_path: Path) -> None:
    environ = {"KUKEON_STATE_DIR": str(tmp_path)}
    assert load_config(environ=environ).metrics_token_path == tmp_path / "metrics-token"
    environ["KUKEON_METRICS_TOKEN_FILE"] = "/run/secrets/token"
    assert load_config(environ=environ).metrics_token_path == Path("/run/secrets/token")


def test_metrics_open_asks_for_no_token_and_is_refused_beside_a_token_file(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("metricsOpen: true\n")
    assert load_config(config_file=config_file, environ={}).metrics_token_path is None
    environ = {"KUKEON_METRICS_TOKEN_FILE": "/run/secrets/token"}
    with pytest.raises(ConfigError, match=r"metricsOpen .* metricsTokenFile \(/run/secrets/token"):
        load_config(config_file=config_file, environ=environ)


def test_a_token_is_generated_once_root_s_0600_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics-token"
    with caplog.at_level(logging.INFO, logger="kukeon.daemon.metricstoken"):
        token = generated_metrics_token(path)
        assert generated_metrics_token(path) == token  # a restart: the same token
    assert len(token) == 64
    assert int(token, 16) >= 0  # hex digits
    assert path.read_text() == token + "\n"
    state = path.stat()
    assert state.st_mode & 0o777 == 0o600
    assert state.st_uid == os.geteuid()
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 2, said
    assert all(str(path) in line for line in said)
    assert "generated now" in said[0]
    assert "kept from an earlier start" in said[1]
    assert all(token not in line for line in said)


def test_a_generated_file_others_may_read_is_refused(open_dir: Path) -> None:
    path = open_dir / "metrics-token"
    token = generated_metrics_token(path)
    path.chmod(0o644)
    with pytest.raises(StartupError, match=r"generated by kukeond.*open to other local users") as e:
        generated_metrics_token(path)
    assert token not in str(e.value)
    assert path.read_text() == token + "\n"  # refused, not replaced


def test_a_token_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"cannot write the metrics token file"):
        generated_metrics_token(tmp_path / "absent" / "metrics-token")


def test_the_open_listener_warning_names_the_setting(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kukeon.daemon.metricstoken"):
        warn_open_listener("127.0.0.1:9464")
    [record] = caplog.records
    assert "any local account" in record.getMessage()
    assert "metrics_open" in record.getMessage()


async def _status(url: str, headers: dict[str, str]) -> tuple[int, str, str | None]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as reply:
        return reply.status, await reply.text(), reply.headers.get("WWW-Authenticate")


async def test_the_listener_asks_for_the_token(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    Counter("kukeon_test_events", "Test events.", registry=registry).inc()
    server = await serve_metrics("127.0.0.1:0", registry=registry, guard=requiring_token(TOKEN))
    try:
        with caplog.at_level(logging.DEBUG):
            status, body, challenge = await _status(server.url, {})
            assert (status, challenge) == (401, 'Bearer realm="kukeon-metrics"')
            assert "kukeon_test_events" not in body
            for wrong in (f"Bearer {TOKEN}x", "Bearer \xff\xfe", f"Basic {TOKEN}", "Bearer"):
                status, body, _ = await _status(server.url, {"Authorization": wrong})
                assert status in (401, 403), wrong
                assert "kukeon_test_events" not in body
            status, _, _ = await _status(server.url, {"Authorization": f"Bearer {TOKEN}x"})
            assert status == 403
            status, _, _ = await _status(server.url.removesuffix("metrics"), {})
            assert status == 401  # every path, not /metrics only
            status, body, _ = await _status(server.url, {"Authorization": f"Bearer {TOKEN}"})
            assert status == 200
            assert "kukeon_test_events_total 1.0" in body
        assert all(TOKEN not in record.getMessage() for record in caplog.records)
    finally:
        await server.stop()
