"""The heartbeat leases' read fails as a store read does: a StoreError, so the scheduler's
pass that made it counts as failed (the heartbeat grace starts over, ``Heartbeats.failed``)
instead of a raw gRPC error that crashed the leader's singleton with a traceback and left
the grace running through an etcd that did not answer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest

from kukeon.controllers.scheduler import alive_nodes
from kukeon.store import EtcdClient, StoreError


class _Refusing:
    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    async def Range(self, *_args: Any, **_kwargs: Any) -> Any:  # noqa: N802 (gRPC's name)
        raise grpc.aio.AioRpcError(
            self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), "Deadline Exceeded", None
        )


@pytest.mark.parametrize("code", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE])
async def test_an_etcd_that_does_not_answer_is_a_store_error(code: grpc.StatusCode) -> None:
    async def connect() -> None:
        pass

    client = cast(EtcdClient, SimpleNamespace(connect=connect, kvstub=_Refusing(code), metadata=()))
    with pytest.raises(StoreError, match="heartbeat leases"):
        await alive_nodes(client, "/kukeon-test")
