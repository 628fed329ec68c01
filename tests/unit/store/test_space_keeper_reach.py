"""The embedded etcd's space keeper while etcd is out of reach (its process dead: a full
disk under it kills it until room is freed): it looks again at its next period, quietly,
instead of crashing with a traceback at every try."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import aetcd
import pytest

from kukeon.store.spacekeeping import keep_space


class _AwayThenBack:
    """list_alarms fails as an etcd out of reach does ``away`` times, then finds none."""

    def __init__(self, away: int) -> None:
        self.away = away
        self.calls = 0

    def list_alarms(self) -> AsyncIterator[Any]:
        self.calls += 1
        failing = self.calls <= self.away

        async def alarms() -> AsyncIterator[Any]:
            if failing:
                raise aetcd.ConnectionFailedError("failed to connect to all addresses")
            none: tuple[Any, ...] = ()
            for alarm in none:
                yield alarm

        return alarms()


async def test_an_etcd_out_of_reach_is_looked_at_again_without_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _AwayThenBack(away=3)
    with caplog.at_level(logging.DEBUG, logger="kukeon.store.spacekeeping"):
        keeper = asyncio.create_task(keep_space(cast(aetcd.Client, client), interval=0.01))
        for _ in range(200):
            if client.calls >= 5:
                break
            await asyncio.sleep(0.01)
        assert not keeper.done()  # it did not crash
        keeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await keeper
    assert client.calls >= 5
    said = [record for record in caplog.records if "out of reach" in record.getMessage()]
    assert len(said) == 3
    assert all(record.levelno == logging.DEBUG and record.exc_info is None for record in said)


async def test_any_other_failure_still_reaches_the_supervisor() -> None:
    class _Refusing:
        def list_alarms(self) -> AsyncIterator[Any]:
            async def alarms() -> AsyncIterator[Any]:
                raise aetcd.exceptions.UnauthenticatedError("no permission")
                yield None

            return alarms()

    with pytest.raises(aetcd.exceptions.UnauthenticatedError):
        await keep_space(cast(aetcd.Client, _Refusing()), interval=0.01)
