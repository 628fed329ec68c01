"""Finalizer bookkeeping: added before the first reconcile, removed after a successful finalize."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import Kind, Realm
from kukeon.framework import HandlerContext, Operator, OperatorRunner, default_finalizer
from kukeon.store import CHILDREN_FINALIZER, NotFound, Registry

from .helpers import fast_settings, new_realm

pytestmark = pytest.mark.integration

FINALIZER = default_finalizer(Kind.REALM)


async def _gone(registry: Registry, name: str) -> bool:
    try:
        await registry.get(Kind.REALM, (name,))
    except NotFound:
        return True
    return False


async def test_delete_runs_finalize_then_the_document_goes(registry: Registry) -> None:
    op = Operator(
        registry, settings=fast_settings(), collector_registry=CollectorRegistry(), peering=False
    )
    reconciled: list[list[str]] = []
    finalized: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        reconciled.append(list(realm.metadata.finalizers))

    @op.finalize(Kind.REALM)
    async def tear_down(realm: Realm, ctx: HandlerContext) -> None:
        assert realm.metadata.deletion_timestamp is not None
        finalized.append(realm.metadata.name)

    await registry.create(new_realm("doomed"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: bool(reconciled))
        assert FINALIZER in reconciled[0]
        stored = await registry.get(Kind.REALM, ("doomed",))
        assert FINALIZER in stored.metadata.finalizers
        assert CHILDREN_FINALIZER in stored.metadata.finalizers

        await registry.delete(Kind.REALM, ("doomed",))
        await runner.wait_for(lambda: _gone(registry, "doomed"), within=10)
        await runner.wait_idle()
    assert finalized == ["doomed"]
    assert len(reconciled) == 1


async def test_a_failing_finalize_keeps_the_document_until_it_succeeds(
    registry: Registry,
) -> None:
    op = Operator(
        registry, settings=fast_settings(), collector_registry=CollectorRegistry(), peering=False
    )
    attempts = 0

    @op.finalize(Kind.REALM)
    async def tear_down(realm: Realm, ctx: HandlerContext) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise OSError("device busy")

    await registry.create(new_realm("sticky"))
    async with OperatorRunner(op) as runner:

        async def has_finalizer() -> bool:
            stored = await registry.get(Kind.REALM, ("sticky",))
            return FINALIZER in stored.metadata.finalizers

        await runner.wait_for(has_finalizer)
        await registry.delete(Kind.REALM, ("sticky",))

        async def failure_recorded() -> bool:
            stored = await registry.get(Kind.REALM, ("sticky",))
            assert isinstance(stored, Realm)
            return stored.status.reason == "UnexpectedError"

        await runner.wait_for(failure_recorded, within=10)
        stored = await registry.get(Kind.REALM, ("sticky",))
        assert stored.metadata.deletion_timestamp is not None
        assert "device busy" in (stored.status.message or "")
        await runner.wait_for(lambda: _gone(registry, "sticky"), within=10)
    assert attempts == 4


async def test_objects_outside_the_filter_get_no_finalizer(registry: Registry) -> None:
    op = Operator(
        registry, settings=fast_settings(), collector_registry=CollectorRegistry(), peering=False
    )
    handled: list[str] = []

    @op.reconcile(Kind.REALM, when=lambda realm: realm.metadata.labels.get("node") == "a")
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        handled.append(realm.metadata.name)

    @op.finalize(Kind.REALM, when=lambda realm: realm.metadata.labels.get("node") == "a")
    async def tear_down(realm: Realm, ctx: HandlerContext) -> None:
        handled.append(f"finalize {realm.metadata.name}")

    await registry.create(new_realm("mine", node="a"))
    await registry.create(new_realm("theirs", node="b"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: handled == ["mine"])
        await runner.wait_idle()
        theirs = await registry.get(Kind.REALM, ("theirs",))
        assert FINALIZER not in theirs.metadata.finalizers
        await registry.delete(Kind.REALM, ("theirs",))
        await runner.wait_for(lambda: _gone(registry, "theirs"))
        await registry.delete(Kind.REALM, ("mine",))
        await runner.wait_for(lambda: _gone(registry, "mine"))
    assert handled == ["mine", "finalize mine"]
