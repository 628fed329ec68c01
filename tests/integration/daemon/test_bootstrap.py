"""kukeond's bootstrap of the default realm, space and stack, against a real etcd."""

import asyncio

import pytest

from kukeon.api import Kind
from kukeon.daemon.bootstrap import ensure_defaults
from kukeon.store import Registry

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
