"""kukeond against registries that attack it (on loopback, listed as an installation must
list them): a cell naming an image of a registry answering in zstd, or dripping a layer a
byte at a time, fails with reason ImageUnavailable saying why, and kukeond goes on running
cells. The registry client's side of each attack is tests/unit/runtime/test_hostile_registry.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from backports import zstd

from kukeon.api import Cell, Kind
from kukeon.runtime.containerd import registrybody
from tests.fixtures.kukeond import Kukeond
from tests.integration.daemon.test_image_routes import cell_document
from tests.unit.runtime.test_hostile_registry import ZSTD_LONG, Hostile, coded, dripped, serve
from tests.unit.runtime.test_registry_client import make_image

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(insecure_registries=["127.0.0.1"]),
]


@pytest.fixture
async def hostiles(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str]]:
    """Two registries: one answering its manifest in zstd, one dripping its layer.

    The pace kukeond asks of a body is shortened for as long as they serve (a minute for
    every 16 KiB, here 2 s for 1 KiB: the drip, 2 bytes a second, is past it): undone
    before they close, kukeond's pull retried meanwhile would keep the drip going a minute.
    """
    monkeypatch.setattr(registrybody, "PACE_BYTES", 1024)
    monkeypatch.setattr(registrybody, "PACE_SECONDS", 2.0)
    zstd_coded = Hostile(make_image(layer_count=1))
    zstd_coded.manifest = coded("zstd", lambda data: zstd.compress(data, options=ZSTD_LONG))
    slow = Hostile(make_image(layer_count=1))
    slow.blob = dripped(0.5)
    servers: list[TestServer] = []
    hosts: dict[str, str] = {}
    for name, registry in (("zstd", zstd_coded), ("slow", slow)):
        server = await serve(registry)
        servers.append(server)
        hosts[name] = f"127.0.0.1:{server.port}"
    try:
        yield hosts
    finally:
        for server in servers:
            await server.close()


async def test_cells_of_hostile_registries_say_why_and_kukeond_goes_on(
    kukeond: Kukeond, hostiles: dict[str, str]
) -> None:
    k = kukeond
    await k.hierarchy()
    whys = {
        "zstd": "the answer is coded 'zstd' (Content-Encoding), which kukeond did not ask for",
        "slow": "too slow: the registry sent",
    }
    for name, host in hostiles.items():
        await k.apply(cell_document(k, name, f"{host}/app:1"))
    for name, why in whys.items():
        cell = await k.wait_for(
            Kind.CELL,
            (k.realm, "s1", "st1", name),
            until=lambda c: isinstance(c, Cell) and c.status.reason == "ImageUnavailable",
            within=60,
        )
        assert isinstance(cell, Cell)
        assert cell.status.message is not None
        assert why in cell.status.message, cell.status.message
        assert f"{hostiles[name]}/app:1" in cell.status.message
    # The node still runs cells.
    await k.apply(cell_document(k, "fine", k.image.name))
    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "fine"), state="Ready", within=90)
    assert not [
        image.name
        for image in await k.containerd.images(k.namespace).list()
        if image.name.startswith("127.0.0.1:")
    ]
