"""A realm's cascade: each level's finalize, waiting for its children to go, is woken by
its children's deletes, not by its wait's retry delay (a poll of 30 s would fail the bound),
so a realm of one space, stack and running cell goes in about its cell's stop.

Three paths wake it: the child awaited by the wait (``require_no_children``), the store's
release of the parent's ``kukeon.io/children`` finalizer once its last child is removed (a
change of the parent's metadata), and the cell-membership trigger of a cell's levels. This
passes on the tree before the first was added too (the other two woke every level); it
guards the bound whichever of them wakes.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

POLL = 30.0
"""The levels' wait delay (``parentWaitSeconds``) in this test: no pass waits for it."""


async def test_a_realms_cascade_is_woken_by_its_childrens_deletes(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "one")
    await k.apply(cell_doc(k, "one", [container(k, "a")]))
    await k.wait_for(Kind.CELL, key, state="Ready")
    controllers = k.daemon.controllers
    assert controllers is not None
    host = controllers.host
    object.__setattr__(host, "settings", replace(host.settings, parent_wait_seconds=POLL))

    started = time.monotonic()
    await k.registry.delete(Kind.REALM, (k.realm,), cascade=True, background=True)
    await k.wait_gone(Kind.CELL, key, within=POLL)
    cell_gone = time.monotonic() - started
    await k.wait_gone(Kind.REALM, (k.realm,), within=POLL)
    realm_gone = time.monotonic() - started
    # The space waits for its stack and the realm for its space after the cell went: each
    # of those waits would last POLL if only its retry woke it.
    assert realm_gone - cell_gone < POLL / 6, (cell_gone, realm_gone)
