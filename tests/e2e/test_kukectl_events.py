"""``kukectl events`` and the Events section of ``kukectl describe``, as a user runs them,
against a real kukeond: a cell that exits and is restarted, one the OOM killer ends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kukeon.api import AnyResource, Cell, Kind
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.e2e

HOG = "dd if=/dev/zero of=/dev/null bs=64M count=4"


def _cell(k: Kukeond, name: str, script: str, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "Cell",
        "metadata": {"name": name},
        "spec": {
            "realmId": k.realm,
            "spaceId": "s1",
            "stackId": "st1",
            "containers": [
                {"id": "app", "image": k.image.name, "command": "sh", "args": ["-c", script]}
                | fields
            ],
        },
    }


async def _until(k: Kukeond, name: str, *, within: float = 60.0) -> str:
    """``kukectl events --for cell/NAME`` once it shows a Restarted or OOMKilled line."""
    deadline = asyncio.get_running_loop().time() + within
    out = ""
    while asyncio.get_running_loop().time() < deadline:
        code, out, err = await kukectl(
            k, "events", "--realm", k.realm, "--space", "s1", "--stack", "st1",
            "--for", f"cell/{name}",
        )  # fmt: skip
        assert code == 0, err
        if "Restarted" in out or "OOMKilled" in out:
            return out
        await asyncio.sleep(0.5)
    raise AssertionError(f"no restart or OOM kill in the events of {name}: {out}")


async def test_events_and_describe_show_what_happened(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(
        _cell(
            k,
            "crash",
            "sleep 0.3; exit 3",
            restartPolicy="on-failure",
            restartMaxRetries=1,
            restartBackoffSeconds=1,
        )
    )
    await k.apply(
        _cell(
            k,
            "hog",
            HOG,
            restartPolicy="never",
            resources={"memoryLimitBytes": 16 * 1024 * 1024},
        )
    )

    def gave_up(cell: AnyResource) -> bool:
        assert isinstance(cell, Cell)
        first = cell.status.containers[0] if cell.status.containers else None
        return first is not None and first.restart_count == 1 and first.exit_code == 3

    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "crash"), until=gave_up, within=90)

    out = await _until(k, "crash")
    lines = out.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    reasons = [line.split()[2] if "(x" not in line else line.split()[5] for line in lines[1:]]
    assert {"Created", "Started", "Exited", "BackOff", "Restarted"} <= set(reasons), out
    assert all("cell/s1/st1/crash" in line for line in lines[1:])
    assert "Warning   Exited" in out
    assert "container app exited with code 3 (Error)" in out
    # Oldest first: the container was created before it was restarted.
    assert reasons.index("Created") < reasons.index("Restarted")

    out = await _until(k, "hog")
    assert "OOMKilled" in out
    assert "container app was killed by the OOM killer (exit code 137)" in out

    code, page, err = await kukectl(
        k, "describe", "cell", "hog", "--realm", k.realm, "--space", "s1", "--stack", "st1"
    )
    assert code == 0, err
    assert "OOMKilled" in page.split("Events:")[0]  # the container's reason in status
    events = page.split("Events:")[1].splitlines()
    assert events[1].split() == ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
    assert any(line.split()[:2] == ["Warning", "OOMKilled"] for line in events[2:]), page
    assert k.config.node_name in page.split("Events:")[1]

    code, page, err = await kukectl(
        k, "describe", "stack", "st1", "--realm", k.realm, "--space", "s1"
    )
    assert code == 0, err
    assert "Ready" in page.split("Events:")[1]

    # No name: every cell of the stack (as kubectl describe pods), one page each.
    scope = ("--realm", k.realm, "--space", "s1", "--stack", "st1")
    code, every, err = await kukectl(k, "describe", "cells", *scope)
    assert code == 0, err
    names = [line.split()[1] for line in every.splitlines() if line.startswith("Name:")]
    assert names == ["crash", "hog"], every
    code, none, err = await kukectl(k, "describe", "cells", "-l", "nothing=here", *scope)
    assert (code, none) == (0, ""), err
    assert "No cells found" in err

    # -o json: the EventList; -A adds the REALM column; -w prints what is there, then
    # follows (until --watch-timeout).
    # kubectl's `get events` is the same command
    code, out, err = await kukectl(k, "get", "events", "--realm", k.realm, "-o", "json")
    assert code == 0, err
    listing = json.loads(out)
    assert listing["kind"] == "EventList"
    oom = [e for e in listing["items"] if e["reason"] == "OOMKilled"]
    assert oom[0]["involvedObject"]["name"] == "hog"
    assert oom[0]["type"] == "Warning"
    assert oom[0]["count"] == 1
    code, out, err = await kukectl(k, "events", "-A", "--types", "Warning")
    assert code == 0, err
    assert out.splitlines()[0].split()[0] == "REALM"
    assert all(" Warning " in line for line in out.splitlines()[1:])
    code, out, err = await kukectl(k, "events", "--realm", k.realm, "-w", "--watch-timeout", "2s")
    assert code == 0, err
    assert "OOMKilled" in out
    assert "Restarted" in out
