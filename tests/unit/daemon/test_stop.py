"""Daemon.stop undoes every start step, in reverse, even when one fails or hangs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kukeon.daemon import app
from kukeon.daemon.app import Daemon
from kukeon.daemon.config import DaemonConfig


async def test_a_hanging_step_is_given_up_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app, "STOP_STEP_SECONDS", 0.05)
    daemon = Daemon(config=DaemonConfig())
    done: list[str] = []

    async def record(what: str) -> None:
        done.append(what)

    async def hang() -> None:
        await asyncio.Event().wait()

    async def fail() -> None:
        raise RuntimeError("broken")

    daemon._on_stop("etcd connection", lambda: record("etcd"))
    daemon._on_stop("controllers", hang)
    daemon._on_stop("metrics", fail)
    daemon._on_stop("API server", lambda: record("api"))

    with caplog.at_level(logging.INFO, logger="kukeon.daemon"):
        await asyncio.wait_for(daemon.stop(), 5)

    assert done == ["api", "etcd"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("stopping controllers took over" in m for m in messages)
    assert any("stopping metrics failed" in m for m in messages)
