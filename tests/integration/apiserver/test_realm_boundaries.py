"""What a realm's editor (a token scoped to it, over TLS) may not make kukeond do beyond
the realm: hand the realm's registry password to a registry of theirs, pull from the node's
own services, pin work to a cordoned node.

Each refusal names its field; a raw range over the registry's etcd prefix is the same
afterwards (nothing was written).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kukeon.api import Kind, Node, NodeSpec, Realm
from kukeon.store import Registry
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    Api,
    Certs,
    cell_doc,
    create_tree,
    enforced_quotas,
    realm_doc,
    running_api,
    space_doc,
    stack_doc,
    tls_session,
)
from tests.integration.apiserver.test_admission_matrix import etcd_dump

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
TEAM = f"{V}/realms/team"
MERGE = {"Content-Type": "application/merge-patch+json"}
EDITOR = "editor-boundaries-" + uuid.uuid4().hex
LISTED = "127.0.0.1:5999"
"""The one registry on the node this API server's kukeond lists (insecureRegistries)."""
REF = {"name": "registry", "key": "password"}
"""A Secret of the realm (this registry has no key to seal an inline password with)."""


@pytest.fixture
def boundary_tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    tokens = [
        {"token": ADMIN_TOKEN, "user": "alice", "role": "admin"},
        {"token": EDITOR, "user": "eddie", "role": "editor", "realms": ["team"]},
    ]
    path.write_text(yaml.safe_dump({"tokens": tokens}))
    return path


@pytest.fixture
async def api(registry: Registry, certs: Certs, boundary_tokens: Path) -> AsyncIterator[Api]:
    """The API, with realm team, space s and stack st in it."""
    async with running_api(
        registry, certs, boundary_tokens, insecure_registries=(LISTED,)
    ) as running:
        async with tls_session(running, ADMIN_TOKEN) as admin:
            await create_tree(admin)
        yield running


