"""A watch that cannot resume backs off (capped, with jitter) and says so a few times, not
at every attempt: each kukeond logged "watch X resumes from revision N" ~190 times per kind
over 150 s of etcd away (~13 lines a second per node), at a pace capped at 1 s."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import grpc
import pytest

from kukeon.store.etcdwatch import (
    RESUME_FIRST_SECONDS,
    RESUME_JITTER,
    RESUME_MAX_SECONDS,
    ResumeReport,
)
from tests.unit.store.test_watch_budget import first_item


class _Health:
    """Records the waits asked for and returns at once."""

    def __init__(self) -> None:
        self.away = False
        self.waits: list[float] = []

    async def wait_back(self, seconds: float) -> None:
        self.waits.append(seconds)


class _Client:
    def __init__(self) -> None:
        self.health = _Health()


def _failing_streams(failures: int) -> Any:
    attempts = iter(range(failures))

    async def stream(*_: Any) -> AsyncGenerator[list[int], None]:
        if next(attempts, None) is not None:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down", ""
            )
        yield []  # created
        yield [5]
        await asyncio.sleep(3600)

    return stream


async def test_the_waits_double_up_to_a_cap_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _Client()
    assert await first_item(monkeypatch, _failing_streams(20), client=client, budget=60) == 5
    waits = client.health.waits
    assert len(waits) == 20
    nominal = RESUME_FIRST_SECONDS
    for wait in waits:
        assert nominal * (1 - RESUME_JITTER) <= wait <= nominal
        nominal = min(nominal * 2, RESUME_MAX_SECONDS)
    assert max(waits) > RESUME_MAX_SECONDS * (1 - RESUME_JITTER)  # the cap is reached
    assert len(set(waits[-5:])) == 5  # jittered: watches that failed together spread out


def _said(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def test_150_seconds_away_are_said_in_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon.store.etcdwatch")
    now = [0.0]
    report = ResumeReport("cells", clock=lambda: now[0], quiet=lambda: False)
    while now[0] < 150:  # an attempt per RESUME_MAX_SECONDS at most, here 13 a second
        report.failed(42, "UNAVAILABLE: connection refused")
        now[0] += 1 / 13
    report.resumed()
    report.resumed()  # said once
    said = _said(caplog)
    assert said[0] == "watch cells resumes from revision 42 (UNAVAILABLE: connection refused)"
    summaries = said[1:-1]
    assert 2 <= len(summaries) <= 6, said  # at 5 s, then at about 15, 45, 135 s
    assert summaries[0].startswith("watch cells still cannot resume after ")
    assert "attempts over 5s (last error: UNAVAILABLE: connection refused)" in summaries[0]
    assert said[-1].startswith("watch cells resumed after 150.0s (1950 failed attempts)")
    assert len(_said(caplog, logging.DEBUG)) == 1950 + 1  # each attempt, at debug level


def test_while_etcd_is_known_away_the_watch_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon.store.etcdwatch")
    now = [0.0]
    report = ResumeReport("cells", clock=lambda: now[0], quiet=lambda: True)
    for _ in range(100):
        report.failed(42, "DEADLINE_EXCEEDED")
        now[0] += 1
    report.resumed()
    assert _said(caplog) == []  # the client's health said it once
    # A new run of failures, etcd not known away, is said again.
    report = ResumeReport("cells", clock=lambda: now[0], quiet=lambda: False)
    report.failed(43, "UNAVAILABLE")
    report.resumed()
    assert len(_said(caplog)) == 2
