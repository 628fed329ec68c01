"""kubectl's `top pod -l SELECTOR` and `--no-headers`, for `top cells` (and `--no-headers`
for `top nodes`): both were "No such option"."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli import top
from kukeon.cli.main import cli
from tests.unit.cli.test_top import T0, T1, _cell


def _stored(name: str, labels: dict[str, str]) -> AnyResource:
    return parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Cell",
         "metadata": {"name": name, "labels": labels},
         "spec": {"realmId": "prod", "spaceId": "edge", "stackId": "web", "nodeName": "n1",
                  "containers": [{"id": "m", "image": "a:1"}]}}
    )  # fmt: skip


class _Node:
    """Cells a (app=x) and b (app=y) on node n1; the list honours app=x only."""

    def __init__(self) -> None:
        self.reads = 0
        self.selectors: list[str | None] = []

    async def list(self, kind: Kind, scope: Any, label_selector: str | None = None) -> Any:
        self.selectors.append(label_selector)
        cells = [_stored("a", {"app": "x"}), _stored("b", {"app": "y"})]
        chosen = [c for c in cells if label_selector in (None, f"app={c.metadata.labels['app']}")]
        return type("Listing", (), {"items": chosen})()

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        self.reads += 1
        at, cpu = (T0, 1.0) if self.reads == 1 else (T1, 1.5)
        return {"cells": [_cell("a", at, cpu, 1 << 20), _cell("b", at, cpu, 2 << 20)]}


def _top(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, _Node]:
    node = _Node()
    monkeypatch.setattr(top, "SAMPLE_SECONDS", 0.0)
    # The fake's readings say 1 s apart, read at once: its times stand whatever the window.
    monkeypatch.setattr(top, "WINDOW_SLACK", math.inf)
    monkeypatch.setattr(top, "run", lambda ctx, work: asyncio.run(work(node)))
    args = ("--server", "unix:///nonexistent/k.sock", "top", "cells", *args)
    result = CliRunner().invoke(
        cli, [*args, "--realm", "prod", "--space", "edge", "--stack", "web"]
    )
    return result.exit_code, result.stdout, node


def test_a_selector_keeps_the_cells_it_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, node = _top(monkeypatch, "-l", "app=x")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "a"]
    assert node.selectors == ["app=x"]
    code, out, _ = _top(monkeypatch)
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "a", "b"]


def test_no_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = _top(monkeypatch, "--no-headers")
    assert (code, [line.split()[:2] for line in out.splitlines()]) == (
        0,
        [["a", "500m"], ["b", "500m"]],
    )
    assert top.render_nodes([top.NodeRow("n1")], headers=False).split() == [
        "n1",
        *["<unknown>"] * 5,
    ]


def test_names_and_a_selector_do_not_go_together() -> None:
    args = ["--server", "unix:///nonexistent/k.sock", "top", "cells", "a", "-l", "app=x"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "give no names with it" in result.output
