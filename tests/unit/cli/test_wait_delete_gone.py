"""`kukectl wait --for=delete` of an object already gone is done and says nothing, as
kubectl's (its wait ignores NotFound for delete): it said "cell/nope condition met" of a cell
that never was, and `-l` matching nothing was "no matching objects found", exit 1."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli import wait
from kukeon.cli.main import cli
from kukeon.client.apiclient import ApiRequestError

SCOPE = ["--realm", "r", "--space", "s", "--stack", "t"]


class _Cells:
    """Cell a exists; every other name is a 404. Lists match nothing."""

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        if key[-1] != "a":
            raise ApiRequestError(404, "NotFound", f"cell {key[-1]} not found")
        return parse_resource(
            {"apiVersion": "kukeon.io/v1beta1", "kind": "Cell", "metadata": {"name": "a"},
             "spec": {"containers": [{"id": "m", "image": "x:1"}]}}
        )  # fmt: skip

    async def list(self, kind: Kind, scope: Any, label_selector: str | None = None) -> Any:
        return type("Listing", (), {"items": []})()


def _wait(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str, list[Any]]:
    waited: list[Any] = []

    async def gone(client: Any, targets: Sequence[Any], within: float) -> list[str]:
        waited.append(list(targets))
        return []  # each one deleted in time

    monkeypatch.setattr(wait, "wait_gone", gone)
    monkeypatch.setattr(wait, "run", lambda ctx, work: asyncio.run(work(_Cells())))
    result = CliRunner().invoke(
        cli, ["--server", "unix:///nonexistent/k.sock", "wait", *args, *SCOPE]
    )
    return result.exit_code, result.stdout, result.stderr, waited


def test_an_object_already_gone_is_done_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _wait(monkeypatch, "cell/nope", "--for=delete")[:3] == (0, "", "")
    code, out, _, waited = _wait(monkeypatch, "cell/a", "cell/nope", "--for=delete")
    assert (code, out) == (0, "cell/a condition met\n")
    assert waited == [[(Kind.CELL, ("r", "s", "t", "a"))]]


def test_a_selector_matching_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _wait(monkeypatch, "cells", "-l", "app=x", "--for=delete")[:3] == (0, "", "")
    code, _, err, _ = _wait(monkeypatch, "cells", "-l", "app=x", "--for=condition=Ready")
    assert code == 1  # anything else still needs something to wait for, as kubectl's
    assert "no matching objects found" in err
