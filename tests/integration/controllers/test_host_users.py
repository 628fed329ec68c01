"""`hostUsers: false` on a real kukeond, containerd 1.6 and runc: root inside is no one outside.

The cell's containers run in a user namespace mapping 0-65535 to its realm's range: the
process is the range's ids on the host, the rootfs is the image's shifted to the range, a
secret file is the container user's mapped uid's (readable inside, not by `nobody` nor by a
host account with the container's in-container uid), exec works (the network namespace is
the user namespace's own), the range survives a restart of kukeond, the remapped snapshot
goes with the last cell using it and the range with the realm.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers.host import ID_RANGES_FILE
from kukeon.daemon.app import Daemon
from kukeon.runtime.idranges import RANGE_SIZE, IdRange, RangeAllocator
from kukeon.runtime.network import cell_network_id
from kukeon.runtime.network.userns import userns_path
from tests.fixtures.containerd import PrivateContainerd, searchable_containerd
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in

pytestmark = pytest.mark.integration

FIRST_ID = 0x72000000 + secrets.randbelow(256) * 4 * RANGE_SIZE
"""A pool of this module's own (above kukeond's default one): four ranges."""
IN_CONTAINER_UID = 1000
"""The container's user: this host has an account with that uid (cloudsdk), or runuser
makes one up below."""


@pytest.fixture(scope="module")
def containerd_daemon() -> Iterator[PrivateContainerd]:
    """A containerd whose state a user namespace's root can reach (``searchable_containerd``)."""
    with searchable_containerd() as daemon:
        yield daemon


def status_ids(pid: int, field: str) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no {field} line in /proc/{pid}/status")


_READ = (
    "import sys\n"
    "for p in sys.argv[1:]:\n"
    "    try:\n"
    "        print(open(p, 'rb').read()[:40])\n"
    "    except OSError as e:\n"
    "        print(type(e).__name__)\n"
)


