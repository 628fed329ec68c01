"""The set controller sends a pass's cell creates and deletes to etcd concurrently (at most
WRITES_IN_FLIGHT at once), and a failed create fails the pass only after the others end."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from kukeon.api import Cell, CellSet, Kind, key_of, parse_resource
from kukeon.controllers.cellsets import WRITES_IN_FLIGHT, CellSetController
from kukeon.store import NotFound, Registry


class SlowRegistry:
    """Each write takes a moment; counts the writes in flight."""

    def __init__(self, *, fail_create: int | None = None) -> None:
        self.in_flight = 0
        self.most = 0
        self.created: list[str] = []
        self.deleted: list[tuple[str, ...]] = []
        self.fail_create = fail_create

    async def _write(self) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1

    async def create(self, res: Any) -> Any:
        await self._write()
        if self.fail_create is not None and len(self.created) == self.fail_create:
            self.created.append("failed")
            raise NotFound("the stack is gone")
        self.created.append(res.metadata.name)
        return res

    async def delete(self, kind: Kind, key: tuple[str, ...]) -> None:
        await self._write()
        self.deleted.append(key)

    async def update_status(self, res: Any) -> Any:
        return res


def make_set(replicas: int) -> CellSet:
    found = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "web", "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"id": "a", "image": "busybox"}]},
                },
            },
        }
    )
    assert isinstance(found, CellSet)
    return found


async def test_creates_and_deletes_go_concurrently_bounded() -> None:
    registry = SlowRegistry()
    controller = CellSetController(registry=cast(Registry, registry))
    cellset = make_set(WRITES_IN_FLIGHT + 8)
    await controller.reconcile(cellset, [])
    assert len(set(registry.created)) == WRITES_IN_FLIGHT + 8
    assert registry.most == WRITES_IN_FLIGHT

    cells = [
        cast(Cell, parse_resource(cellset.cell_document(name, cellset.template_hash())))
        for name in registry.created
    ]
    registry.most = 0
    await controller.reconcile(make_set(0), cells)
    assert sorted(registry.deleted) == sorted(key_of(c) for c in cells)
    assert registry.most == WRITES_IN_FLIGHT


async def test_a_failed_create_fails_the_pass_after_the_others_end() -> None:
    registry = SlowRegistry(fail_create=3)
    controller = CellSetController(registry=cast(Registry, registry))
    with pytest.raises(NotFound):
        await controller.reconcile(make_set(10), [])
    assert len(registry.created) == 10
    assert registry.in_flight == 0
