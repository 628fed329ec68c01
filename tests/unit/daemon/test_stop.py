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

    with caplog.at_level(logging.INFO, logger="kukeon.daemon.app"):
        await asyncio.wait_for(daemon.stop(), 5)

    assert done == ["api", "etcd"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("stopping controllers took over" in m for m in messages)
    assert any("stopping metrics failed" in m for m in messages)


async def test_hanging_steps_share_one_budget(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Three hanging steps of 0.4 s each under a 0.6 s budget: the whole stop stays near
    the budget (0.4 + 0.2 + 0.05 s, not 3 x 0.4), and the last step, with nothing left of
    it, still gets its last chance."""
    monkeypatch.setattr(app, "STOP_STEP_SECONDS", 0.4)
    monkeypatch.setattr(app, "STOP_BUDGET_SECONDS", 0.6)
    monkeypatch.setattr(app, "STOP_LAST_CHANCE_SECONDS", 0.05)
    daemon = Daemon(config=DaemonConfig())
    done: list[str] = []

    async def hang() -> None:
        await asyncio.Event().wait()

    async def slow_but_done() -> None:
        # Yields to the loop once: its next step is queued before the last chance's timer
        # can be due. A timer of its own (it slept 10 ms) lost to that timer whenever the
        # process stalled 50 ms (a CI run on a loaded machine did).
        await asyncio.sleep(0)
        done.append("etcd")

    daemon._on_stop("etcd", slow_but_done)
    for what in ("watches", "controllers", "api"):
        daemon._on_stop(what, hang)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.INFO, logger="kukeon.daemon.app"):
        await daemon.stop()
    took = loop.time() - started

    assert done == ["etcd"]
    # The budget and a last chance (0.65 s) with slack for a loaded machine; a budget per
    # step would take 1.2 s or more.
    assert took < 1.0
