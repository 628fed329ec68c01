"""One realm's long handlers leave the other realms workers (``Settings.realm_workers``)."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Kind, Space, parse_resource
from kukeon.framework import HandlerContext, OperatorRunner, Settings
from tests.unit.api.samples import space_doc

from .fakes import FakeStore
from .test_operator import operator


def space(name: str, realm_id: str) -> Space:
    found = parse_resource(space_doc(name, realmId=realm_id))
    assert isinstance(found, Space)
    return found


async def test_a_realm_holding_its_workers_leaves_the_others_theirs() -> None:
    """Realm ``hog``'s spaces each hold their handler until released (a cell waiting out an
    hour's stop grace); realm ``other``'s space is handled meanwhile. On the tree before,
    the four workers were all ``hog``'s and ``other`` waited for them."""
    store = FakeStore()
    op = operator(store, max_workers=4)  # three for one realm (all but a quarter)
    release = asyncio.Event()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    handled: list[str] = []

    @op.reconcile(Kind.SPACE)
    async def handle(obj: Space, ctx: HandlerContext) -> None:
        realm = obj.spec.realm_id
        running[realm] = running.get(realm, 0) + 1
        peak[realm] = max(peak.get(realm, 0), running[realm])
        try:
            if realm == "hog":
                await release.wait()
            handled.append(f"{realm}/{obj.metadata.name}")
        finally:
            running[realm] -= 1

    for index in range(8):
        await store.create(space(f"s{index}", "hog"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: running.get("hog", 0) == 3, within=5)
        await store.create(space("late", "other"))
        await runner.wait_for(lambda: "other/late" in handled, within=5)
        release.set()
        await runner.wait_idle()
    assert peak["hog"] == 3
    assert len([name for name in handled if name.startswith("hog/")]) == 8


@pytest.mark.parametrize(
    ("workers", "per_realm", "expected"),
    [(16, None, 12), (4, None, 3), (2, None, 1), (1, None, 1), (16, 4, 4), (4, 10, 4)],
)
def test_realm_workers(workers: int, per_realm: int | None, expected: int) -> None:
    settings = Settings(max_workers=workers, max_workers_per_realm=per_realm)
    assert settings.realm_workers == expected


def test_a_realm_is_given_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="max_workers_per_realm"):
        Settings(max_workers_per_realm=0)
