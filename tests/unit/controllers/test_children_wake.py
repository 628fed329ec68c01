"""A parent's finalize waiting for its children to go is woken by a child's deletion,
not by its retry delay: the reverse of a child woken by its parent's change."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from kukeon.api import Kind, Realm, Space, parse_resource
from kukeon.controllers.hierarchy import require_no_children
from kukeon.framework import HandlerContext, Operator, OperatorRunner
from tests.unit.api.samples import space_doc
from tests.unit.framework.fakes import FakeStore, realm
from tests.unit.framework.test_operator import settings

LONG = 30.0
"""The waits' retry delay: no test waits for it, only a wake-up passes in time."""


def space(name: str) -> Space:
    made = parse_resource(space_doc(name, realmId="r"))
    assert isinstance(made, Space)
    return made


async def test_the_realms_finalize_runs_when_its_last_space_is_deleted() -> None:
    store = FakeStore()
    op = Operator(
        store,
        settings=settings(backoff_initial=LONG, backoff_max=LONG),
        collector_registry=CollectorRegistry(),
        peering=False,
    )
    finalized: list[float] = []
    passes: list[int] = []

    @op.reconcile(Kind.SPACE)
    async def keep(_obj: Space, _ctx: HandlerContext) -> None:
        return None  # the spaces are watched, as kukeond watches every level

    @op.reconcile(Kind.REALM)
    async def accept(_obj: Realm, _ctx: HandlerContext) -> None:
        return None

    @op.finalize(Kind.REALM)
    async def finalize(obj: Realm, ctx: HandlerContext) -> None:
        passes.append(len(store.objects))
        await require_no_children(ctx, child_kind=Kind.SPACE, scope=("r",), delay=LONG)
        finalized.append(time.monotonic())

    await store.create(realm("r"))
    await store.create(space("a"))
    await store.create(space("b"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: bool(store.objects[(Kind.REALM, ("r",))].metadata.finalizers))
        await store.delete(Kind.REALM, ("r",))
        await runner.wait_for(lambda: len(passes) == 1)
        assert not finalized, "the spaces are still there"
        await store.delete(Kind.SPACE, ("r", "a"))  # the one awaited: woken, waits for b
        await runner.wait_for(lambda: len(passes) == 2, within=LONG / 6)
        assert not finalized
        deleted = time.monotonic()
        await store.delete(Kind.SPACE, ("r", "b"))
        await runner.wait_for(lambda: bool(finalized), within=LONG / 6)
    assert finalized[0] - deleted < LONG / 10
    assert (Kind.REALM, ("r",)) not in store.objects
