"""A key rotation cut short is said on the Node, where `kukectl describe node` shows it:
the condition KeyRotationInterrupted, True (with the command that finishes it) while the
rotation's marker is in kukeond's state directory, False again once a rotate-key through
this node completes. Before, only a log line at start and a gauge said it."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from kukeon.api import Kind, Node
from kukeon.cli.main import cli
from kukeon.client.apiclient import ApiClient
from kukeon.daemon.keyroutes import KEY_ROTATION_INTERRUPTED, MARKER, ROTATE_PATH
from tests.fixtures.kukeond import Kukeond

from .test_unreadable_cells import until

pytestmark = [pytest.mark.integration, pytest.mark.kukeond_config(node_heartbeat_seconds=2)]


async def _condition(k: Kukeond) -> tuple[str, str]:
    node = await k.registry.get(Kind.NODE, (k.config.node_name,))
    assert isinstance(node, Node)
    for condition in node.status.conditions:
        if condition.type == KEY_ROTATION_INTERRUPTED:
            return condition.status, condition.message or ""
    return "absent", ""


async def _is(k: Kukeond, status: str) -> bool:
    return (await _condition(k))[0] == status


async def test_a_rotation_cut_short_is_a_node_condition_until_one_completes(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    keyring = k.registry.keyring
    assert keyring is not None
    server = f"unix://{k.config.api_socket}"
    await until(lambda: _is(k, "False"))

    # What a kukeond killed while sealing leaves (test_crash_recovery makes one for real).
    marker = k.config.state_dir / MARKER
    body = {"previousKeyId": "k-old", "currentKeyId": keyring.current, "startedAt": "x"}
    marker.write_text(json.dumps(body))
    await until(lambda: _is(k, "True"))
    command = f"kukectl secret rotate-key --key-id {keyring.current}"
    assert command in (await _condition(k))[1]
    described = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["--server", server, "describe", "node", k.config.node_name],
        catch_exceptions=False,
    )
    assert described.exit_code == 0, described.output
    row = next(line for line in described.output.splitlines() if KEY_ROTATION_INTERRUPTED in line)
    assert "True" in row
    assert "KeyRotationCutShort" in row
    assert command in row

    # The command it names finishes the rotation: the marker goes, the condition clears.
    async with ApiClient(server=server) as client:
        answer = await client.request("POST", ROTATE_PATH, body={"keyId": keyring.current})
    assert answer["currentKeyId"] == keyring.current
    assert not marker.exists()
    await until(lambda: _is(k, "False"))