def read_as(who: list[str], paths: list[str]) -> list[str]:
    """What a host process run by ``who`` (`runuser -u nobody --`, `setpriv ...`) gets
    reading each path: its start or the error's name."""
    done = subprocess.run(
        [*who, "/usr/bin/python3", "-c", _READ, *paths],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.split()


async def running_pid(k: Kukeond, key: tuple[str, ...]) -> int:
    cell = await k.registry.get(Kind.CELL, key)
    assert isinstance(cell, Cell)
    pid = cell.status.containers[0].pid
    assert pid
    return pid


@pytest.mark.kukeond_config(user_namespace_first_id=FIRST_ID, user_namespace_ranges=4)
async def test_root_inside_is_the_realms_range_outside(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    value = f"secret-{secrets.token_hex(8)}"
    source = tmp_path / "token"
    source.write_text(value)
    source.chmod(0o600)
    await k.hierarchy()
    key = cell_key(k, "shy")
    tokens = [{"name": "token", "fromFile": str(source), "mountPath": "/run/secrets/token"}]
    app = container(k, "app", user=f"{IN_CONTAINER_UID}:{IN_CONTAINER_UID}", secrets=tokens)
    await k.apply(cell_doc(k, "shy", [app], hostUsers=False))
    await k.wait_for(Kind.CELL, key, state="Ready")

    ranges = RangeAllocator(
        k.config.state_dir / ID_RANGES_FILE,
        k.config.id_pool,
        claims_dir=k.config.user_namespace_claims_dir,
    )
    assert ranges.range_of(k.realm) == IdRange(FIRST_ID)  # the realm's: the pool's first
    pid = await running_pid(k, key)
    mapped = FIRST_ID + IN_CONTAINER_UID
    assert status_ids(pid, "Uid") == [mapped] * 4
    assert status_ids(pid, "Gid") == [mapped] * 4
    # The rootfs is the image's shifted: root's files are the range's base.
    busybox = os.lstat(f"/proc/{pid}/root/bin/busybox")
    assert (busybox.st_uid, busybox.st_gid) == (FIRST_ID, FIRST_ID)

    cid = "s1_st1_shy_app"
    assert await exec_in(k, cid, "id", "-u") == (0, f"{IN_CONTAINER_UID}\n")
    assert await exec_in(k, cid, "cat", "/run/secrets/token") == (0, value)
    code, links = await exec_in(k, cid, "ls", "/sys/class/net")
    assert (code, sorted(links.split())) == (0, ["eth0", "lo"])  # the cell's, not the host's
    secret = os.stat(f"/proc/{pid}/root/run/secrets/token")
    assert (secret.st_uid, secret.st_mode & 0o777) == (mapped, 0o400)

    # Neither nobody nor a host account with the container's in-container uid reads it.
    environ, mounted = f"/proc/{pid}/environ", f"/proc/{pid}/root/run/secrets/token"
    nobody = ["runuser", "-u", "nobody", "--"]
    assert read_as(nobody, [environ, mounted]) == ["PermissionError"] * 2
    same_uid = ["setpriv", f"--reuid={IN_CONTAINER_UID}", f"--regid={IN_CONTAINER_UID}"]
    assert read_as([*same_uid, "--clear-groups"], [environ, mounted]) == ["PermissionError"] * 2

    # A restart of kukeond keeps the realm's range: the running container is not replaced.
    await k.daemon.stop()
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    assert ranges.range_of(k.realm) == IdRange(FIRST_ID)
    await k.wait_for(Kind.CELL, key, state="Ready")
    await asyncio.sleep(1.0)  # a pass after the restart
    assert await running_pid(k, key) == pid

    # The remapped snapshot goes with the last cell on it, the user namespace file with
    # the cell, the range with the realm.
    netns = k.config.netns_dir / cell_network_id(key, k.config.instance)
    assert userns_path(netns).exists()
    await k.registry.delete(Kind.CELL, key)
    await k.wait_gone(Kind.CELL, key)
    leases = k.containerd.leases(k.namespace)
    await leases.delete((await leases.create()).id, sync=True)  # containerd's collector
    snapshots = await k.containerd.snapshots(k.namespace).list()
    assert [s.name for s in snapshots if "userns" in s.name] == []
    assert not userns_path(netns).exists()
    await k.registry.delete(Kind.REALM, (k.realm,), cascade=True)
    await k.wait_gone(Kind.REALM, (k.realm,), within=60)
    assert ranges.range_of(k.realm) is None


@pytest.mark.kukeond_config(user_namespace_first_id=FIRST_ID, user_namespace_ranges=4)
async def test_ids_another_installation_claimed_first_are_refused(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """Another kukeon installation on the host (its own state directory, the same claims
    directory) claimed the pool's first range for its realm; this node recorded the same
    range for its realm before host-wide claims existed. The cell is refused, its status
    naming the other installation; no container of it starts."""
    k = kukeond
    other_state = tmp_path / "other-installation"
    other = RangeAllocator(
        other_state / ID_RANGES_FILE,
        k.config.id_pool,
        claims_dir=k.config.user_namespace_claims_dir,
        node="elsewhere",
    )
    assert other.ensure("theirs") == IdRange(FIRST_ID)
    recorded = {"version": 1, "ranges": {k.realm: {"base": FIRST_ID, "size": RANGE_SIZE}}}
    (k.config.state_dir / ID_RANGES_FILE).write_text(json.dumps(recorded))

    await k.hierarchy()
    key = cell_key(k, "clash")
    await k.apply(cell_doc(k, "clash", [container(k, "app")], hostUsers=False))
    failed = await k.wait_for(Kind.CELL, key, state="Failed")
    assert failed.status.reason == "UserNamespaceRangeClash", failed.status.message
    assert f"the kukeon installation of {other_state}, node elsewhere" in (
        failed.status.message or ""
    )
    assert "its realm 'theirs' first" in (failed.status.message or "")
    assert await k.containerd.containers(k.namespace).list() == []
    await k.registry.delete(Kind.CELL, key)
    await k.wait_gone(Kind.CELL, key)
