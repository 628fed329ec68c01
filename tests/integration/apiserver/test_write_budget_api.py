"""Each realm's write budget on the real server and etcd (``apiserver.writebudget``): an
editor updating a large document in a loop is answered 429 with Retry-After once its realm's
budget is spent, and etcd's database grows by what the budget allows, not by what the loop
sends; another realm's editor writes meanwhile as if nothing happened; the admin is not
charged; an ordinary `kukectl apply` of hundreds of objects meets no refusal at the default
settings; a hostile body or a very low rate is a 4xx, never a 5xx."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kukeon.apiserver.settings import MIN_WRITE_BURST_BYTES
from kukeon.client.apiclient import ApiClient
from kukeon.client.mergepatch import MERGE_PATCH_CONTENT_TYPE
from kukeon.store import Registry
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    EDITOR_TOKEN,
    Api,
    Certs,
    realm_doc,
    running_api,
    space_doc,
    stack_doc,
    tls_session,
)
from tests.integration.apiserver.test_cellsets_api import set_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
OTHER_TOKEN = "other-" + uuid.uuid4().hex
RATE = 64 * 1024
BURST = 2 * MIN_WRITE_BURST_BYTES
LARGE = 250_000  # bytes of annotation: a quarter of the largest document
PATCH = {"Content-Type": MERGE_PATCH_CONTENT_TYPE}


@pytest.fixture
def two_realm_tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"token": ADMIN_TOKEN, "user": "alice", "role": "admin"},
                    {"token": EDITOR_TOKEN, "user": "eddie", "role": "editor", "realms": ["team"]},
                    {"token": OTHER_TOKEN, "user": "olga", "role": "editor", "realms": ["other"]},
                ]
            }
        )
    )
    return path


def _admin(api: Api) -> aiohttp.ClientSession:
    connector = aiohttp.UnixConnector(path=str(api.socket))
    return aiohttp.ClientSession(connector=connector, base_url="http://kukeond")


async def _realms(api: Api, *names: str, **quota: int) -> None:
    async with _admin(api) as admin:
        for name in names:
            document = realm_doc(name)
            if quota:
                document["spec"] = {"quota": quota}
            created = await admin.post(f"{V}/realms", json=document)
            assert created.status == 201, await created.text()


def _annotated(value: str) -> str:
    return json.dumps({"metadata": {"annotations": {"big": value}}})


async def _db_size(registry: Registry) -> int:
    size: int = (await registry.client.status()).db_size
    return size


def _refusals(api: Api, realm: str) -> float:
    value = api.metrics.get_sample_value(
        "kukeon_apiserver_write_budget_refusals_total", {"realm": realm}
    )
    return value or 0.0


@pytest.fixture
async def budgeted(
    private_registry: Registry, certs: Certs, two_realm_tokens: Path
) -> AsyncIterator[Api]:
    async with running_api(
        private_registry,
        certs,
        two_realm_tokens,
        realm_write_bytes_per_second=RATE,
        realm_write_burst_bytes=BURST,
    ) as api:
        await _realms(api, "team", "other")
        yield api


async def _update_loop(
    editor: aiohttp.ClientSession, seconds: float, *, until_refused: bool = False
) -> tuple[int, list[aiohttp.ClientResponse]]:
    """Update a large annotation as fast as the server answers; (bytes accepted, refusals).
    ``until_refused``: stop at the first refusal (``seconds`` then only bounds the wait: how
    many writes fit in a time depends on the machine's load, the budget's end does not)."""
    created = await editor.post(f"{V}/realms/team/spaces", json=space_doc("loop"))
    assert created.status == 201, await created.text()
    accepted, refused = 0, []
    deadline = time.monotonic() + seconds
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        answer = await editor.patch(
            f"{V}/realms/team/spaces/loop", data=_annotated(str(turn % 10) * LARGE), headers=PATCH
        )
        await answer.read()
        assert answer.status < 500, await answer.text()
        if answer.status == 200:
            accepted += LARGE
        else:
            assert answer.status == 429, await answer.text()
            refused.append(answer)
            if until_refused:
                break
    return accepted, refused


async def _other_realm_writes(other: aiohttp.ClientSession, count: int) -> list[int]:
    codes = []
    for index in range(count):
        created = await other.post(f"{V}/realms/other/spaces", json=space_doc(f"s{index}"))
        codes.append(created.status)
        patched = await other.patch(
            f"{V}/realms/other/spaces/s{index}", data=_annotated("x" * 2000), headers=PATCH
        )
        codes.append(patched.status)
        await asyncio.sleep(0.05)
    return codes


async def test_a_loop_of_large_updates_is_429_and_etcd_grows_by_the_budget_only(
    budgeted: Api,
) -> None:
    api = budgeted
    before = await _db_size(api.registry)
    started = time.monotonic()
    async with tls_session(api, EDITOR_TOKEN) as editor, tls_session(api, OTHER_TOKEN) as other:
        (accepted, refused), others = await asyncio.gather(
            _update_loop(editor, 8.0), _other_realm_writes(other, 40)
        )
        elapsed = time.monotonic() - started
        # The loop got its burst and the rate, no more (plus one write's rounding).
        assert accepted <= BURST + RATE * elapsed + LARGE
        assert refused, "the loop was never refused"
        body = await refused[0].json()
        assert body["reason"] == "TooManyRequests"
        assert "realm 'team'" in body["message"]
        assert f"realmWriteBytesPerSecond {RATE}" in body["message"]
        retry = int(refused[0].headers["Retry-After"])
        assert 1 <= retry <= -(-LARGE // RATE) + 1
        # The other realm's editor wrote throughout, never refused.
        assert set(others) <= {200, 201}, others
        assert _refusals(api, "team") == len(refused)
        assert _refusals(api, "other") == 0
        # The admin mends things whatever the realm has written: not charged.
        async with _admin(api) as admin:
            mended = await admin.patch(
                f"{V}/realms/team/spaces/loop", data=_annotated("admin"), headers=PATCH
            )
            assert mended.status == 200, await mended.text()
        # kukectl's client waits the Retry-After it is given and gets in.
        async with ApiClient(server=api.https, token=EDITOR_TOKEN, ca_file=api.ca) as client:
            waited = time.monotonic()
            await client.request(
                "PATCH",
                f"{V}/realms/team/spaces/loop",
                body=json.loads(_annotated("y" * LARGE)),
                content_type=MERGE_PATCH_CONTENT_TYPE,
            )
            assert time.monotonic() - waited >= 1
    grown = await _db_size(api.registry) - before
    # etcd keeps every version: what was accepted (and the other realm's), with bbolt's
    # overhead (about 1.3 bytes a byte), not the ~50 MiB the loop sent.
    sent = (len(refused) + accepted // LARGE) * LARGE
    assert grown <= 2 * (accepted + LARGE + 40 * 8000) + 4 * 1024 * 1024, (grown, sent)
    assert sent > 3 * grown


async def test_a_realms_own_rate_is_its_budget_and_only_an_admin_sets_it(
    private_registry: Registry, certs: Certs, two_realm_tokens: Path
) -> None:
    async with running_api(
        private_registry, certs, two_realm_tokens, realm_write_bytes_per_second=RATE
    ) as api:
        await _realms(api, "team", writeBytesPerSecond=0)  # no bound for this realm
        await _realms(api, "other", writeBytesPerSecond=1)
        async with tls_session(api, EDITOR_TOKEN) as editor:
            accepted, refused = await _update_loop(editor, 3.0)
            assert not refused
            assert accepted > BURST + 3 * RATE  # past what kukeond's default would allow
            # An editor may not change its realm's rate (nor any of its quota).
            realm = await (await editor.get(f"{V}/realms/team")).json()
            realm["spec"]["quota"]["writeBytesPerSecond"] = 10
            replaced = await editor.put(f"{V}/realms/team", json=realm)
            assert replaced.status == 403, await replaced.text()
            assert "spec.quota" in (await replaced.json())["message"]
        async with tls_session(api, OTHER_TOKEN) as other:
            await other.post(f"{V}/realms/other/spaces", json=space_doc("s"))
            answers = []
            for _ in range(40):  # the 8 MiB default burst, then 1 byte a second
                answer = await other.patch(
                    f"{V}/realms/other/spaces/s", data=_annotated("z" * LARGE), headers=PATCH
                )
                answers.append(answer)
                if answer.status != 200:
                    break
            last = answers[-1]
            assert last.status == 429, await last.text()
            assert last.headers["Retry-After"] == "3600"
            message = (await last.json())["message"]
            assert "the realm's spec.quota.writeBytesPerSecond 1" in message


async def test_scaling_a_set_up_and_down_in_a_loop_is_429_for_the_cells_it_makes(
    budgeted: Api,
) -> None:
    """A patch of `replicas` is a few bytes, but each scale-up makes kukeond write that many
    cells over their lives: it is charged for them, so a loop of 50 up, 0 down meets the
    budget after a handful of turns (it never did: the patches alone fit a thousand)."""
    api = budgeted
    async with tls_session(api, EDITOR_TOKEN) as editor:
        spaces = f"{V}/realms/team/spaces"
        assert (await editor.post(spaces, json=space_doc("sets"))).status == 201
        stacks = f"{spaces}/sets/stacks"
        assert (await editor.post(stacks, json=stack_doc("st"))).status == 201
        cellset = {**set_doc(), "apiVersion": "kukeon.io/v1beta1"}
        cellset["spec"]["replicas"] = 0
        created = await editor.post(f"{stacks}/st/cellsets", json=cellset)
        assert created.status == 201, await created.text()
        started = time.monotonic()
        ups = 0
        for turn in range(1000):
            replicas = 50 if turn % 2 == 0 else 0
            answer = await editor.patch(
                f"{stacks}/st/cellsets/web",
                data=json.dumps({"spec": {"replicas": replicas}}),
                headers=PATCH,
            )
            if answer.status == 429:
                break
            assert answer.status == 200, await answer.text()
            ups += replicas == 50
        else:
            raise AssertionError("a thousand scale-ups of 50 cells were never refused")
        allowed = BURST + RATE * (time.monotonic() - started)
        assert 0 < ups <= allowed / (50 * 4 * 1000), ups  # each cell: > 4 KB over its life
        assert "written more than its budget allows" in (await answer.json())["message"]


async def test_hostile_bodies_against_a_spent_budget_are_4xx(budgeted: Api) -> None:
    api = budgeted
    async with tls_session(api, EDITOR_TOKEN) as editor:
        _, refused = await _update_loop(editor, 120.0, until_refused=True)
        assert refused
        huge = await editor.patch(
            f"{V}/realms/team/spaces/loop", data=b"{" + b" " * (2 << 20) + b"}", headers=PATCH
        )
        assert huge.status == 413, await huge.text()
        too_big = await editor.put(
            f"{V}/realms/team/spaces/loop",
            json={**space_doc("loop"), "metadata": {"name": "loop", "labels": {"a": "b" * 70}}},
        )
        assert 400 <= too_big.status < 500, await too_big.text()
        garbage = await editor.post(
            f"{V}/realms/team/spaces",
            data=b"\xff\xfe",
            headers={"Content-Type": "application/json"},
        )
        assert 400 <= garbage.status < 500, await garbage.text()
        # A delete writes a tombstone: charged too, so refused while the budget is spent.
        deleted = await editor.delete(f"{V}/realms/team/spaces/loop")
        assert deleted.status in (200, 429), await deleted.text()
        if deleted.status == 429:
            assert int(deleted.headers["Retry-After"]) >= 1


async def _kukectl(api: Api, *args: str, stdin: bytes) -> tuple[int, str]:
    env = {
        **os.environ,
        "KUKEON_SERVER": api.https,
        "KUKEON_TOKEN": EDITOR_TOKEN,
        "KUKEON_CA": str(api.ca),
        "HOME": str(api.socket.parent),
    }
    command = [sys.executable, "-c", "from kukeon.cli.main import main; main()", *args]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    async with asyncio.timeout(300):
        output, _ = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_an_ordinary_apply_of_hundreds_of_objects_meets_no_refusal(
    registry: Registry, certs: Certs, two_realm_tokens: Path
) -> None:
    # kukeond's default budget, as installed.
    async with running_api(registry, certs, two_realm_tokens) as api:
        await _realms(api, "team")
        documents: list[dict[str, Any]] = [space_doc("apps", "team")]
        for index in range(300):
            stack = {
                "apiVersion": "kukeon.io/v1beta1",
                "kind": "Stack",
                "metadata": {
                    "name": f"stack-{index}",
                    "labels": {"app": f"a{index}", "tier": "web"},
                    "annotations": {"note": "n" * 1500},
                },
                "spec": {"realmId": "team", "spaceId": "apps"},
            }
            documents.append(stack)
        manifest = yaml.safe_dump_all(documents).encode()
        code, output = await _kukectl(api, "apply", "-f", "-", stdin=manifest)
        assert code == 0, output[-2000:]
        code, output = await _kukectl(api, "apply", "-f", "-", stdin=manifest)  # again
        assert code == 0, output[-2000:]
        assert _refusals(api, "team") == 0
