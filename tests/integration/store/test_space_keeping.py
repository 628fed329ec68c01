"""An embedded etcd out of space takes writes again once something was deleted: kukeond
compacts, defragments and clears the NOSPACE alarm (`store.spacekeeping`); before, freeing
room was not enough and every write but a delete was refused until someone ran etcdctl."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aetcd
import grpc
import pytest

from kukeon.store import EmbeddedEtcd
from kukeon.store.connection import EtcdClient
from kukeon.store.spacekeeping import recover_space
from tests.fixtures.services import require_binary

pytestmark = pytest.mark.integration

QUOTA = 8 * 1024 * 1024
VALUE = b"x" * (512 * 1024)


# aetcd raises its ClientError, or gRPC's error as it is, depending on the call.
REFUSALS = (aetcd.exceptions.ClientError, grpc.aio.AioRpcError)


def _out_of_space(error: BaseException) -> bool:
    return "database space exceeded" in str(error)


async def _fill(client: EtcdClient) -> int:
    """Keys of VALUE until etcd refuses one for space: how many it took."""
    for index in range(10 * QUOTA // len(VALUE)):
        try:
            await client.put(f"/fill/{index:04d}".encode(), VALUE)
        except REFUSALS as error:
            if not _out_of_space(error):
                raise
            return index
    raise AssertionError("etcd took more than ten times its quota")


async def test_deletes_then_the_keeper_make_a_full_etcd_take_writes_again(tmp_path: Path) -> None:
    binary = require_binary("etcd", "etcd-server")
    async with EmbeddedEtcd(
        data_dir=tmp_path / "etcd",
        binary=binary,
        extra_args=["--quota-backend-bytes", str(QUOTA)],
        auto_compaction_retention=None,
    ) as etcd:
        client = EtcdClient(etcd.config())
        try:
            await client.connect()
            assert not await recover_space(client)  # no alarm: nothing done
            written = await _fill(client)
            assert written > 0
            await client.delete_prefix(b"/fill/")  # deletes pass under the alarm
            with pytest.raises(REFUSALS) as refused:
                await client.put(b"/after", b"small")  # freeing room is not enough
            assert _out_of_space(refused.value)
            assert await recover_space(client)
            await client.put(b"/after", b"small")
            assert (await client.get(b"/after")).value == b"small"
            assert not [a async for a in client.list_alarms()]
            assert not await recover_space(client)
        finally:
            await asyncio.wait_for(client.close(), 10)


async def test_an_embedded_etcd_starts_again_while_full(tmp_path: Path) -> None:
    """etcd's /health is false while any alarm is raised: the start of an embedded etcd
    whose NOSPACE alarm stood (kukeond restarted on its full etcd) waited for a health that
    never came and failed (EtcdStartError), so kukeond could not start, and its space keeper
    never ran to clear the alarm. The start now asks /health to leave NOSPACE out."""
    binary = require_binary("etcd", "etcd-server")
    etcd = EmbeddedEtcd(
        data_dir=tmp_path / "etcd",
        binary=binary,
        extra_args=["--quota-backend-bytes", str(QUOTA)],
        auto_compaction_retention=None,
        startup_timeout=10.0,
    )
    async with etcd:
        client = EtcdClient(etcd.config())
        try:
            await client.connect()
            assert await _fill(client) > 0
        finally:
            await asyncio.wait_for(client.close(), 10)
    async with etcd:  # before: EtcdStartError, not healthy after 10s
        client = EtcdClient(etcd.config())
        try:
            await client.connect()
            assert [a async for a in client.list_alarms()], "the alarm was cleared by a restart"
            await client.delete_prefix(b"/fill/")
            assert await recover_space(client)
            await client.put(b"/after", b"small")
        finally:
            await asyncio.wait_for(client.close(), 10)
