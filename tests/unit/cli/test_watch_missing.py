"""`kukectl get KIND NAME -w` of an object that is not there ends as kubectl's does: the
server's NotFound and exit 1; it printed a header and waited, silent, until interrupted."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _NoCells(http.server.BaseHTTPRequestHandler):
    """Lists no cells; a GET of one cell is a NotFound Status."""

    def do_GET(self) -> None:
        body: dict[str, Any]
        if self.path.split("?")[0].endswith("/cells"):
            code, body = 200, {"items": [], "metadata": {"resourceVersion": "7"}}
        else:
            message = "Cell 'default/default/default/web' not found"
            body = {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
            code, body = 404, {**body, "message": message}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_watching_a_missing_object_is_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("KUKEON_TOKEN", "KUKEON_CA", "KUKEON_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    socket = tmp_path / "k.sock"
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{socket}")
    with _UnixServer(str(socket), _NoCells) as server:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            result = CliRunner().invoke(cli, ["get", "cell", "web", "-w", "--watch-timeout", "5s"])
        finally:
            server.shutdown()
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "error: Cell 'default/default/default/web' not found\n"
