"""The authorization matrix over the TLS listener: each role against each host escalation.

An editor (scoped to its realms) asking for a host power its realm's security level refuses
gets a 403 naming the field path, on create, replace and merge patch alike, and a raw range
over the registry's etcd prefix is byte-for-byte the same afterwards: nothing was written.
The same requests by an admin succeed; a viewer is refused as before; an editor's ordinary
cells still go through.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kukeon.api import Kind
from kukeon.store import Registry
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    VIEWER_TOKEN,
    Api,
    Certs,
    cell_doc,
    create_tree,
    realm_doc,
    running_api,
    space_doc,
    tls_session,
)

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
TEAM = f"{V}/realms/team"
SPACE = f"{TEAM}/spaces/s"
CELLS = f"{SPACE}/stacks/st/cells"
MERGE = {"Content-Type": "application/merge-patch+json"}

# Only compared, never touched: admission decides on the paths as written.
ALLOWED_DIR = "/srv/kukeon-admission-test"
SECRET_DIR = "/etc/kukeon-admission-test/secrets"
ALLOWED_ENV = "KUKEON_ADMISSION_TEST_VALUE"

EDITOR = "editor-admission-" + uuid.uuid4().hex

C = "spec.containers[0]"
# name -> (container fields, cell spec fields, the field path the refusal names)
ESCALATIONS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "privileged": ({"privileged": True}, {}, f"{C}.privileged"),
    "hostPID": ({"hostPID": True}, {}, f"{C}.hostPID"),
    "hostNetwork": ({"hostNetwork": True}, {}, f"{C}.hostNetwork"),
    "hostCgroup": ({"hostCgroup": True}, {}, f"{C}.hostCgroup"),
    "device": ({"devices": ["/dev/kvm"]}, {}, f"{C}.devices[0]"),
    "cap-add-sys-admin": ({"capabilities": {"add": ["SYS_ADMIN"]}}, {}, f"{C}.capabilities.add[0]"),
    "bind-root": ({"volumes": [{"source": "/", "target": "/host"}]}, {}, f"{C}.volumes[0].source"),
    "bind-dotdot": (
        {"volumes": [{"source": f"{ALLOWED_DIR}/../../etc", "target": "/host"}]},
        {},
        f"{C}.volumes[0].source",
    ),
    "fromfile-outside": (
        {"secrets": [{"name": "TOKENS", "fromFile": "/etc/kukeon/tokens.yaml"}]},
        {},
        f"{C}.secrets[0].fromFile",
    ),
    "fromenv-not-allowed": (
        {"secrets": [{"name": "PASSWORD", "fromEnv": "KUKEON_ETCD_PASSWORD"}]},
        {},
        f"{C}.secrets[0].fromEnv",
    ),
    "seccomp-unconfined": ({"securityOpts": ["seccomp=unconfined"]}, {}, f"{C}.securityOpts[0]"),
    "nestedCgroupRuntime": ({}, {"nestedCgroupRuntime": True}, "spec.nestedCgroupRuntime"),
}


def escalated_cell(name: str, escalation: str) -> dict[str, Any]:
    container_fields, spec_fields, _ = ESCALATIONS[escalation]
    document = cell_doc(name)
    document["spec"]["containers"][0].update(copy.deepcopy(container_fields))
    document["spec"].update(copy.deepcopy(spec_fields))
    return document


async def etcd_dump(registry: Registry) -> dict[bytes, tuple[bytes, int, int]]:
    """Every key under the registry's prefix: value, create and mod revision."""
    prefix = registry.key_prefix.encode().rstrip(b"/") + b"/"
    found = await registry.client.get_prefix(prefix)
    return {kv.key: (kv.value, kv.create_revision, kv.mod_revision) for kv in found}


@pytest.fixture
def matrix_tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"token": ADMIN_TOKEN, "user": "alice", "role": "admin"},
                    {"token": VIEWER_TOKEN, "user": "victor", "role": "viewer"},
                    {
                        "token": EDITOR,
                        "user": "eddie",
                        "role": "editor",
                        "realms": ["team", "fresh"],
                    },
                ]
            }
        )
    )
    return path


