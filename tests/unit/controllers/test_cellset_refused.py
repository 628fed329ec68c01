"""A set whose status the store refuses (over the document limit: a template too large to
keep in its revisions as well as its spec) is said once, and the pass goes on to the other
sets: it raised out of the pass, so every set after it was never reconciled (and the
leader's loop warned of the failed pass each second)."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from kukeon.api import CellSet, Kind
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import DocumentTooLarge, Registry
from tests.unit.controllers.test_cellset_writes import make_set


def named(name: str) -> CellSet:
    cellset = make_set(1)
    return cellset.model_copy(
        update={"metadata": cellset.metadata.model_copy(update={"name": name})}
    )


class RefusingRegistry:
    """Holds two sets; refuses every status write of ``big`` as too large."""

    def __init__(self) -> None:
        self.sets = [named("big"), named("small")]
        self.created: list[Any] = []
        self.written: list[str] = []

    async def list(self, kind: Kind, *args: Any, **kwargs: Any) -> Any:
        items = self.sets if kind == Kind.CELL_SET else []
        return type("Listed", (), {"items": items})()

    async def create(self, res: Any) -> Any:
        self.created.append(res)
        return res

    async def update_status(self, res: Any) -> Any:
        if res.metadata.name == "big":
            raise DocumentTooLarge("CellSet 'big': the document is 1201611 bytes, over the limit")
        self.written.append(res.metadata.name)
        return res


async def test_a_refused_set_is_said_once_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = RefusingRegistry()
    controller = CellSetController(registry=cast(Registry, registry))
    with caplog.at_level(logging.DEBUG, logger="kukeon.controllers.cellsets"):
        for _ in range(3):
            await controller.run_pass(woken=True)
    assert registry.written == ["small"] * 3
    said = [r for r in caplog.records if "1201611 bytes" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert all(r.exc_info is None for r in said)
