"""Secrets from a host file and from kukeond's environment reach the container, not etcd."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest

from kukeon.api import Kind
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