@pytest.fixture
async def api(registry: Registry, certs: Certs, matrix_tokens: Path) -> AsyncIterator[Api]:
    """The API with admission allowances, and realm team/space s/stack st/cell plain in it."""
    async with running_api(
        registry,
        certs,
        matrix_tokens,
        allowed_host_paths=(ALLOWED_DIR,),
        secret_dirs=(SECRET_DIR,),
        allowed_secret_env=(ALLOWED_ENV,),
    ) as running:
        async with tls_session(running, ADMIN_TOKEN) as admin:
            await create_tree(admin, cells=[cell_doc("plain")])
        yield running


async def expect_forbidden(
    response: aiohttp.ClientResponse, field: str, *, level: str = "restricted"
) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == 403, body
    assert body["kind"] == "Status"
    assert body["reason"] == "Forbidden"
    assert f'{level} security level of realm "team"' in body["message"], body["message"]
    assert field in body["message"]
    assert field in [cause["field"] for cause in body["details"]["causes"]]
    return body


async def stored_cell(http: aiohttp.ClientSession, name: str) -> dict[str, Any]:
    response = await http.get(f"{CELLS}/{name}")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


@pytest.mark.parametrize("escalation", sorted(ESCALATIONS))
async def test_editor_escalation_is_refused_and_nothing_is_written(
    api: Api, registry: Registry, escalation: str
) -> None:
    field = ESCALATIONS[escalation][2]
    before = await etcd_dump(registry)
    async with tls_session(api, EDITOR) as editor:
        await expect_forbidden(
            await editor.post(CELLS, json=escalated_cell("evil", escalation)), field
        )
        await expect_forbidden(
            await editor.post(f"{CELLS}?dryRun=All", json=escalated_cell("evil", escalation)),
            field,
        )
        # replacing the ordinary cell with the escalated one
        current = await stored_cell(editor, "plain")
        replaced = escalated_cell("plain", escalation)
        replaced["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await expect_forbidden(await editor.put(f"{CELLS}/plain", json=replaced), field)
        # patching the ordinary cell: checked on the patched object
        patch = {"spec": escalated_cell("plain", escalation)["spec"]}
        await expect_forbidden(
            await editor.patch(f"{CELLS}/plain", json=patch, headers=MERGE), field
        )
    async with tls_session(api, VIEWER_TOKEN) as viewer:
        refused = await viewer.post(CELLS, json=escalated_cell("evil", escalation))
        assert refused.status == 403
        assert "viewer" in (await refused.json())["message"]
    assert await etcd_dump(registry) == before
    assert [res.metadata.name for res in (await registry.list(Kind.CELL)).items] == ["plain"]


@pytest.mark.parametrize("escalation", sorted(ESCALATIONS))
async def test_admin_may_ask_for_each_escalation(
    api: Api, registry: Registry, escalation: str
) -> None:
    field = ESCALATIONS[escalation][2]
    async with tls_session(api, ADMIN_TOKEN) as admin:
        created = await admin.post(CELLS, json=escalated_cell("adm", escalation))
        assert created.status == 201, await created.text()
        patch = {"spec": escalated_cell("plain", escalation)["spec"]}
        patched = await admin.patch(f"{CELLS}/plain", json=patch, headers=MERGE)
        assert patched.status == 200, await patched.text()
        assert (await stored_cell(admin, "plain"))["spec"] == (await patched.json())["spec"]
    # An editor may relabel the admin's cell (its spec is left alone) but not touch its spec.
    async with tls_session(api, EDITOR) as editor:
        relabel = {"metadata": {"labels": {"owner": "eddie"}}}
        response = await editor.patch(f"{CELLS}/adm", json=relabel, headers=MERGE)
        assert response.status == 200, await response.text()
        before = await etcd_dump(registry)
        stop = {"spec": {"desiredState": "Stopped"}}
        await expect_forbidden(await editor.patch(f"{CELLS}/adm", json=stop, headers=MERGE), field)
        assert await etcd_dump(registry) == before


async def test_editor_may_still_create_ordinary_cells(api: Api, registry: Registry) -> None:
    ordinary = cell_doc("web")
    ordinary["spec"]["containers"][0].update(
        {
            "user": "1000:1000",
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]},
            "securityOpts": ["no-new-privileges"],
            "readOnlyRootFilesystem": True,
            "volumes": [
                {"source": f"{ALLOWED_DIR}/web", "target": "/data"},
                {"source": f"/{ALLOWED_DIR}//./cache/", "target": "/cache", "readOnly": True},
                {"kind": "tmpfs", "target": "/tmp"},
            ],
            "secrets": [
                {"name": "API_TOKEN", "fromFile": f"{SECRET_DIR}/web/token"},
                {"name": "DB_URL", "fromEnv": ALLOWED_ENV},
            ],
        }
    )
    async with tls_session(api, EDITOR) as editor:
        created = await editor.post(CELLS, json=ordinary)
        assert created.status == 201, await created.text()
        stored = await created.json()
        stored["spec"]["containers"][0]["image"] = "busybox:1.36"
        replaced = await editor.put(f"{CELLS}/web", json=stored)
        assert replaced.status == 200, await replaced.text()
        patched = await editor.patch(
            f"{CELLS}/web", json={"spec": {"desiredState": "Stopped"}}, headers=MERGE
        )
        assert patched.status == 200, await patched.text()
        deleted = await editor.delete(f"{CELLS}/web")
        assert deleted.status in (200, 202)


