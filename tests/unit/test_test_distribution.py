"""How the root conftest shares the integration and e2e suites out between pytest-xdist
workers: the scopes of LONG_FIRST are handed out before the others, each one whole."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LONG_FIRST, ONE_WORKER, _Scheduling

REPO = Path(__file__).resolve().parents[2]


class _Worker:
    """What the scheduler asks of a worker here: the tests it is given, by index."""

    def __init__(self) -> None:
        self.given: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.given.extend(indices)


def _scheduling(nodeids: list[str]) -> _Scheduling:
    # Built as loadscope's schedule() leaves it: every scope queued, most tests first.
    scheduling: Any = _Scheduling.__new__(_Scheduling)
    queue: dict[str, dict[str, bool]] = {}
    for nodeid in nodeids:
        queue.setdefault(scheduling._split_scope(nodeid), {})[nodeid] = False
    scheduling.workqueue = OrderedDict(sorted(queue.items(), key=lambda item: -len(item[1])))
    scheduling.assigned_work = {}
    scheduling.registered_collections = {}
    scheduled: _Scheduling = scheduling
    return scheduled


@pytest.mark.parametrize("scope", LONG_FIRST)
def test_every_long_first_scope_is_a_test_module(scope: str) -> None:
    assert (REPO / scope).is_file(), f"{scope} is gone: take it out of LONG_FIRST"
    assert not scope.startswith(ONE_WORKER)


def test_the_long_first_scopes_are_handed_out_first_in_their_order() -> None:
    many = [f"tests/integration/apiserver/test_many.py::test_{i}" for i in range(5)]
    single = "tests/integration/store/test_single.py::test_it"
    long_ones = [f"{scope}::test_it" for scope in reversed(LONG_FIRST)]
    nodeids = [*many, single, *long_ones]
    scheduling: Any = _scheduling(nodeids)
    worker = _Worker()
    scheduling.registered_collections[worker] = nodeids
    while scheduling.workqueue:
        scheduling._assign_work_unit(worker)
    assert list(scheduling.assigned_work[worker]) == [
        *LONG_FIRST,
        "tests/integration/apiserver/test_many.py",
        "tests/integration/store/test_single.py",
    ]
    assert sorted(worker.given) == list(range(len(nodeids)))
