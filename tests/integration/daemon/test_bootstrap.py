"""kukeond's bootstrap of the default realm, space and stack, against a real etcd."""

import asyncio
import logging

import pytest
from aetcd import rpc

from kukeon.api import Kind
from kukeon.daemon.bootstrap import ensure_defaults
from kukeon.store import NotFound, Registry
from kukeon.store.spacekeeping import recover_space
from tests.fixtures.etcd import running_etcd_server

pytestmark = pytest.mark.integration


async def test_bootstrap_creates_defaults_once(registry: Registry) -> None:
    created = await ensure_defaults(registry)
    assert created == ["realm/default", "space/default/default", "stack/default/default/default"]
    assert await ensure_defaults(registry) == []
    stack = await registry.get(Kind.STACK, ("default", "default", "default"))
    assert stack.metadata.name == "default"


async def test_concurrent_bootstraps_create_each_default_once(registry: Registry) -> None:
    results = await asyncio.gather(*(ensure_defaults(registry) for _ in range(5)))
    created = [label for result in results for label in result]
    assert sorted(created) == sorted(
        ["realm/default", "space/default/default", "stack/default/default/default"]
    )


async def test_bootstrap_leaves_user_changes_alone(registry: Registry) -> None:
    await ensure_defaults(registry)
    realm = await registry.get(Kind.REALM, ("default",))
    realm.metadata.labels["team"] = "infra"
    await registry.update(realm)
    await ensure_defaults(registry)
    assert (await registry.get(Kind.REALM, ("default",))).metadata.labels == {"team": "infra"}


QUOTA = 8 * 1024 * 1024


async def test_a_full_etcd_leaves_the_defaults_to_the_next_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, its SpaceExceeded ended kukeond's start (a restart on a full etcd when a
    default was missing, deleted by its user): a traceback and a restart loop."""
    with running_etcd_server(["--quota-backend-bytes", str(QUOTA)]) as server:
        async with await Registry.connect(server.config(key_prefix="/boot")) as registry:
            client = registry.client
            for index in range(10 * QUOTA // (512 * 1024)):
                try:
                    await client.kvstub.Put(
                        rpc.PutRequest(key=f"/fill/{index}".encode(), value=b"x" * 512 * 1024),
                        timeout=10,
                        metadata=client.metadata,
                    )
                except Exception as error:
                    if "database space exceeded" not in str(error):
                        raise
                    break
            caplog.set_level(logging.WARNING, logger="kukeon.daemon.bootstrap")
            assert await ensure_defaults(registry) == []
            said = [r.getMessage() for r in caplog.records]
            assert len(said) == 3, said
            assert all("the next start creates it" in m for m in said), said
            with pytest.raises(NotFound):
                await registry.get(Kind.REALM, ("default",))

            await client.delete_prefix(b"/fill/")
            assert await recover_space(client)
            assert await ensure_defaults(registry) == [
                "realm/default",
                "space/default/default",
                "stack/default/default/default",
            ]