SPACE_ESCALATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "cap-add-sys-admin": (
        {"defaults": {"container": {"capabilities": {"add": ["SYS_ADMIN"]}}}},
        "spec.defaults.container.capabilities.add[0]",
    ),
    "seccomp-unconfined": (
        {"defaults": {"container": {"securityOpts": ["seccomp=unconfined"]}}},
        "spec.defaults.container.securityOpts[0]",
    ),
    "cni-config-path": ({"cniConfigPath": "/etc/cron.d"}, "spec.cniConfigPath"),
    # An allowed directory too: a container bound there rewrites the conflist kukeond
    # reads back for each cell, and so picks the plugins it runs as root.
    "cni-config-path-allowed": ({"cniConfigPath": f"{ALLOWED_DIR}/cni"}, "spec.cniConfigPath"),
}


@pytest.mark.parametrize("escalation", sorted(SPACE_ESCALATIONS))
async def test_space_defaults_carrying_an_escalation(
    api: Api, registry: Registry, escalation: str
) -> None:
    spec, field = SPACE_ESCALATIONS[escalation]
    before = await etcd_dump(registry)
    async with tls_session(api, EDITOR) as editor:
        new_space = space_doc("s2")
        new_space["spec"].update(copy.deepcopy(spec))
        await expect_forbidden(await editor.post(f"{TEAM}/spaces", json=new_space), field)
        await expect_forbidden(
            await editor.patch(SPACE, json={"spec": copy.deepcopy(spec)}, headers=MERGE), field
        )
        current = await (await editor.get(SPACE)).json()
        current["spec"].update(copy.deepcopy(spec))
        await expect_forbidden(await editor.put(SPACE, json=current), field)
    assert await etcd_dump(registry) == before
    async with tls_session(api, ADMIN_TOKEN) as admin:
        response = await admin.patch(SPACE, json={"spec": copy.deepcopy(spec)}, headers=MERGE)
        assert response.status == 200, await response.text()


async def test_cells_are_checked_with_the_defaults_an_admin_gave_their_space(
    api: Api, registry: Registry
) -> None:
    risky = {"spec": {"defaults": {"container": {"capabilities": {"add": ["SYS_ADMIN"]}}}}}
    async with tls_session(api, ADMIN_TOKEN) as admin:
        assert (await admin.patch(SPACE, json=risky, headers=MERGE)).status == 200
    before = await etcd_dump(registry)
    async with tls_session(api, EDITOR) as editor:
        body = await expect_forbidden(
            await editor.post(CELLS, json=cell_doc("inherits")), f"{C}.capabilities.add[0]"
        )
        assert "inherited from spec.defaults.container.capabilities" in body["message"]
        # a container that sets its own capabilities does not inherit the space's
        own = cell_doc("own")
        own["spec"]["containers"][0]["capabilities"] = {"drop": ["NET_RAW"]}
        assert (await editor.post(CELLS, json=own)).status == 201
    after = await etcd_dump(registry)
    assert len(after) == len(before) + 1
    async with tls_session(api, ADMIN_TOKEN) as admin:
        assert (await admin.post(CELLS, json=cell_doc("inherits"))).status == 201


