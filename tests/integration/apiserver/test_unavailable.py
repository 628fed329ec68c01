"""etcd gone: requests answer 503 Status, /readyz fails, /healthz still answers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import aiohttp
import pytest

from kukeon.store import EmbeddedEtcd, Registry
from tests.fixtures.services import require_binary
from tests.integration.apiserver.conftest import Certs, realm_doc, running_api

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


async def test_etcd_down_is_503(certs: Certs, tokens_file: Path) -> None:
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukeon-api-503-", dir="/dev/shm"))
    try:
        async with EmbeddedEtcd(data_dir=root, binary=binary) as etcd:
            config = etcd.config(retry_timeout=1.0, request_timeout=0.5, dial_timeout=0.5)
            async with (
                await Registry.connect(config) as registry,
                running_api(registry, certs, tokens_file) as api,
            ):
                connector = aiohttp.UnixConnector(path=str(api.socket))
                async with aiohttp.ClientSession(connector=connector, base_url="http://k") as http:
                    assert (await http.post(f"{V}/realms", json=realm_doc("r"))).status == 201
                    await etcd.kill()
                    response = await http.get(f"{V}/realms/r")
                    body = await response.json()
                    assert response.status == 503, body
                    assert body["reason"] == "ServiceUnavailable"
                    assert (await http.get(f"{V}/realms")).status == 503
                    ready = await http.get("/readyz")
                    assert ready.status == 503
                    assert "[-]etcd failed" in await ready.text()
                    assert (await http.get("/healthz")).status == 200
    finally:
        shutil.rmtree(root, ignore_errors=True)
