"""kubectl's `get -w --output-watch-events` (it was "No such option"): each row starts with
its event, ADDED for the listed objects, and -o json|yaml|jsonpath read the watch event
``{type, object}``. And, as kubectl prints it, a table's header comes with its first row:
`--watch-only` of nothing printed a header alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from tests.unit.cli.listserver import JsonHandler, point_kukectl_at, serving
from tests.unit.cli.test_watch_relist import _OneChange, _realm


def _watched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    answers: type[JsonHandler] = _OneChange,
) -> str:
    """What ``get realms ARGS`` printed; 3 s of watch leave room for a loaded machine."""
    socket = tmp_path / f"k{len(list(tmp_path.glob('k*.sock')))}.sock"  # one per call
    point_kukectl_at(socket, tmp_path, monkeypatch)
    # a handler class of its own: _OneChange counts its watches in a class attribute,
    # which another test module's server would otherwise find already counted
    handler = type("Answers", (answers,), {"watches": 0})
    with serving(socket, handler):
        result = CliRunner().invoke(cli, ["get", "realms", "--watch-timeout", "3s", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_table_says_each_event_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _watched(tmp_path, monkeypatch, "-w", "--output-watch-events")
    rows = [line.split()[:3] for line in out.splitlines()]
    assert rows == [
        ["EVENT", "NAME", "STATE"],
        ["ADDED", "a", "Ready"],
        ["MODIFIED", "a", "Failed"],
    ]


def test_documents_and_templates_read_the_watch_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = '-o=jsonpath={.type} {.object.metadata.name}{"\\n"}'
    out = _watched(tmp_path, monkeypatch, "-w", "--output-watch-events", template)
    assert out == "ADDED a\nMODIFIED a\n"
    out = _watched(tmp_path, monkeypatch, "-w", "--output-watch-events", "-o", "json")
    events: list[dict[str, Any]] = []
    at = 0
    while at < len(out.strip()):  # one JSON document per event, one after the other
        event, at = json.JSONDecoder().raw_decode(out, at)
        events.append(event)
        at += 1
    assert [(e["type"], e["object"]["status"]["state"]) for e in events] == [
        ("ADDED", "Ready"),
        ("MODIFIED", "Failed"),
    ]
    # without the flag the objects alone, as before
    out = _watched(tmp_path, monkeypatch, "-w", "-o", "jsonpath={.metadata.name}")
    assert out == "a\na\n"


class _Quiet(JsonHandler):
    """Lists realm a; every watch ends at once with nothing."""

    def do_GET(self) -> None:  # noqa: N802 - http.server calls it by this name
        if "watch=" in self.path:
            return self.send_body(200, b"")
        items = [_realm("a", 5, "Ready")]
        self.send_json(200, {"items": items, "metadata": {"resourceVersion": "5"}})


def test_watch_only_of_no_change_prints_no_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _watched(tmp_path, monkeypatch, "--watch-only", answers=_Quiet) == ""
