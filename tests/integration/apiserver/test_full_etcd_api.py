"""A full etcd (NOSPACE alarm raised) through the API: every write verb answers 503 "database
space exceeded" at once, nothing is half-written, reads keep working, and writes are taken
again after the space keeper's recovery (docs/reliability.md, "A full etcd takes writes
again once room is freed"). Before, etcd's RESOURCE_EXHAUSTED was retried as transient for
the store's whole retry budget (20 s), so a PATCH's conflict loop outlived the request's
deadline and answered 504."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.store import EmbeddedEtcd, Registry
from kukeon.store.connection import EtcdClient
from kukeon.store.spacekeeping import recover_space
from tests.fixtures.services import require_binary
from tests.integration.apiserver.conftest import (
    Certs,
    cell_doc,
    create_tree,
    enforced_quotas,
    realm_doc,
    running_api,
)

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
STACK = f"{V}/realms/r/spaces/s/stacks/st"
CELLS = f"{STACK}/cells"
MERGE = {"Content-Type": "application/merge-patch+json"}
HELD = ("r", "s", "st", "held")
QUOTA = 8 * 1024 * 1024
VALUE = b"x" * (512 * 1024)
PROMPT = 3.0
"""Seconds a refused write may take: etcd answers at once, no retry budget is spent."""


async def _fill(client: EtcdClient) -> None:
    """Raw keys outside the registry's prefix until etcd refuses one for space."""
    for index in range(10 * QUOTA // len(VALUE)):
        try:
            await client.put(f"/fill/{index:04d}".encode(), VALUE)
        except Exception as error:  # aetcd's ClientError or gRPC's own, by call
            if "database space exceeded" not in str(error):
                raise
            return
    raise AssertionError("etcd took more than ten times its quota")


async def _answer(request: Awaitable[aiohttp.ClientResponse]) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = await request
    body: dict[str, Any] = await response.json()
    return response.status, body, time.monotonic() - started


async def _refused(what: str, request: Awaitable[aiohttp.ClientResponse]) -> None:
    status, body, took = await _answer(request)
    assert status == 503, (what, status, body, took)
    assert body["reason"] == "ServiceUnavailable", (what, body)
    assert "database space exceeded" in body["message"], (what, body)
    assert took < PROMPT, (what, took, body)


async def _ok(request: Awaitable[aiohttp.ClientResponse], code: int = 200) -> dict[str, Any]:
    status, body, _ = await _answer(request)
    assert status == code, body
    return body


async def _every_write_refused(http: aiohttp.ClientSession, cell: dict[str, Any]) -> None:
    await _refused("POST", http.post(CELLS, json=cell_doc("new")))
    await _refused("POST realm", http.post(f"{V}/realms", json=realm_doc("new")))
    labelled = {**cell, "metadata": {**cell["metadata"], "labels": {"x": "put"}}}
    await _refused("PUT", http.put(f"{CELLS}/c", json=labelled))
    patch = b'{"metadata": {"labels": {"x": "patch"}}}'
    await _refused("PATCH", http.patch(f"{CELLS}/c", data=patch, headers=MERGE))
    status_patch = b'{"status": {"message": "patched"}}'
    await _refused(
        "PATCH status", http.patch(f"{CELLS}/c/status", data=status_patch, headers=MERGE)
    )
    status_doc = await _ok(http.get(f"{CELLS}/c/status"))
    status_doc["status"]["message"] = "replaced"
    await _refused("PUT status", http.put(f"{CELLS}/c/status", json=status_doc))
    # A stack has children, so its cascade marks it first (a write etcd refuses).
    await _refused("DELETE (mark)", http.delete(STACK, params={"propagationPolicy": "Background"}))


async def _setup(http: aiohttp.ClientSession) -> dict[str, Any]:
    await create_tree(http, "r", cells=[cell_doc("c"), cell_doc("gone")])
    return await _ok(http.get(f"{CELLS}/c"))


async def _nothing_half_written(http: aiohttp.ClientSession, cell: dict[str, Any]) -> None:
    """And reads keep working."""
    after = await _ok(http.get(f"{CELLS}/c"))
    assert after["metadata"]["resourceVersion"] == cell["metadata"]["resourceVersion"]
    assert (await _ok(http.get(CELLS)))["items"]
    assert "deletionTimestamp" not in (await _ok(http.get(STACK)))["metadata"]
    for absent in (f"{V}/realms/new", f"{CELLS}/new"):
        assert (await _answer(http.get(absent)))[0] == 404


@contextlib.asynccontextmanager
async def _quotas(registry: Registry, enforced: bool) -> AsyncIterator[None]:
    """The realms' quotas as kukeond enforces them, or none: a create then also writes its
    realm's quota serial in the same transaction."""
    if not enforced:
        yield
        return
    async with enforced_quotas(registry):
        yield


@pytest.mark.parametrize("quotas", [True, False], ids=["realm-quotas", "no-quotas"])
async def test_every_write_verb_is_a_prompt_503_on_a_full_etcd(
    certs: Certs, tokens_file: Path, quotas: bool
) -> None:
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukeon-api-full-", dir="/dev/shm"))
    try:
        async with EmbeddedEtcd(
            data_dir=root,
            binary=binary,
            extra_args=["--quota-backend-bytes", str(QUOTA)],
            auto_compaction_retention=None,
        ) as etcd:
            async with (
                await Registry.connect(etcd.config()) as registry,
                _quotas(registry, quotas),
                running_api(registry, certs, tokens_file) as api,
            ):
                connector = aiohttp.UnixConnector(path=str(api.socket))
                async with aiohttp.ClientSession(connector=connector, base_url="http://k") as http:
                    cell = await _setup(http)
                    await _ok(http.post(CELLS, json=cell_doc("held")), 201)
                    await registry.add_finalizer(Kind.CELL, HELD, "kukeon.io/cell-controller")
                    await _fill(registry.client)
                    await _every_write_refused(http, cell)
                    await _nothing_half_written(http, cell)
                    # Its finalizer needs a mark first, a write: the answer says so.
                    status, body, took = await _answer(http.delete(f"{CELLS}/held"))
                    assert status == 503, body
                    assert took < PROMPT
                    message = body["message"]
                    assert "database space exceeded" in message, message
                    assert "holds finalizers (kukeon.io/cell-controller)" in message, message
                    assert "without finalizers (a Secret, for one) is deleted" in message
                    held = await _ok(http.get(f"{CELLS}/held"))
                    assert "deletionTimestamp" not in held["metadata"]
                    # etcd takes deletes under the alarm: a cell without children goes.
                    status, body, took = await _answer(http.delete(f"{CELLS}/gone"))
                    assert status == 200, body
                    assert took < PROMPT
                    assert (await _answer(http.get(f"{CELLS}/gone")))[0] == 404

                    await registry.client.delete_prefix(b"/fill/")
                    assert await recover_space(registry.client)  # what the space keeper does
                    patch = b'{"metadata": {"labels": {"x": "patch"}}}'
                    patched = await _ok(http.patch(f"{CELLS}/c", data=patch, headers=MERGE))
                    assert patched["metadata"]["labels"]["x"] == "patch"
                    await _ok(http.post(CELLS, json=cell_doc("new")), 201)
            await etcd.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)
