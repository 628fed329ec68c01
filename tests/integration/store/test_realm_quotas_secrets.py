"""A Secret is charged to its realm's quota at the size etcd stores, its values sealed (more
than its plain document): at the create's hold and assumption and at the watch's count."""

from __future__ import annotations

import json

import pytest
from aetcd import rpc

from kukeon.api import to_document
from kukeon.store import Registry

from .objects import space
from .test_realm_quotas import _quotas, _realm, _until
from .test_secrets import sealed, secret

pytestmark = pytest.mark.integration
__all__ = ["sealed"]


async def test_a_secret_is_charged_its_sealed_size(sealed: Registry) -> None:
    registry = sealed
    async with _quotas(registry) as quotas:
        registry.enforce_quotas(quotas)
        await registry.create(_realm("r"))
        await registry.create(space("r", "s"))
        before = quotas.usage("r").storage_bytes
        plain = secret("r", "one", "s", stringData={"password": "p" * 200, "token": "t" * 200})
        await registry.create(plain)
        key = f"{registry.key_prefix}/registry/secrets/r/s/-/one".encode()
        reply = await registry.client.kvstub.Range(
            rpc.RangeRequest(key=key), metadata=registry.client.metadata
        )
        stored = len(key) + len(reply.kvs[0].value)
        plain_size = len(key) + len(json.dumps(to_document(plain), separators=(",", ":")))
        assert stored > plain_size  # sealed is bigger
        assert quotas.usage("r").storage_bytes - before == stored  # as the create assumed
        await _until(lambda: quotas.usage("r").storage_bytes - before == stored)  # as watched