async def expect_invalid(response: aiohttp.ClientResponse, field: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == 422, body
    assert body["kind"] == "Status"
    assert body["reason"] == "Invalid"
    assert field in [cause["field"] for cause in body["details"]["causes"]], body
    assert field in body["message"]
    return body


# --- 1. registry credentials name their registry ---------------------------------------------


async def test_a_credential_without_a_server_address_is_refused(
    api: Api, registry: Registry
) -> None:
    """Sent to whatever registry an image named, it gave an admin-set password to a
    registry the realm's editor runs: a write adding one is refused, an admin's too."""
    field = "spec.registryCredentials[0].serverAddress"
    unaddressed = {"spec": {"registryCredentials": [{"username": "bot", "passwordSecretRef": REF}]}}
    before = await etcd_dump(registry)
    async with tls_session(api, EDITOR) as editor:
        body = await expect_invalid(
            await editor.patch(TEAM, json=unaddressed, headers=MERGE), field
        )
        assert "is required" in body["message"]
        current = await (await editor.get(TEAM)).json()
        current["spec"].update(unaddressed["spec"])
        await expect_invalid(await editor.put(TEAM, json=current), field)
    async with tls_session(api, ADMIN_TOKEN) as admin:
        await expect_invalid(await admin.patch(TEAM, json=unaddressed, headers=MERGE), field)
        fresh = realm_doc("fresh")
        fresh["spec"] = unaddressed["spec"]
        await expect_invalid(await admin.post(f"{V}/realms", json=fresh), field)
    assert await etcd_dump(registry) == before
    addressed = {
        "registryCredentials": [
            {"username": "bot", "passwordSecretRef": REF, "serverAddress": "ghcr.io"}
        ]
    }
    async with tls_session(api, ADMIN_TOKEN) as admin:
        response = await admin.patch(TEAM, json={"spec": addressed}, headers=MERGE)
        assert response.status == 200, await response.text()


async def test_a_realm_stored_with_one_stays_writable_and_gains_no_other(
    api: Api, registry: Registry
) -> None:
    """A realm stored before serverAddress was required keeps it (kukeond sends it to no
    registry and says so): a write leaving it as it is passes, one adding another fails."""
    stored = await registry.get(Kind.REALM, ("team",))
    assert isinstance(stored, Realm)
    legacy = Realm.model_validate(
        {
            **stored.model_dump(by_alias=True, mode="json"),
            "spec": {"registryCredentials": [{"username": "bot", "passwordSecretRef": REF}]},
        }
    )
    await registry.update(legacy)
    async with tls_session(api, ADMIN_TOKEN) as admin:
        response = await admin.patch(TEAM, json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
        assert response.status == 200, await response.text()
        current = await (await admin.get(TEAM)).json()
        response = await admin.put(TEAM, json=current)  # a get/edit/put round trip
        assert response.status == 200, await response.text()
        current = await response.json()
        current["spec"]["registryCredentials"].append(
            {"username": "other", "passwordSecretRef": REF}
        )
        await expect_invalid(
            await admin.put(TEAM, json=current), "spec.registryCredentials[1].serverAddress"
        )


# --- 2. no registry on the node unless kukeond lists it ----------------------------------------


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("127.0.0.1:5000/x:y", "a loopback address"),
        ("127.0.0.1/x:y", "a loopback address"),
        ("[::1]:5000/x:y", "a loopback address"),
        ("localhost:5000/x:y", "a loopback name"),
        ("169.254.169.254/latest:meta", "a link-local address"),
        ("0.0.0.0:2379/x:y", "the unspecified address (this node)"),
    ],
)
async def test_an_editor_may_not_name_a_registry_on_the_node(
    api: Api, registry: Registry, image: str, kind: str
) -> None:
    """kukeond would send GETs under /v2/ to whatever listens there (a blind SSRF against
    the node): an editor's cell naming such an image is refused (403 naming the image),
    unless kukeond's configuration lists the registry."""
    cells = f"{TEAM}/spaces/s/stacks/st/cells"
    before = await etcd_dump(registry)
    async with tls_session(api, EDITOR) as editor:
        response = await editor.post(cells, json=cell_doc("probe", image))
        body = await response.json()
        assert response.status == 403, body
        assert body["reason"] == "Forbidden"
        field = "spec.containers[0].image"
        assert [cause["field"] for cause in body["details"]["causes"]] == [field]
        assert f"is {kind}" in body["message"]
        assert "insecureRegistries, --insecure-registry" in body["message"]
    assert await etcd_dump(registry) == before


async def test_a_listed_registry_on_the_node_and_an_admins_cell_pass(api: Api) -> None:
    cells = f"{TEAM}/spaces/s/stacks/st/cells"
    async with tls_session(api, EDITOR) as editor:
        response = await editor.post(cells, json=cell_doc("listed", f"{LISTED}/x:y"))
        assert response.status == 201, await response.text()
        set_document = {
            "kind": "CellSet",
            "metadata": {"name": "probes"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "p"}},
                "template": {
                    "metadata": {"labels": {"app": "p"}},
                    "spec": cell_doc("x", "127.0.0.1:5000/x:y")["spec"],
                },
            },
        }
        response = await editor.post(f"{TEAM}/spaces/s/stacks/st/cellsets", json=set_document)
        body = await response.json()
        assert response.status == 403, body
        assert body["details"]["causes"][0]["field"] == "spec.template.spec.containers[0].image"
    async with tls_session(api, ADMIN_TOKEN) as admin:
        # An admin may (an image imported under that name): kukeond refuses the pull itself.
        response = await admin.post(cells, json=cell_doc("admins", "127.0.0.1:5000/x:y"))
        assert response.status == 201, await response.text()


# --- 3. nodeName: no cordoned node for an editor ---------------------------------------------


def pinned_cell(name: str, node: str) -> dict[str, Any]:
    document = cell_doc(name)
    document["spec"]["nodeName"] = node
    return document


