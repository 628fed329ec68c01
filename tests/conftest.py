"""Root conftest: registers the shared fixture plugins of tests/fixtures, the hypothesis
profile every property test runs under, and how pytest-xdist shares out the integration
and e2e suites."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

pytest_plugins = [
    "tests.fixtures.hostleaks",
    "tests.fixtures.services",
    "tests.fixtures.etcd",
    "tests.fixtures.containerd",
    "tests.fixtures.kukeond",
    "tests.fixtures.soak",
    "tests.fixtures.leftovers",  # last: it imports the plugins above
]

# No per-example deadline: hypothesis's default (200 ms) is a timing assertion, which a
# loaded 2-core CI machine fails now and then (test_no_collisions_in_a_fleet did, once,
# at load 12); a property's examples are judged by what they assert, never by their time.
settings.register_profile("kukeon", deadline=None)
settings.load_profile("kukeon")

ONE_WORKER = ("tests/integration/packaging/",)
"""Directories whose tests all run on one pytest-xdist worker, one after another: the
packaging tests share a session-scoped image build (minutes, once) and the build's
cache under ~/.cache/kukeon, which two builds at once would race for."""


LONG_FIRST = (
    "tests/integration/fleet/test_never_two_copies.py",  # 80 s
    "tests/integration/controllers/test_crash_recovery.py",  # 67 s in 4 of its 6 tests
    "tests/integration/controllers/test_cascade.py",  # 54 s
    "tests/integration/controllers/test_cellsets.py",  # 46 s in 1 of 3
    "tests/integration/daemon/test_full_etcd_at_start.py",  # 44 s in 1 of 2
    "tests/integration/fleet/test_cellset_fleet.py",  # 34 s in 2 of 4
    "tests/integration/daemon/test_every_route.py",  # 30 s in 1 of 2
    "tests/integration/fleet/test_materialisation.py",  # 27 s in 1 of 3
    "tests/integration/controllers/test_stop_start.py",  # 27 s in 1 of 7
    "tests/integration/controllers/test_hostile_cells.py",  # 25 s
    "tests/e2e/test_kukectl_cellsets.py",  # 19 s
    "tests/integration/fleet/test_fleet_up.py",  # 17 s
)
"""Scopes handed out before all others, longest first (the tests' calls in CI's slowest 40,
stop 50's run 3 on 2 cores).
loadscope hands out the modules of most tests first, so a module of one or two long
scenarios came last: the worker that took it (and one or two small modules queued after
it) ran on alone for up to a minute and a half while the other had nothing left."""


class _Scheduling(LoadScopeScheduling):  # type: ignore[misc]
    """``--dist loadscope``, with each directory of ONE_WORKER as one scope and the scopes
    of LONG_FIRST handed out first.

    loadscope gives a module (a class) to one worker at a time, which the host leak check
    needs (tests/fixtures/hostleaks.py) and module-scoped fixtures are built for.
    """

    _long_first_placed = False

    def _assign_work_unit(self, node: Any) -> None:
        # The work queue (an OrderedDict, in loadscope's order) is whole at the first call.
        if not self._long_first_placed:
            self._long_first_placed = True
            for scope in reversed(LONG_FIRST):
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)

    def _split_scope(self, nodeid: str) -> str:
        for directory in ONE_WORKER:
            if nodeid.startswith(directory):
                return directory
        scope: str = super()._split_scope(nodeid)
        return scope


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    return _Scheduling(config, log)
