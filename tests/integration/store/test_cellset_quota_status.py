"""A cell set held back by its realm's quota writes its status once, not at every pass: the
registry's refusal named the refused cell, whose name is drawn anew at each pass, and the
set's ReplicaFailure message carried it, so each pass (one a second) wrote a new status
(a new etcd revision, a watch event to every node) for as long as the quota held."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import Cell, CellSet, Kind, parse_resource
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry
from kukeon.store.realmquota import QuotaLimits

from .test_realm_quotas import _parents, _quotas

pytestmark = pytest.mark.integration


def _set(replicas: int) -> Any:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "web"},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"id": "a", "image": "busybox"}]},
                },
            },
        }
    )


async def test_a_set_over_the_quota_writes_its_status_once(registry: Registry) -> None:
    async with _quotas(registry, QuotaLimits(None, None)) as quotas:
        registry.enforce_quotas(quotas)
        await _parents(registry, "r", {"objects": 4})  # space, stack, the set, one cell
        await registry.create(_set(3))
        controller = CellSetController(registry=registry)
        revisions = []
        for _ in range(3):
            cellset = await registry.get(Kind.CELL_SET, ("r", "s", "st", "web"))
            assert isinstance(cellset, CellSet)
            cells = (await registry.list(Kind.CELL, ("r",))).items
            await controller.reconcile(cellset, [c for c in cells if isinstance(c, Cell)])
            after = await registry.get(Kind.CELL_SET, ("r", "s", "st", "web"))
            revisions.append(after.metadata.resource_version)
            failure = [c for c in after.status.conditions if c.type == "ReplicaFailure"]
            assert failure, after.status
            assert "spec.quota.objects" in failure[0].message, after.status
        assert len((await registry.list(Kind.CELL, ("r",))).items) == 1
        assert revisions[1] == revisions[2], "a pass that changed nothing wrote the status"
