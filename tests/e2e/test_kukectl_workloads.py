"""kukectl as a user runs it (a subprocess) against a real kukeond with real cells."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.fixtures.kukectl import KUKECTL, kukectl, parent_manifests
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import get_cell

pytestmark = pytest.mark.e2e


def ticker_cell(k: Kukeond) -> str:
    return f"""
apiVersion: v1beta1
kind: Cell
metadata: {{name: ticker}}
spec:
  realmId: {k.realm}
  spaceId: web
  stackId: site
  containers:
    - id: t
      image: {k.image.name}
      command: sh
      args: ["-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.3; done"]
"""


async def test_apply_logs_exec_stop_start_delete(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    scope = ["--realm", k.realm, "--space", "web", "--stack", "site"]
    (tmp_path / "parents.yaml").write_text(parent_manifests(k))
    code, out, err = await kukectl(k, "apply", "-f", str(tmp_path / "parents.yaml"))
    assert code == 0, err
    assert f"realm/{k.realm} created" in out

    code, out, err = await kukectl(k, "image", "import", str(k.image.archive), "--realm", k.realm)
    assert code == 0, err
    assert k.image.name in out

    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=ticker_cell(k).encode())
    assert code == 0, err
    assert "cell/ticker created" in out
    code, _, err = await kukectl(
        k, "wait", "cell/ticker", "--for=state=Ready", "--timeout=60s", *scope
    )
    assert code == 0, err

    code, out, _ = await kukectl(k, "get", "cells", *scope)
    assert "ticker" in out
    assert "Ready" in out

    # logs -f streams lines written after it started
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    follower = await asyncio.create_subprocess_exec(
        KUKECTL, "logs", "ticker", "-f", "--tail", "0", *scope, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        lines = [await asyncio.wait_for(follower.stdout.readline(), 10) for _ in range(3)]
    finally:
        follower.terminate()
        await follower.wait()
    numbers = [int(line.decode().strip().removeprefix("tick")) for line in lines]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]

    code, out, _ = await kukectl(
        k, "exec", "ticker", *scope, "--", "sh", "-c", "echo inside; exit 4"
    )
    assert code == 4
    assert out == "inside\n"
    code, out, _ = await kukectl(k, "exec", "-i", "ticker", *scope, "--", "cat", stdin=b"piped\n")
    assert code == 0
    assert out == "piped\n"
    # a refused exec says why, in the server's words
    code, _, err = await kukectl(k, "exec", "ticker", "-c", "nope", *scope, "--", "true")
    assert code == 1
    assert "nope" in err, err
    # a missing binary is 127, as with docker and kubectl; an unknown flag is a usage error
    code, _, err = await kukectl(k, "exec", "ticker", *scope, "--", "/no/such/binary")
    assert code == 127, err
    code, _, err = await kukectl(k, "exec", "ticker", "--bogus", *scope, "--", "true")
    assert code == 2
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    # kill of a container the cell does not have is a not-found error
    code, _, err = await kukectl(k, "kill", "ticker", "-c", "nosuch", *scope)
    assert code == 1
    assert "nosuch" in err, err

    # stop, start and restart wait until the cell has done it (as docker's do)
    ticker_key = (k.realm, "web", "site", "ticker")
    code, out, err = await kukectl(k, "stop", "ticker", *scope)
    assert code == 0, err
    assert out.strip() == "cell/ticker stopped"
    assert str((await get_cell(k, ticker_key)).status.state) == "Stopped"
    code, _, err = await kukectl(k, "exec", "ticker", *scope, "--", "true")
    assert code == 1
    assert "not running" in err, err
    assert "ticker" in err, err
    code, _, err = await kukectl(k, "start", "ticker", *scope)
    assert code == 0, err
    started = await get_cell(k, ticker_key)
    assert str(started.status.state) == "Ready"
    code, _, err = await kukectl(k, "restart", "ticker", *scope)
    assert code == 0, err
    restarted = await get_cell(k, ticker_key)
    assert str(restarted.status.state) == "Ready"
    assert restarted.status.containers[0].pid != started.status.containers[0].pid
    code, out, err = await kukectl(k, "stop", "ticker", "--no-wait", *scope)
    assert code == 0, err
    assert out.strip() == "cell/ticker stopped"
    code, _, err = await kukectl(k, "start", "ticker", "--timeout=30s", *scope)
    assert code == 0, err

    # a bad manifest: every invalid field listed, nothing written, exit code 2
    bad = (
        ticker_cell(k)
        .replace("ticker", "Bad_Name")
        .replace("id: t", "id: t\n      env: [NOEQUALS]")
    )
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=bad.encode())
    assert code == 2
    assert "metadata.name" in err
    assert "env[0]" in err

    code, out, err = await kukectl(k, "delete", "realm", k.realm)
    assert code == 1
    assert "cascad" in err
    code, out, err = await kukectl(
        k, "delete", "realm", k.realm, "--cascade", "--wait", "--timeout=90s"
    )
    assert code == 0, err
    code, out, _ = await kukectl(k, "get", "realms")
    assert k.realm not in out
