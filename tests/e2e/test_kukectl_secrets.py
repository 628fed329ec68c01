"""kukectl create secret: the value reaches the container, and nothing else shows it."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukectl import kukectl, parent_manifests
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.e2e


def secret_cell(k: Kukeond) -> str:
    return f"""
apiVersion: v1beta1
kind: Cell
metadata: {{name: vault}}
spec:
  realmId: {k.realm}
  spaceId: web
  stackId: site
  containers:
    - id: app
      image: {k.image.name}
      command: sh
      args: ["-c", "{SLEEPER_SCRIPT}"]
      user: "1000:1000"
      secrets:
        - name: API_TOKEN
          secretRef: {{name: api, key: token}}
        - name: cert
          secretRef: {{name: api, key: cert}}
          mountPath: /run/secrets/cert
"""


async def test_a_secret_created_with_kukectl_reaches_the_container_and_nothing_else(
    kukeond: Kukeond, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon")
    k = kukeond
    token = f"tok-{secrets.token_hex(10)}"
    cert = f"cert-{secrets.token_hex(10)}"
    markers = (token, cert)
    scope = ["--realm", k.realm, "--space", "web", "--stack", "site"]
    (tmp_path / "parents.yaml").write_text(parent_manifests(k))
    code, _, err = await kukectl(k, "apply", "-f", str(tmp_path / "parents.yaml"))
    assert code == 0, err
    code, _, err = await kukectl(k, "image", "import", str(k.image.archive), "--realm", k.realm)
    assert code == 0, err
    (tmp_path / "cert.pem").write_text(cert)

    code, out, err = await kukectl(
        k, "create", "secret", "generic", "api", "--realm", k.realm,
        "--from-literal", f"token={token}", "--from-file", f"cert={tmp_path / 'cert.pem'}",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == "secret/api created"
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=secret_cell(k).encode())
    assert code == 0, err
    code, _, err = await kukectl(
        k, "wait", "cell/vault", "--for=state=Ready", "--timeout=60s", *scope
    )
    assert code == 0, err

    script = 'echo "$API_TOKEN"; cat /run/secrets/cert; echo; stat -c "%a %u" /run/secrets/cert'
    code, out, err = await kukectl(k, "exec", "vault", *scope, "--", "sh", "-c", script)
    assert code == 0, err
    assert out.splitlines() == [token, cert, "400 1000"]

    # What kukectl shows: keys, sizes, digests.
    shown = []
    for args in (
        ["get", "secrets", "--realm", k.realm],
        ["get", "secrets", "-A", "-o", "wide"],
        ["get", "secret", "api", "--realm", k.realm, "-o", "yaml"],
        ["get", "secret", "api", "--realm", k.realm, "-o", "json"],
        ["describe", "secret", "api", "--realm", k.realm],
        ["get", "secrets", "--realm", k.realm, "-w", "--watch-timeout", "1s", "-o", "json"],
        ["get", "realm", k.realm, "-o", "yaml"],
    ):
        code, out, err = await kukectl(k, *args)
        assert code == 0, (args, err)
        shown.append(out + err)
    everything_shown = "\n".join(shown)
    for marker in markers:
        assert marker not in everything_shown
    assert hashlib.sha256(token.encode()).hexdigest() in everything_shown
    document = json.loads(shown[3])
    assert [key["name"] for key in document["status"]["keys"]] == ["cert", "token"]
    assert "data" not in document

    # etcd: no value under any key, in the raw bytes.
    stored = await k.registry.client.get_prefix(k.config.etcd_prefix.encode())
    raw = b"".join(kv.key + kv.value for kv in stored)
    assert b"/registry/secrets/" in raw
    for marker in markers:
        assert marker.encode() not in raw

    # Rotation: the cell keeps its task and its values.
    before = await k.registry.get(Kind.CELL, (k.realm, "web", "site", "vault"))
    assert isinstance(before, Cell)
    code, out, err = await kukectl(k, "secret", "rotate-key", "--prune")
    assert code == 0, err
    assert "is current" in out
    code, out, err = await kukectl(k, "exec", "vault", *scope, "--", "sh", "-c", script)
    assert code == 0, err
    assert out.splitlines() == [token, cert, "400 1000"]
    after = await k.registry.get(Kind.CELL, (k.realm, "web", "site", "vault"))
    assert isinstance(after, Cell)
    assert after.status.containers[0].pid == before.status.containers[0].pid

    code, out, err = await kukectl(k, "delete", "secret", "api", "--realm", k.realm)
    assert code == 0, err
    assert "secret/api deleted" in out

    logged = "\n".join(record.getMessage() for record in caplog.records)
    for marker in markers:
        assert marker not in logged