async def test_only_admins_set_or_change_a_realms_level(api: Api, registry: Registry) -> None:
    before = await etcd_dump(registry)
    async with tls_session(api, EDITOR) as editor:
        level = "spec.securityLevel"
        await expect_forbidden(
            await editor.patch(TEAM, json={"spec": {"securityLevel": "privileged"}}, headers=MERGE),
            level,
        )
        current = await (await editor.get(TEAM)).json()
        current["spec"]["securityLevel"] = "baseline"
        await expect_forbidden(await editor.put(TEAM, json=current), level)
        fresh = realm_doc("fresh")
        fresh["spec"] = {"securityLevel": "baseline"}
        response = await editor.post(f"{V}/realms", json=fresh)
        assert response.status == 403, await response.text()
        assert level in (await response.text())
        fresh["spec"] = {"namespace": "team.kukeon.io"}  # another realm's containerd namespace
        response = await editor.post(f"{V}/realms", json=fresh)
        assert response.status == 403
        assert "spec.namespace" in [
            c["field"] for c in (await response.json())["details"]["causes"]
        ]
    assert await etcd_dump(registry) == before
    async with tls_session(api, EDITOR) as editor:
        assert (await editor.post(f"{V}/realms", json=realm_doc("fresh"))).status == 201
    async with tls_session(api, ADMIN_TOKEN) as admin:
        response = await admin.patch(
            TEAM, json={"spec": {"securityLevel": "baseline"}}, headers=MERGE
        )
        assert response.status == 200, await response.text()
    async with tls_session(api, EDITOR) as editor:
        # writes that leave the admin's level alone pass; a PUT without it asks for restricted
        labels = {"metadata": {"labels": {"team": "yes"}}}
        assert (await editor.patch(TEAM, json=labels, headers=MERGE)).status == 200
        current = await (await editor.get(TEAM)).json()
        del current["spec"]["securityLevel"]
        body = await expect_forbidden(
            await editor.put(TEAM, json=current), "spec.securityLevel", level="baseline"
        )
        assert "it is baseline" in body["message"]


async def test_levels_relax_in_steps(api: Api) -> None:
    async def set_level(level: str) -> None:
        async with tls_session(api, ADMIN_TOKEN) as admin:
            patch = {"spec": {"securityLevel": level}}
            assert (await admin.patch(TEAM, json=patch, headers=MERGE)).status == 200

    async with tls_session(api, EDITOR) as editor:
        await set_level("baseline")
        assert (await editor.post(CELLS, json=escalated_cell("cg", "hostCgroup"))).status == 201
        ptrace = cell_doc("debug")
        ptrace["spec"]["containers"][0]["capabilities"] = {"add": ["SYS_PTRACE"]}
        assert (await editor.post(CELLS, json=ptrace)).status == 201
        for escalation in ("privileged", "bind-root", "fromfile-outside"):
            await expect_forbidden(
                await editor.post(CELLS, json=escalated_cell("no", escalation)),
                ESCALATIONS[escalation][2],
                level="baseline",
            )
        await set_level("privileged")
        for escalation in ("privileged", "bind-root", "fromfile-outside", "nestedCgroupRuntime"):
            name = escalation.lower()
            response = await editor.post(CELLS, json=escalated_cell(name, escalation))
            assert response.status == 201, await response.text()


async def test_a_realm_component_gives_each_realm_its_own_directories(
    registry: Registry, certs: Certs, matrix_tokens: Path
) -> None:
    """`{realm}` in secretDirs and allowedHostPaths: realm team's editor reads and binds under
    its own directory, not another realm's (a shared list let every realm's editors read
    every file in it)."""
    async with running_api(
        registry,
        certs,
        matrix_tokens,
        allowed_host_paths=(f"{ALLOWED_DIR}/{{realm}}",),
        secret_dirs=(f"{SECRET_DIR}/{{realm}}",),
    ) as running:
        async with tls_session(running, ADMIN_TOKEN) as admin:
            await create_tree(admin)
        async with tls_session(running, EDITOR) as editor:

            def reading(realm: str) -> dict[str, Any]:
                document = cell_doc(f"reads-{realm}")
                document["spec"]["containers"][0].update(
                    {
                        "volumes": [{"source": f"{ALLOWED_DIR}/{realm}/data", "target": "/d"}],
                        "secrets": [{"name": "DB", "fromFile": f"{SECRET_DIR}/{realm}/db"}],
                    }
                )
                return document

            own = await editor.post(f"{CELLS}?dryRun=All", json=reading("team"))
            assert own.status == 201, await own.text()
            other = await editor.post(f"{CELLS}?dryRun=All", json=reading("fresh"))
            body = await expect_forbidden(other, f"{C}.secrets[0].fromFile")
            assert f"{C}.volumes[0].source" in body["message"]
            assert f"{SECRET_DIR}/team" in body["message"]
