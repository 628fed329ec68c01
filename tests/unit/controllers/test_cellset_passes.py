"""The set controller's idle passes: without a set, a pass the interval brings lists no cell."""

from __future__ import annotations

from typing import Any, cast

from kukeon.api import Kind
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry


class CountingRegistry:
    def __init__(self) -> None:
        self.listed: list[Kind] = []

    async def list(self, kind: Kind, *args: Any, **kwargs: Any) -> Any:
        self.listed.append(kind)
        return type("Listed", (), {"items": []})()


async def test_an_idle_pass_without_sets_lists_no_cell() -> None:
    registry = CountingRegistry()
    controller = CellSetController(registry=cast(Registry, registry))
    await controller.run_pass(woken=False)
    assert registry.listed == [Kind.CELL_SET]
    # A pass something woke (a set deleted: its cells are orphans now) lists them.
    await controller.run_pass(woken=True)
    assert registry.listed == [Kind.CELL_SET, Kind.CELL_SET, Kind.CELL]
