"""A handler pass that does not end is said, with where it waits, and measured.

Before, a pass stuck on an await (a call with no deadline, a lock never let go) left its
object as its last status said and nothing in the log: the only sign was the absence of
progress.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from kukeon.api import Kind, Realm
from kukeon.framework import HandlerContext, OperatorRunner
from kukeon.framework.longpasses import await_chain

from .fakes import FakeStore, realm
from .test_operator import operator, sample


async def _wait_here_for(gate: asyncio.Event) -> None:
    await gate.wait()


async def test_a_stuck_pass_is_said_with_its_awaits_and_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store, long_pass_seconds=0.2)
    gate = asyncio.Event()
    passes: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        passes.append(obj.metadata.name)
        if obj.metadata.name == "stuck":
            await _wait_here_for(gate)

    await store.create(realm("stuck"))
    await store.create(realm("quick"))
    with caplog.at_level(logging.INFO, logger="kukeon.framework.longpasses"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(
                lambda: any("has run for" in r.getMessage() for r in caplog.records), within=10
            )
            assert sample(op, "kukeon_longest_running_handler_seconds", kind="Realm") >= 0.2
            gate.set()
            await runner.wait_idle()
            await runner.wait_for(
                lambda: sample(op, "kukeon_longest_running_handler_seconds", kind="Realm") == 0,
                within=10,
            )
    said = [r for r in caplog.records if "has run for" in r.getMessage()]
    assert said
    assert said[0].levelno == logging.WARNING
    message = said[0].getMessage()
    assert "Realm stuck" in message
    assert "in _wait_here_for" in message
    assert "in handle" in message
    assert not any("Realm quick" in r.getMessage() for r in caplog.records)
    ended = [r for r in caplog.records if "ended after" in r.getMessage()]
    assert len(ended) == 1
    assert "Realm stuck" in ended[0].getMessage()
    assert sorted(passes) == ["quick", "stuck"]


async def test_a_pass_is_said_again_only_at_each_doubling_of_its_age(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store, long_pass_seconds=0.1)
    gate = asyncio.Event()

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        await gate.wait()

    await store.create(realm("stuck"))
    with caplog.at_level(logging.WARNING, logger="kukeon.framework.longpasses"):
        async with OperatorRunner(op):
            await asyncio.sleep(0.75)
            gate.set()
    ages = [r.__dict__["seconds"] for r in caplog.records if "has run for" in r.getMessage()]
    # Said at ~0.1, ~0.2, ~0.4 s: three times in 0.75 s, each at twice the last age or later.
    assert 2 <= len(ages) <= 4, ages
    assert all(later >= 2 * earlier for earlier, later in itertools.pairwise(ages)), ages


async def test_the_chain_is_followed_into_an_awaited_task() -> None:
    gate = asyncio.Event()

    async def inner() -> None:
        await _wait_here_for(gate)

    async def outer() -> None:
        await asyncio.ensure_future(inner())

    task = asyncio.ensure_future(outer())
    await asyncio.sleep(0.01)
    chain = await_chain(task)
    gate.set()
    await task
    assert [step.rsplit(" in ", 1)[-1] for step in chain if " in " in step] == [
        "outer",
        "inner",
        "_wait_here_for",
        "wait",
    ]
    assert any(step.startswith("awaiting task") for step in chain)
    assert chain[-1] == "awaiting Future"
