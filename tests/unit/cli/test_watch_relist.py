"""`kukectl get -w` across a relist: its rows end as the server's list.

After a 410 (compacted, or a history rewound by an etcd restore) kukectl lists again. An
object the new list no longer has was printed with its last known row (``Ready``), which
read as an object still there; and an object back at the revision it had before with
other content (a rewound history numbers its new writes from an older revision) was not
printed at all, leaving its old row as the last word on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from tests.unit.cli.listserver import JsonHandler, point_kukectl_at, serving


def _realm(name: str, revision: int, state: str) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Realm",
        "metadata": {"name": name, "resourceVersion": str(revision)},
        "status": {"state": state},
    }


class _Rewound(JsonHandler):
    """The first list has realms a and b; the first watch is a 410; the list after it has
    a alone, at the same revision with another state; later watches end at once."""

    lists = 0
    watches = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server calls it by this name
        cls = type(self)
        if "watch=" in self.path:
            cls.watches += 1
            if cls.watches == 1:
                message = "the server's history was rewound (etcd restored); list again"
                body = {"kind": "Status", "status": "Failure", "reason": "Expired"}
                return self.send_json(410, {**body, "code": 410, "message": message})
            return self.send_json(200, None)
        cls.lists += 1
        if cls.lists == 1:
            items = [_realm("a", 5, "Ready"), _realm("b", 6, "Ready")]
        else:
            items = [_realm("a", 5, "Failed")]
        self.send_json(200, {"items": items, "metadata": {"resourceVersion": str(5 + cls.lists)}})


def test_after_a_relist_the_rows_match_the_servers_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = tmp_path / "k.sock"
    point_kukectl_at(socket, tmp_path, monkeypatch)
    with serving(socket, _Rewound):
        args = ["get", "realms", "-w", "--watch-timeout", "1s", "--no-headers"]
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    assert rows == [["a", "Ready"], ["b", "Ready"], ["a", "Failed"], ["b", "Deleted"]]
    assert "rewound" in result.stderr


class _OneChange(JsonHandler):
    """Lists realm a; the first watch brings its change, later ones end at once."""

    watches = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server calls it by this name
        cls = type(self)
        if "watch=" not in self.path:
            items = [_realm("a", 5, "Ready")]
            return self.send_json(200, {"items": items, "metadata": {"resourceVersion": "5"}})
        cls.watches += 1
        change = {"type": "MODIFIED", "object": _realm("a", 6, "Failed")}
        self.send_body(200, (json.dumps(change) + "\n").encode() if cls.watches == 1 else b"")


def test_watch_only_prints_the_changes_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubectl's `--watch-only` was "No such option"; it is -w without the current rows."""
    socket = tmp_path / "k.sock"
    point_kukectl_at(socket, tmp_path, monkeypatch)
    with serving(socket, _OneChange):
        args = ["get", "realms", "--watch-only", "--watch-timeout", "1s"]
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    assert rows == [["NAME", "STATE"], ["a", "Failed"]]
