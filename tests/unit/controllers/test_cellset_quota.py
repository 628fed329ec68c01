"""A set whose cells do not fit the realm's quota says so in its status (Kubernetes'
ReplicaSet `ReplicaFailure` / `FailedCreate`), creates what fits, and drops the condition
once its cells could be created again."""

from __future__ import annotations

from typing import Any, cast

from kukeon.api import Cell, CellSet, parse_resource
from kukeon.controllers.cellsets import WRITES_IN_FLIGHT, CellSetController
from kukeon.store import QuotaExceeded, Registry
from tests.unit.controllers.test_cellset_writes import make_set


class QuotaRegistry:
    """Creates up to ``room`` cells, then refuses as an exceeded quota does."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.created: list[Any] = []
        self.status: Any = None

    async def create(self, res: Any) -> Any:
        if len(self.created) >= self.room:
            raise QuotaExceeded(
                'cell "r/s/st/x" would exceed the quota of realm "r" (spec.quota.objects: '
                "5 of 5 objects in use)"
            )
        self.created.append(res)
        return res

    async def update_status(self, res: Any) -> Any:
        self.status = res.status
        return res


def _failure(cellset_status: Any) -> Any:
    found = [c for c in cellset_status.conditions if c.type == "ReplicaFailure"]
    return found[0] if found else None


async def test_cells_over_the_quota_are_a_replica_failure_until_they_fit() -> None:
    registry = QuotaRegistry(room=2)
    controller = CellSetController(registry=cast(Registry, registry))
    cellset = make_set(4)
    await controller.reconcile(cellset, [])
    assert len(registry.created) == 2
    failure = _failure(registry.status)
    assert failure is not None
    assert (failure.status, failure.reason) == ("True", "FailedCreate")
    assert "quota of realm" in failure.message

    # Room again (an admin raised the quota, or cells went): the next pass creates the
    # rest and the condition goes.
    registry.room = 4
    cells = [
        cast(Cell, parse_resource(cellset.cell_document(c.metadata.name, cellset.template_hash())))
        for c in registry.created
    ]
    failed = cellset.model_copy(update={"status": registry.status})
    assert isinstance(failed, CellSet)
    await controller.reconcile(failed, cells)
    assert len(registry.created) == 4
    assert _failure(registry.status) is None


class CountingRegistry(QuotaRegistry):
    def __init__(self, room: int) -> None:
        super().__init__(room)
        self.asked = 0

    async def create(self, res: Any) -> Any:
        self.asked += 1
        return await super().create(res)


async def test_a_set_far_over_the_quota_asks_little_each_pass() -> None:
    """A set of 10,000 replicas (the most) in a realm at its quota: each pass (one a second) tried
    every missing cell (each parsed, validated and encoded before the quota refused it),
    seconds of CPU a pass for nothing. No create starts once one was refused: at most the
    writes already in flight are asked."""
    registry = CountingRegistry(room=3)
    controller = CellSetController(registry=cast(Registry, registry))
    await controller.reconcile(make_set(10_000), [])
    assert len(registry.created) == 3
    assert registry.asked <= 3 + WRITES_IN_FLIGHT
    assert _failure(registry.status) is not None
