"""Two kukeonds of a fleet on one etcd, each with its own usage index, racing creates into
one realm: how far past its quota the realm can go. Each index sees the other node's writes
only through its watch, so in a burst each node admits the room it sees: measured 16-18
cells where 8 fit (the other node had not yet seen the realm's space and stack either).
Bounded by the nodes' count times the limit, not by "a few objects"."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kukeon.api import Kind
from kukeon.store import QuotaExceeded, Registry
from kukeon.store.realmquota import QuotaLimits
from tests.fixtures.etcd import EtcdServer

from .objects import cell
from .test_realm_quotas import _parents, _quotas

pytestmark = pytest.mark.integration


async def test_two_nodes_racing_stay_within_their_limits_together(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    other = await Registry.connect(etcd_server.config(key_prefix=etcd_key_prefix))
    try:
        async with (
            _quotas(registry, QuotaLimits(10, None)) as mine,
            _quotas(other, QuotaLimits(10, None)) as theirs,
        ):
            registry.enforce_quotas(mine)
            other.enforce_quotas(theirs)
            await _parents(registry, "r")  # its space and stack: 2 of 10
            results = await asyncio.gather(
                *(
                    (registry if i % 2 else other).create(cell("r", "s", "st", f"c{i}"))
                    for i in range(40)
                ),
                return_exceptions=True,
            )
            unexpected = [
                r
                for r in results
                if isinstance(r, BaseException) and not isinstance(r, QuotaExceeded)
            ]
            assert not unexpected, unexpected[:3]
            stored = len((await registry.list(Kind.CELL, ("r",))).items)
            assert stored >= 8  # the room both saw is used
            assert 2 + stored <= 2 * 10  # each node admitted at most the limit it saw
    finally:
        with contextlib.suppress(Exception):
            await other.close()
