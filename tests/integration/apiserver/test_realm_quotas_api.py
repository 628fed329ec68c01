"""A realm's quota through the API: only an admin sets it; a write over it is a 403 that
names the limit and writes nothing (a dry run is refused the same way)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.store import Registry
from tests.integration.apiserver.conftest import (
    EDITOR_TOKEN,
    Api,
    Certs,
    cell_doc,
    enforced_quotas,
    realm_doc,
    running_api,
    space_doc,
    stack_doc,
    tls_session,
)
from tests.integration.store.test_secrets import sealed

pytestmark = pytest.mark.integration
__all__ = ["sealed"]

V = "/apis/kukeon.io/v1beta1"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
async def quota_api(registry: Registry, certs: Certs, tokens_file: Path) -> AsyncIterator[Api]:
    """The API over a registry that enforces quotas, as kukeond's does."""
    async with _quota_api(registry, certs, tokens_file) as api:
        yield api


@pytest.fixture
async def sealed_quota_api(sealed: Registry, certs: Certs, tokens_file: Path) -> AsyncIterator[Api]:
    """As ``quota_api``, over a registry with an encryption key (Secrets can be stored)."""
    async with _quota_api(sealed, certs, tokens_file) as api:
        yield api


@contextlib.asynccontextmanager
async def _quota_api(registry: Registry, certs: Certs, tokens_file: Path) -> AsyncIterator[Api]:
    async with enforced_quotas(registry), running_api(registry, certs, tokens_file) as running:
        yield running


@contextlib.asynccontextmanager
async def _admin(api: Api) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.UnixConnector(path=str(api.socket))
    async with aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as session:
        yield session


async def _json(response: aiohttp.ClientResponse) -> Any:
    return await response.json()


async def test_only_an_admin_sets_a_realms_quota_and_limits(quota_api: Api) -> None:
    quota = {"spec": {"quota": {"objects": 100}}}
    async with tls_session(quota_api, EDITOR_TOKEN) as editor, _admin(quota_api) as admin:
        refused = await editor.post(f"{V}/realms", json={**realm_doc("team"), **quota})
        body = await _json(refused)
        assert refused.status == 403, body
        assert [cause["field"] for cause in body["details"]["causes"]] == ["spec.quota"]
        limits = {"spec": {"limits": {"pids": 100000}}}
        refused = await editor.post(f"{V}/realms", json={**realm_doc("team"), **limits})
        body = await _json(refused)
        assert refused.status == 403, body
        assert [cause["field"] for cause in body["details"]["causes"]] == ["spec.limits"]
        assert (await editor.post(f"{V}/realms", json=realm_doc("team"))).status == 201
        lifted = await editor.patch(
            f"{V}/realms/team", data=b'{"spec":{"limits":{"pids":100000}}}', headers=MERGE
        )
        assert lifted.status == 403, await _json(lifted)
        raised = await editor.patch(
            f"{V}/realms/team", data=b'{"spec":{"quota":{"objects":99999}}}', headers=MERGE
        )
        assert raised.status == 403, await _json(raised)
        set_by_admin = await admin.patch(
            f"{V}/realms/team", data=b'{"spec":{"quota":{"objects":3}}}', headers=MERGE
        )
        assert set_by_admin.status == 200, await _json(set_by_admin)
        # The editor may still change what is theirs to change (labels), quota untouched.
        labelled = await editor.patch(
            f"{V}/realms/team", data=b'{"metadata":{"labels":{"a":"b"}}}', headers=MERGE
        )
        assert labelled.status == 200, await _json(labelled)
        assert (await _json(labelled))["spec"]["quota"] == {"objects": 3}


