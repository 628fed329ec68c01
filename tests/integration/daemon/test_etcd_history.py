"""etcd's history going wrong under a running kukeond: its etcd restored from an older
snapshot (the revision goes back; what was written after the snapshot is gone).

kukeond must notice that the history it followed is no more, drop what it held of it and
follow the restored store: a cell created after the restore is run, one that exists only
in the lost history is removed from the node (its document is gone, as a kubelet kills a
pod the API server does not know), and a cell of the snapshot keeps its containers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.api import Kind
from tests.fixtures.etcd import EtcdServer, running_etcd_server
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import (
    cell_doc,
    cell_key,
    container,
    task_ids,
    update_cell,
)

pytestmark = [pytest.mark.integration]


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    """An etcd of this test's own (the session's is shared): it is restored below."""
    with running_etcd_server() as server:
        yield server


def _etcdctl(server: EtcdServer, *args: str) -> None:
    subprocess.run(
        ["etcdctl", *server.etcdctl_args(), *args],
        check=True,
        capture_output=True,
        env={**os.environ, "ETCDCTL_API": "3"},
    )


def restore(server: EtcdServer, snapshot: Path) -> None:
    """Stop the member, replace its data with ``snapshot`` and start it again at the same
    address, as an operator restoring a backup does."""
    member = server.member
    spec = member.spec
    member.stop()
    shutil.rmtree(spec.data_dir)
    subprocess.run(
        [
            "etcdctl", "snapshot", "restore", str(snapshot),
            "--data-dir", str(spec.data_dir),
            "--name", spec.name,
            "--initial-cluster", spec.initial_cluster,
            "--initial-cluster-token", spec.cluster_token,
            "--initial-advertise-peer-urls", spec.peer_url,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "ETCDCTL_API": "3"},
    )  # fmt: skip
    member.spawn()
    member.wait_healthy()


async def tasks_become(k: Kukeond, wanted: set[str], within: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (running := await task_ids(k)) != wanted:
        assert asyncio.get_running_loop().time() < deadline, running
        await asyncio.sleep(0.2)


async def test_a_store_restored_from_an_older_snapshot_is_followed(
    kukeond: Kukeond, etcd_server: EtcdServer, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "kept", [container(k, "kept")]))
    await k.wait_for(Kind.CELL, cell_key(k, "kept"), state="Ready")
    snapshot = tmp_path / "snapshot.db"
    await asyncio.to_thread(_etcdctl, etcd_server, "snapshot", "save", str(snapshot))
    at_snapshot = await k.registry.current_revision()

    # After the snapshot: a cell that will be lost, and enough writes that the revision
    # restored to is well behind the one kukeond's watches have reached.
    await k.apply(cell_doc(k, "lost", [container(k, "lost")]))
    await k.wait_for(Kind.CELL, cell_key(k, "lost"), state="Ready")
    for index in range(40):
        await update_cell(k, cell_key(k, "lost"), metadata={"labels": {"n": str(index)}})
    before_restore = await k.registry.current_revision()
    assert before_restore > at_snapshot + 40
    assert await task_ids(k) == {"s1_st1_kept_kept", "s1_st1_lost_lost"}

    await asyncio.to_thread(restore, etcd_server, snapshot)
    assert await k.registry.current_revision() < before_restore

    # A cell created after the restore is run (its revision is below what kukeond saw).
    await k.apply(cell_doc(k, "fresh", [container(k, "fresh")]))
    await k.wait_for(Kind.CELL, cell_key(k, "fresh"), state="Ready", within=30)

    # The lost cell's containers go; the kept one's run on, managed.
    await tasks_become(k, {"s1_st1_kept_kept", "s1_st1_fresh_fresh"})
    await k.wait_for(Kind.CELL, cell_key(k, "kept"), state="Ready", within=10)


def wipe(server: EtcdServer) -> None:
    """Stop the member and start an empty one at the same address (its data lost)."""
    member = server.member
    member.stop()
    shutil.rmtree(member.spec.data_dir)
    member.spawn()
    member.wait_healthy()


async def test_an_empty_etcd_at_the_same_address_is_followed(
    kukeond: Kukeond, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "old", [container(k, "old")]))
    await k.wait_for(Kind.CELL, cell_key(k, "old"), state="Ready")
    for index in range(20):  # the watches well ahead of the new etcd's first revisions
        await update_cell(k, cell_key(k, "old"), metadata={"labels": {"n": str(index)}})

    await asyncio.to_thread(wipe, etcd_server)

    # Nothing in etcd says the cell should run: its containers go, and the node registers
    # again; what is created anew runs.
    await tasks_become(k, set())
    await k.wait_for(Kind.NODE, (k.config.node_name,), until=lambda node: True, within=30)
    await k.hierarchy()
    await k.apply(cell_doc(k, "new", [container(k, "new")]))
    await k.wait_for(Kind.CELL, cell_key(k, "new"), state="Ready", within=30)
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
