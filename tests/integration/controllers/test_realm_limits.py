"""A realm's `spec.limits` are its cgroup's, so the kernel holds every container of the
realm under them: a fork bomb in one realm stops at its `pids.max` (by default half of what
the host allows) and leaves the host the rest; a limit removed from the spec goes."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from kukeon.api import Kind, Realm
from kukeon.api.realm import RealmLimits
from kukeon.daemon.app import realm_pids_limit
from kukeon.daemon.pidslimits import host_pids_limit, root_pids_limit
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, cgroup_dirs, container, rewrite

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
    """Rewrite the realm's limits from its latest version, as `kukectl apply` does (a
    failing realm's retries write its status meanwhile)."""
    await rewrite(
        k,
        Kind.REALM,
        (k.realm,),
        lambda realm: realm.model_copy(
            update={"spec": realm.spec.model_copy(update={"limits": limits})}
        ),
    )


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


def _root_pids_max(k: Kukeond) -> str:
    found = [d / "pids.max" for d in cgroup_dirs(k) if (d / "pids.max").exists()]
    assert found, "no pids.max on the kukeon root"
    return found[0].read_text().strip()


def _set_root_limit(k: Kukeond, limit: int) -> None:
    """What `hostReservedPids` would give on a host allowing `limit` + the reserve."""
    realms = k.daemon.controllers.realms if k.daemon.controllers is not None else None
    assert realms is not None
    settings = dataclasses.replace(realms.host.settings, root_pids_limit=limit)
    realms.host = dataclasses.replace(realms.host, settings=settings)


async def test_every_realm_together_stays_under_the_roots_ceiling(kukeond: Kukeond) -> None:
    k = kukeond
    # A node materialises a realm (and makes and keeps the root) while it runs a cell of
    # it: the host's limit less the default reserve (10 %, at least 1024).
    assert cgroup_dirs(k) == []  # kukeond's start makes no empty root
    await k.hierarchy()
    await k.apply(cell_doc(k, "quiet", [container(k, "main")]))
    await k.wait_for(Kind.CELL, cell_key(k, "quiet"), state="Ready")
    limit = root_pids_limit(None, host_pids_limit())
    assert limit is not None
    assert _root_pids_max(k) == str(limit)

    # A root allowing 30 (this test's own root: the host's pids are not at risk), a realm
    # asking for 1000: the realm's file says 30, its status says why, and the bomb stops.
    _set_root_limit(k, 30)
    await _set_limits(k, RealmLimits(pids=1000))
    async with asyncio.timeout(30):
        while _root_pids_max(k) != "30":  # noqa: ASYNC110 (cgroupfs has no event)
            await asyncio.sleep(0.1)
    await _until_file(k, "pids.max", "30")
    realm = await k.registry.get(Kind.REALM, (k.realm,))
    assert isinstance(realm, Realm)
    entry = realm.status.nodes[k.config.node_name]
    assert (entry.state, entry.reason) == ("Ready", "PidsLimitCapped")
    assert entry.message is not None
    assert "30" in entry.message

    await k.apply(cell_doc(k, "bomb", [container(k, "main", script=BOMB)]))
    await k.wait_for(Kind.CELL, cell_key(k, "bomb"), state="Ready")
    async with asyncio.timeout(30):
        while int(_realm_file(k, "pids.current")) < 25:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    root_current = [d / "pids.current" for d in cgroup_dirs(k) if (d / "pids.current").exists()]
    assert int(root_current[0].read_text()) <= 30

    # A hand-written root limit is put back at the realm's next reconcile.
    for directory in cgroup_dirs(k):
        if (directory / "pids.max").exists():
            (directory / "pids.max").write_text("max")
    assert k.daemon.operator is not None
    k.daemon.operator.resync()
    async with asyncio.timeout(30):
        while _root_pids_max(k) != "30":  # noqa: ASYNC110
            await asyncio.sleep(0.1)
