"""`kukectl patch|label|annotate ... -o name` print KIND/NAME alone, as kubectl's -o name
(its NamePrinter drops the operation): patch printed "cell/c patched" under -o name, since
-o name was the default that printed the word; label and annotate refused -o."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.api import AnyResource, Cell, Kind, parse_resource
from kukeon.cli.main import cli

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]


def _cell(labels: dict[str, str]) -> Cell:
    cell = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Cell",
         "metadata": {"name": "c", "labels": labels},
         "spec": {"containers": [{"id": "main", "image": "a:1"}]}}
    )  # fmt: skip
    assert isinstance(cell, Cell)
    return cell


class _Stored:
    """One cell; a patch answers it with the patch's labels merged in."""

    def __init__(self) -> None:
        self.cell = _cell({"a": "1"})
        self.patches: list[dict[str, Any]] = []

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        return self.cell

    async def list(self, kind: Kind, scope: tuple[str, ...], **_: Any) -> Any:
        return type("Listing", (), {"items": [self.cell]})()

    async def patch(
        self, kind: Kind, key: tuple[str, ...], patch: dict[str, Any], **_: Any
    ) -> AnyResource:
        self.patches.append(patch)
        labels = {**self.cell.metadata.labels, **patch["metadata"].get("labels", {})}
        return _cell({k: v for k, v in labels.items() if v is not None})


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, _Stored]:
    server = _Stored()
    monkeypatch.setattr("kukeon.cli.metadata.run", lambda ctx, work: asyncio.run(work(server)))
    result = CliRunner().invoke(cli, [*NO_SERVER, *args])
    return result.exit_code, result.stdout, server


@pytest.mark.parametrize("dry_run", [[], ["--dry-run=server"]])
def test_patch_o_name_prints_kind_and_name_alone(
    monkeypatch: pytest.MonkeyPatch, dry_run: list[str]
) -> None:
    patch = '{"metadata": {"labels": {"b": "2"}}}'
    code, out, server = _run(monkeypatch, "patch", "cell", "c", "-p", patch, "-o", "name", *dry_run)
    assert (code, out) == (0, "cell/c\n")
    assert server.patches == [{"metadata": {"labels": {"b": "2"}}}]


def test_patch_without_o_says_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    patch = '{"metadata": {"labels": {"b": "2"}}}'
    assert _run(monkeypatch, "patch", "cell/c", "-p", patch)[:2] == (0, "cell/c patched\n")
    patch = '{"metadata": {"labels": {"a": "1"}}}'
    said = _run(monkeypatch, "patch", "cell/c", "-p", patch)[:2]
    assert said == (0, "cell/c patched (no change)\n")


@pytest.mark.parametrize("verb", ["label", "annotate"])
def test_label_and_annotate_o_name_print_kind_and_name_alone(
    monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    code, out, server = _run(monkeypatch, verb, "cell", "c", "b=2", "-o", "name")
    assert (code, out) == (0, "cell/c\n")
    assert len(server.patches) == 1
    code, out, _ = _run(monkeypatch, verb, "cells", "--all", "b=2", "-o", "name")
    assert (code, out) == (0, "cell/c\n")


def test_label_o_name_still_says_a_label_not_found_as_kubectl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # kubectl's label writes 'label "x" not found.' to its output whatever -o says.
    code, out, server = _run(monkeypatch, "label", "cell", "c", "x-", "-o", "name")
    assert (code, out) == (0, 'label "x" not found.\ncell/c\n')
    assert server.patches == []
