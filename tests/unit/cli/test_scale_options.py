"""kubectl's `scale --current-replicas N` (a precondition) and `-o name`; both were "No such
option"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.api import AnyResource, CellSet, Kind, parse_resource
from kukeon.cli.main import cli
from kukeon.client.apiclient import ApiRequestError

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]


def _set(replicas: int, version: str) -> CellSet:
    found = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "CellSet",
         "metadata": {"name": "web", "resourceVersion": version},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "w"}},
                  "template": {"metadata": {"labels": {"app": "w"}},
                               "spec": {"containers": [{"id": "m", "image": "a:1"}]}}}}
    )  # fmt: skip
    assert isinstance(found, CellSet)
    return found


class _Sets:
    """A set at 2 replicas; its first patch with a resourceVersion is a conflict when
    ``scaled_meanwhile`` (someone scaled it to 4 in between)."""

    def __init__(self, *, scaled_meanwhile: bool = False) -> None:
        self.stored = _set(2, "5")
        self.scaled_meanwhile = scaled_meanwhile
        self.patches: list[dict[str, Any]] = []

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        return self.stored

    async def patch(self, kind: Kind, key: tuple[str, ...], patch: dict[str, Any]) -> None:
        self.patches.append(patch)
        if self.scaled_meanwhile:
            self.scaled_meanwhile, self.stored = False, _set(4, "6")
            raise ApiRequestError(409, "Conflict", "resourceVersion 5 is stale")


def _scale(monkeypatch: pytest.MonkeyPatch, server: _Sets, *args: str) -> tuple[int, str]:
    monkeypatch.setattr("kukeon.cli.cellsets.run", lambda ctx, work: asyncio.run(work(server)))
    result = CliRunner().invoke(cli, [*NO_SERVER, "scale", "cellset/web", *args])
    return result.exit_code, result.output


def test_current_replicas_is_a_precondition(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _Sets()
    assert _scale(monkeypatch, server, "--replicas", "3", "--current-replicas", "2") == (
        0,
        "cellset/web scaled to 3\n",
    )
    assert server.patches == [{"metadata": {"resourceVersion": "5"}, "spec": {"replicas": 3}}]
    code, output = _scale(monkeypatch, _Sets(), "--replicas", "3", "--current-replicas", "1")
    assert code == 1
    assert "Expected replicas to be 1, was 2" in output  # kubectl's words


def test_a_scale_in_between_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _Sets(scaled_meanwhile=True)
    code, output = _scale(monkeypatch, server, "--replicas", "3", "--current-replicas", "2")
    assert code == 1
    assert "Expected replicas to be 2, was 4" in output
    assert len(server.patches) == 1


def test_o_name_prints_the_set_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _Sets()
    assert _scale(monkeypatch, server, "--replicas", "3", "-o", "name") == (0, "cellset/web\n")
    assert server.patches == [{"spec": {"replicas": 3}}]
