"""A realm's memory limit lowered below what its containers use: the kernel refuses it
(cgroup v1: EBUSY once reclaim cannot free enough; shared memory without swap cannot be
reclaimed), the realm says so on the node (Failed, the kernel's reason), its other limits
are set all the same, its containers run on under the memory limit they had, and a limit
raised again is set and the realm is Ready."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Kind, Realm
from kukeon.api.realm import RealmLimits
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container
from .test_realm_limits import _realm_file, _set_limits, _until_file

pytestmark = pytest.mark.integration

# 40 MiB of shared memory (tmpfs pages: charged to the cgroup, not reclaimable without swap).
HOG = "dd if=/dev/zero of=/dev/shm/hog bs=1M count=40 2>/dev/null; exec sleep 300"


def _failed(obj: object) -> bool:
    return isinstance(obj, Realm) and str(obj.status.state) == "Failed"


async def test_a_memory_limit_below_usage_fails_the_realm_until_raised(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "hog", [container(k, "main", script=HOG)]))
    await k.wait_for(Kind.CELL, cell_key(k, "hog"), state="Ready")
    async with asyncio.timeout(30):
        while int(_realm_file(k, "memory.usage_in_bytes")) < 40 << 20:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    # With a pids limit in the same change: the kernel's refusal of the memory limit must
    # not keep the pids limit from the realm (an operator reining in a realm gone wild).
    await _set_limits(k, RealmLimits(memory_bytes=16 << 20, pids=50))
    failed = await k.wait_for(Kind.REALM, (k.realm,), until=_failed)
    await _until_file(k, "pids.max", "50")
    assert "memory.limit_in_bytes" in (failed.status.message or ""), failed.status
    assert "busy" in (failed.status.message or "").lower(), failed.status
    assert int(_realm_file(k, "memory.limit_in_bytes")) > 1 << 60  # unchanged: none
    await k.wait_for(Kind.CELL, cell_key(k, "hog"), state="Ready")  # runs on

    await _set_limits(k, RealmLimits(memory_bytes=256 << 20))
    await _until_file(k, "memory.limit_in_bytes", str(256 << 20))
    await k.wait_for(Kind.REALM, (k.realm,), state="Ready")
