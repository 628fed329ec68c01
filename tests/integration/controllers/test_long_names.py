"""Cells whose names containerd would refuse as its ids (a `--` in a DNS label, or names
passing its 76 characters together) start: each failed for ever with INVALID_ARGUMENT,
as UnexpectedError, before their containerd ids were shortened (`containerd_identifier`)."""

from __future__ import annotations

import pytest

from kukeon.api import Cell, Kind
from kukeon.api.container import containerd_container_id
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in

pytestmark = pytest.mark.integration


async def test_cells_whose_natural_ids_containerd_refuses_run(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    long = "l" * 63
    for name, cid in (("x--y", "m--n"), (long, long)):
        await k.apply(cell_doc(k, name, [container(k, cid)]))
    for name, cid in (("x--y", "m--n"), (long, long)):
        ready = await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")
        assert isinstance(ready, Cell)
        found = containerd_container_id(space="s1", stack="st1", cell=name, container=cid)
        assert len(found) <= 76
        code, out = await exec_in(k, found, "echo", "here")
        assert (code, out.strip()) == (0, "here")
    for name in ("x--y", long):
        await k.registry.delete(Kind.CELL, cell_key(k, name))
    for name in ("x--y", long):
        await k.wait_gone(Kind.CELL, cell_key(k, name))
    assert not await k.containerd.containers(k.namespace).list(labels={})