async def test_a_create_over_the_quota_is_403_and_writes_nothing(quota_api: Api) -> None:
    async with tls_session(quota_api, EDITOR_TOKEN) as editor, _admin(quota_api) as admin:
        team = {**realm_doc("team"), "spec": {"quota": {"objects": 3, "storageBytes": 100000}}}
        assert (await admin.post(f"{V}/realms", json=team)).status == 201
        base = f"{V}/realms/team/spaces/dev"
        assert (await editor.post(f"{V}/realms/team/spaces", json=space_doc("dev"))).status == 201
        assert (await editor.post(f"{base}/stacks", json=stack_doc("web"))).status == 201
        cells = f"{base}/stacks/web/cells"
        assert (await editor.post(cells, json=cell_doc("one"))).status == 201
        for path in (cells, f"{cells}?dryRun=All"):
            refused = await editor.post(path, json=cell_doc("two"))
            body = await _json(refused)
            assert refused.status == 403, body
            assert body["reason"] == "Forbidden"
            assert 'quota of realm "team"' in body["message"]
            assert [c["field"] for c in body["details"]["causes"]] == ["spec.quota.objects"]
        assert (await editor.get(f"{cells}/two")).status == 404
        # What the realm uses of its quota (kubectl describe quota's Used and Hard).
        usage = await _json(await editor.get(f"{V}/realms/team/quota"))
        assert usage["kind"] == "RealmQuotaStatus"
        assert usage["hard"] == {"objects": 3, "storageBytes": 100000}
        assert usage["used"]["objects"] == 3
        assert 0 < usage["used"]["storageBytes"] < 100000
        assert (await editor.get(f"{V}/realms/other/quota")).status == 403
        assert (await admin.get(f"{V}/realms/nowhere/quota")).status == 404
        # A spec update that grows past storageBytes is refused; one that does not passes.
        grow = b'{"metadata":{"annotations":{"a":"' + b"x" * 100000 + b'"}}}'
        grown = await editor.patch(f"{cells}/one", data=grow, headers=MERGE)
        body = await _json(grown)
        assert grown.status == 403, body
        assert [c["field"] for c in body["details"]["causes"]] == ["spec.quota.storageBytes"]
        small = await editor.patch(
            f"{cells}/one", data=b'{"metadata":{"annotations":{"a":"b"}}}', headers=MERGE
        )
        assert small.status == 200, await _json(small)
        # Deleting frees room (once the index's watch has seen the delete).
        assert (await editor.delete(f"{cells}/one")).status in (200, 202)
        async with asyncio.timeout(10):
            while (await editor.post(cells, json=cell_doc("two"))).status != 201:  # noqa: ASYNC110
                await asyncio.sleep(0.1)


async def test_a_profile_run_over_the_quota_is_403_dry_run_too(quota_api: Api) -> None:
    """A profile's run creates a cell: refused over the quota as any create, and its dry
    run says so as the run would (it answered 201 where the run is a 403)."""
    async with _admin(quota_api) as admin:
        team = {**realm_doc("team"), "spec": {"quota": {"objects": 3}}}
        assert (await admin.post(f"{V}/realms", json=team)).status == 201
        base = f"{V}/realms/team/spaces/dev"
        assert (await admin.post(f"{V}/realms/team/spaces", json=space_doc("dev"))).status == 201
        assert (await admin.post(f"{base}/stacks", json=stack_doc("web"))).status == 201
        profile = {
            "kind": "CellProfile",
            "metadata": {"name": "p"},
            "spec": {"cell": {"containers": [{"id": "a", "image": "busybox"}]}},
        }
        made = await admin.post(f"{base}/stacks/web/cellprofiles", json=profile)
        assert made.status == 201, await _json(made)
        runs = f"{base}/stacks/web/profileruns"
        for path in (runs, f"{runs}?dryRun=All"):
            refused = await admin.post(path, json={"profile": "p"})
            body = await _json(refused)
            assert refused.status == 403, (path, body.get("message"))
            assert [c["field"] for c in body["details"]["causes"]] == ["spec.quota.objects"]


async def test_a_secrets_dry_run_counts_its_values(sealed_quota_api: Api) -> None:
    """A Secret's values are in no document (write-only), so a dry run measured without them
    answered 201 for a Secret whose create is refused over the realm's bytes quota."""
    api = sealed_quota_api
    async with tls_session(api, EDITOR_TOKEN) as editor, _admin(api) as admin:
        team = {**realm_doc("team"), "spec": {"quota": {"storageBytes": 20000}}}
        assert (await admin.post(f"{V}/realms", json=team)).status == 201
        secrets = f"{V}/realms/team/spaces/-/stacks/-/secrets"
        big = {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Secret",
            "metadata": {"name": "big"},
            "stringData": {"blob": "x" * 30000},
        }
        for path in (secrets, f"{secrets}?dryRun=All"):
            refused = await editor.post(path, json=big)
            body = await _json(refused)
            assert refused.status == 403, (path, body.get("message"))
            assert [c["field"] for c in body["details"]["causes"]] == ["spec.quota.storageBytes"]
