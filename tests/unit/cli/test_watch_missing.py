"""`kukectl get KIND NAME -w` of an object that is not there ends as kubectl's does: the
server's NotFound and exit 1; it printed a header and waited, silent, until interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from tests.unit.cli.listserver import JsonHandler, point_kukectl_at, serving


class _NoCells(JsonHandler):
    """Lists no cells; a GET of one cell is a NotFound Status."""

    def do_GET(self) -> None:  # noqa: N802 - http.server calls it by this name
        body: dict[str, Any]
        if self.path.split("?")[0].endswith("/cells"):
            code, body = 200, {"items": [], "metadata": {"resourceVersion": "7"}}
        else:
            message = "Cell 'default/default/default/web' not found"
            body = {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
            code, body = 404, {**body, "message": message}
        self.send_json(code, body)


def test_watching_a_missing_object_is_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = tmp_path / "k.sock"
    point_kukectl_at(socket, tmp_path, monkeypatch)
    with serving(socket, _NoCells):
        result = CliRunner().invoke(cli, ["get", "cell", "web", "-w", "--watch-timeout", "5s"])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "error: Cell 'default/default/default/web' not found\n"
