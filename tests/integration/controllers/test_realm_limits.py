"""A realm's `spec.limits` are its cgroup's, so the kernel holds every container of the
realm under them: a fork bomb in one realm stops at its `pids.max` (by default half of what
the host allows) and leaves the host the rest; a limit removed from the spec goes."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Kind, Realm
from kukeon.api.realm import RealmLimits
from kukeon.daemon.app import realm_pids_limit
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, cgroup_dirs, container

pytestmark = pytest.mark.integration

# The inner shell forks until the kernel refuses (and then exits: a failed fork ends a
# busybox script); the outer one becomes a sleep without forking, so the container lives.
BOMB = "sh -c 'i=0; while [ $i -lt 200 ]; do sleep 300 & i=$((i+1)); done'; exec sleep 300"


def _realm_file(k: Kukeond, name: str) -> str:
    found = [d / name for d in cgroup_dirs(k, k.realm) if (d / name).exists()]
    assert found, f"no {name} for realm {k.realm}"
    return found[0].read_text().strip()


async def _until_file(k: Kukeond, name: str, value: str) -> None:
    async with asyncio.timeout(30):
        while _realm_file(k, name) != value:  # noqa: ASYNC110 (cgroupfs has no event)
            await asyncio.sleep(0.1)


async def _set_limits(k: Kukeond, limits: RealmLimits | None) -> None:
    realm = await k.registry.get(Kind.REALM, (k.realm,))
    assert isinstance(realm, Realm)
    spec = realm.spec.model_copy(update={"limits": limits})
    await k.registry.update(realm.model_copy(update={"spec": spec}))


async def test_a_realms_limits_hold_its_containers(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await _set_limits(k, RealmLimits(memory_bytes=256 << 20, pids=40))
    await k.apply(cell_doc(k, "bomb", [container(k, "main", script=BOMB)]))
    await k.wait_for(Kind.CELL, cell_key(k, "bomb"), state="Ready")
    await _until_file(k, "pids.max", "40")
    assert _realm_file(k, "memory.limit_in_bytes") == str(256 << 20)
    # The bomb has run into the ceiling: the realm holds 40 tasks at most.
    async with asyncio.timeout(30):
        while int(_realm_file(k, "pids.current")) < 35:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert int(_realm_file(k, "pids.current")) <= 40

    # Limits removed from the spec go: memory unlimited, pids back to kukeond's default.
    await _set_limits(k, None)
    default = realm_pids_limit(None)
    assert default is not None
    await _until_file(k, "pids.max", str(default))
    assert int(_realm_file(k, "memory.limit_in_bytes")) > 1 << 60
