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


class _Scheduling(LoadScopeScheduling):  # type: ignore[misc]
    """``--dist loadscope``, with each directory of ONE_WORKER as one scope.

    loadscope gives a module (a class) to one worker at a time, which the host leak check
    needs (tests/fixtures/hostleaks.py) and module-scoped fixtures are built for.
    """

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
