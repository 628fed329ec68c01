"""An allowedHostPaths directory on a filesystem that honours setuid programs and device
nodes is named in a warning when the API server starts (a container's root can leave both
there through a read-write bind: shown against a running kukeond, a restricted realm's
editor made a setuid-root program under /srv/allowed that ran as root for ``nobody``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from kukeon.apiserver import ApiSettings, hostpathmounts
from kukeon.apiserver.hostpathmounts import missing_mount_options
from kukeon.apiserver.runner import ApiServerRunner


def _mounted(monkeypatch: pytest.MonkeyPatch, flags: int) -> None:
    monkeypatch.setattr(os, "statvfs", lambda _: SimpleNamespace(f_flag=flags))


def test_missing_options_are_read_from_the_filesystems_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert missing_mount_options(str(tmp_path / "absent")) == []  # not on this host
    _mounted(monkeypatch, 0)
    assert missing_mount_options(str(tmp_path)) == ["nosuid", "nodev"]
    _mounted(monkeypatch, os.ST_NOSUID)
    assert missing_mount_options(str(tmp_path)) == ["nodev"]
    _mounted(monkeypatch, os.ST_NOSUID | os.ST_NODEV | os.ST_RDONLY)
    assert missing_mount_options(str(tmp_path)) == []


async def test_the_api_server_names_each_unsafe_directory_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _mounted(monkeypatch, os.ST_NODEV)
    settings = ApiSettings(
        socket_path=tmp_path / "api.sock",
        socket_group=None,
        tcp_address=None,
        allowed_host_paths=(str(tmp_path),),
    )
    runner = ApiServerRunner(app=web.Application(), settings=settings, tls=None)
    with caplog.at_level(logging.WARNING, logger=hostpathmounts.__name__):
        await runner.start()
    await runner.stop()
    [record] = [r for r in caplog.records if r.name == hostpathmounts.__name__]
    assert f"allowedHostPaths directory {tmp_path} " in record.getMessage()
    assert "without nosuid:" in record.getMessage()