async def test_an_editor_may_not_pin_a_cell_to_a_cordoned_node(
    api: Api, registry: Registry
) -> None:
    """`nodeName` bypasses the scheduler, which places nothing new on a cordoned node: an
    editor's cell pinned there is refused (403 naming spec.nodeName), an admin's is not
    (drain and maintenance work), and a name no node has yet is accepted (the scheduler
    keeps it Pending, NodeNotFound, until that node joins)."""
    await registry.create(Node.model_validate({"metadata": {"name": "drained"}}))
    stored = await registry.get(Kind.NODE, ("drained",))
    assert isinstance(stored, Node)
    await registry.update(stored.model_copy(update={"spec": NodeSpec(unschedulable=True)}))
    cells = f"{TEAM}/spaces/s/stacks/st/cells"
    before = await etcd_dump(registry)
    async with tls_session(api, EDITOR) as editor:
        response = await editor.post(cells, json=pinned_cell("pinned", "drained"))
        body = await response.json()
        assert response.status == 403, body
        assert body["reason"] == "Forbidden"
        assert [cause["field"] for cause in body["details"]["causes"]] == ["spec.nodeName"]
        assert "node 'drained' is cordoned" in body["message"]
        assert await etcd_dump(registry) == before
        response = await editor.post(cells, json=pinned_cell("later", "not-joined-yet"))
        assert response.status == 201, await response.text()
        # moved onto the cordoned node by a patch: refused too
        response = await editor.patch(
            f"{cells}/later", json={"spec": {"nodeName": "drained"}}, headers=MERGE
        )
        assert response.status == 403, await response.text()
    async with tls_session(api, ADMIN_TOKEN) as admin:
        response = await admin.post(cells, json=pinned_cell("pinned", "drained"))
        assert response.status == 201, await response.text()


# --- 4. a realm's share of each node's subnet pool: spec.quota.spaces ------------------------


async def test_an_editor_creates_no_more_spaces_than_the_admin_allows(
    registry: Registry, certs: Certs, boundary_tokens: Path
) -> None:
    """Each space takes a subnet of a node's pool on every node it runs cells on: without a
    bound one realm took the pool and no other realm's space got a network. An admin sets
    spec.quota.spaces; the editor's space past it is refused (403 naming the field, dry run
    too), the editor cannot raise it, and the realm's quota shows it."""
    async with enforced_quotas(registry), running_api(registry, certs, boundary_tokens) as api:
        async with tls_session(api, ADMIN_TOKEN) as admin:
            await create_tree(admin, stack=None)
            response = await admin.patch(
                TEAM, json={"spec": {"quota": {"spaces": 2}}}, headers=MERGE
            )
            assert response.status == 200, await response.text()
        async with tls_session(api, EDITOR) as editor:
            response = await editor.post(f"{TEAM}/spaces", json=space_doc("s2"))
            assert response.status == 201, await response.text()
            for query in ("?dryRun=All", ""):
                response = await editor.post(f"{TEAM}/spaces{query}", json=space_doc("s3"))
                body = await response.json()
                assert response.status == 403, body
                assert [c["field"] for c in body["details"]["causes"]] == ["spec.quota.spaces"]
                assert "2 of 2 spaces in use" in body["message"]
            # other objects are not spaces
            response = await editor.post(f"{TEAM}/spaces/s2/stacks", json=stack_doc("st"))
            assert response.status == 201, await response.text()
            response = await editor.patch(
                TEAM, json={"spec": {"quota": {"spaces": 10}}}, headers=MERGE
            )
            assert response.status == 403, await response.text()
            assert "spec.quota" in await response.text()
            usage = await (await editor.get(f"{TEAM}/quota")).json()
            assert usage["hard"]["spaces"] == 2
            assert usage["used"]["spaces"] == 2
            response = await editor.delete(f"{TEAM}/spaces/s2/stacks/st")
            assert response.status in (200, 202), await response.text()
