"""Secrets from a host file, kukeond's environment and Secrets reach the container, not etcd."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import AnyResource, Cell, Kind
from kukeon.controllers.cellfiles import CellFiles
from tests.fixtures.kukeond import Kukeond

from .conftest import SECRET_ENV
from .helpers import cell_doc, cell_key, container, exec_in

pytestmark = pytest.mark.integration


async def test_secrets_reach_the_container_and_stay_out_of_etcd(
    kukeond: Kukeond, secret_env_value: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon")
    k = kukeond
    file_value = f"file-secret-{secrets.token_hex(8)}"
    source = tmp_path / "token"
    source.write_text(file_value)
    source.chmod(0o600)

    await k.hierarchy()
    key = cell_key(k, "vault")
    secret_list = [
        {"name": "API_KEY", "fromEnv": SECRET_ENV},
        {"name": "token", "fromFile": str(source), "mountPath": "/run/secrets/token"},
    ]
    await k.apply(cell_doc(k, "vault", [container(k, "app", secrets=secret_list)]))
    await k.wait_for(Kind.CELL, key, state="Ready")

    code, environ = await exec_in(k, "s1_st1_vault_app", "cat", "/proc/1/environ")
    assert code == 0
    assert f"API_KEY={secret_env_value}" in environ.split("\0")
    code, mounted = await exec_in(k, "s1_st1_vault_app", "cat", "/run/secrets/token")
    assert (code, mounted) == (0, file_value)
    code, output = await exec_in(k, "s1_st1_vault_app", "sh", "-c", "echo x > /run/secrets/token")
    assert code != 0, output  # mounted read-only

    stored = await k.registry.client.get_prefix(k.config.etcd_prefix.encode())
    everything = b"".join(kv.key + kv.value for kv in stored)
    assert b"vault" in everything  # the cell is there...
    assert secret_env_value.encode() not in everything  # ...its secret values are not
    assert file_value.encode() not in everything
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert secret_env_value not in logged
    assert file_value not in logged


# --- Secrets (kind: Secret) -------------------------------------------------------------


def _secret_doc(k: Kukeond, name: str, values: dict[str, str], **scope: str) -> dict[str, Any]:
    return {
        "kind": "Secret",
        "metadata": {"name": name, "realm": k.realm, **scope},
        "stringData": values,
    }


async def _everything_in_etcd(k: Kukeond) -> bytes:
    stored = await k.registry.client.get_prefix(k.config.etcd_prefix.encode())
    return b"".join(kv.key + kv.value for kv in stored)


def _ref_secrets() -> list[dict[str, Any]]:
    return [
        {"name": "API_TOKEN", "secretRef": {"name": "api", "key": "token"}},
        {
            "name": "token-file",
            "secretRef": {"name": "api", "key": "token"},
            "mountPath": "/run/secrets/token",
        },
    ]


async def test_secret_refs_reach_the_container_as_env_and_a_0400_file_of_its_user(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon")
    k = kukeond
    marker = f"ref-secret-{secrets.token_hex(8)}"
    await k.hierarchy()
    # The stack's Secret wins over the realm's of the same name.
    await k.apply(_secret_doc(k, "api", {"token": "the-realm-one"}))
    await k.apply(_secret_doc(k, "api", {"token": marker}, space="s1", stack="st1"))
    key = cell_key(k, "refs")
    app = container(k, "app", secrets=_ref_secrets(), user="1000:1000")
    await k.apply(cell_doc(k, "refs", [app]))
    await k.wait_for(Kind.CELL, key, state="Ready")

    code, environ = await exec_in(k, "s1_st1_refs_app", "cat", "/proc/1/environ")
    assert code == 0
    assert f"API_TOKEN={marker}" in environ.split("\0")
    code, mounted = await exec_in(k, "s1_st1_refs_app", "cat", "/run/secrets/token")
    assert (code, mounted) == (0, marker)
    code, mode = await exec_in(k, "s1_st1_refs_app", "stat", "-c", "%a %u:%g", "/run/secrets/token")
    assert (code, mode.strip()) == (0, "400 1000:1000")
    staged = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", "refs")).secrets_dir("app")
    assert stat.S_IMODE(staged.stat().st_mode) == 0o700
    assert stat.S_IMODE(staged.parent.stat().st_mode) == 0o700

    assert marker.encode() not in await _everything_in_etcd(k)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert marker not in logged


FIRST_RETRY_SECONDS = 20.0
"""kukeond's `retryBackoffInitialSeconds` for the test below: a failed cell is tried again
no sooner than 18 s later (10 % jitter), far past the 8 s its Secret's watch is given."""


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)
async def test_a_cell_waits_for_its_secret_and_starts_when_it_appears(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "waits")
    await k.apply(cell_doc(k, "waits", [container(k, "app", secrets=_ref_secrets())]))

    def waiting(cell: AnyResource) -> bool:
        return isinstance(cell, Cell) and cell.status.reason == "SecretUnavailable"

    failed = await k.wait_for(Kind.CELL, key, until=waiting)
    message = failed.status.message or ""
    assert "'app'" in message
    assert "'API_TOKEN'" in message
    assert "'api'" in message
    assert "'token'" in message
    # The failure's retry is FIRST_RETRY_SECONDS (less 10 %) after it, so a start within
    # 8 s of the Secret is the Secret watch's doing.
    started = asyncio.get_running_loop().time()
    await k.apply(_secret_doc(k, "api", {"token": "arrived"}, space="s1"))
    await k.wait_for(Kind.CELL, key, state="Ready", within=30)
    assert asyncio.get_running_loop().time() - started < 8
    code, environ = await exec_in(k, "s1_st1_waits_app", "cat", "/proc/1/environ")
    assert code == 0
    assert "API_TOKEN=arrived" in environ.split("\0")


async def test_key_rotation_keeps_cells_running_and_values_unchanged(kukeond: Kukeond) -> None:
    k = kukeond
    marker = f"rotated-secret-{secrets.token_hex(8)}"
    await k.hierarchy()
    await k.apply(_secret_doc(k, "api", {"token": marker}))
    key = cell_key(k, "rotate")
    await k.apply(cell_doc(k, "rotate", [container(k, "app", secrets=_ref_secrets())]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready")
    pid = ready.status.containers[0].pid
    keyring = k.registry.keyring
    assert keyring is not None
    old = keyring.current

    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with (
        aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as http,
        http.post(
            "/apis/kukeon.io/v1beta1/encryption/rotate-key", json={"prune": True}
        ) as response,
    ):
        answer = await response.json()
        assert response.status == 200, answer
    assert answer["previousKeyId"] == old
    assert answer["currentKeyId"] != old
    assert answer["documentsResealed"] >= 1
    assert answer["removedKeyIds"] == [old]
    assert keyring.key_ids == (answer["currentKeyId"],)

    # Every sealed value in etcd names the new key; the value itself appears nowhere.
    stored = await k.registry.client.get_prefix(k.config.etcd_prefix.encode() + b"/registry/")
    envelopes = [
        json.loads(kv.value)["encryptedData"] for kv in stored if b"/registry/secrets/" in kv.key
    ]
    assert envelopes
    assert {envelope["keyId"] for envelope in envelopes} == {answer["currentKeyId"]}
    assert marker.encode() not in await _everything_in_etcd(k)

    # The cell keeps running, the same task, with the same value.
    await asyncio.sleep(2)
    cell = await k.wait_for(Kind.CELL, key, state="Ready")
    assert cell.status.containers[0].pid == pid
    code, mounted = await exec_in(k, "s1_st1_rotate_app", "cat", "/run/secrets/token")
    assert (code, mounted) == (0, marker)
