"""`kukectl logs web | head`: the reader leaving is a quiet end (141, as kubectl killed by
SIGPIPE), not "error: unexpected failure: BrokenPipeError" on stderr."""

from __future__ import annotations

import contextlib
import http.server
import os
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

from kukeon.cli.runner import EXIT_READER_GONE
from tests.unit.cli.listserver import list_server
from tests.unit.cli.test_get_json_list import cell_document

_LINES = b"".join(b"line %d of a container's output\n" % n for n in range(50_000))


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Log(http.server.BaseHTTPRequestHandler):
    """Every GET answered with megabytes of log lines."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(_LINES)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client went away
            self.wfile.write(_LINES)

    def address_string(self) -> str:
        return "local"

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_reader_that_leaves_ends_logs_quietly(tmp_path: Path) -> None:
    socket = tmp_path / "api.sock"
    with _UnixServer(str(socket), _Log) as server:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            env = {**os.environ, "KUKEON_SERVER": f"unix://{socket}", "HOME": str(tmp_path)}
            read, write = os.pipe()
            process = subprocess.Popen(
                [sys.executable, "-m", "kukeon.cli.main", "logs", "web"],
                stdout=write,
                stderr=subprocess.PIPE,
                env=env,
            )
            os.close(write)
            with os.fdopen(read, "rb") as reader:  # `head -1`: one read, then gone
                assert reader.read(100).startswith(b"line 0 ")
            _, stderr = process.communicate(timeout=60)
        finally:
            server.shutdown()
    assert stderr == b""
    assert process.returncode == EXIT_READER_GONE


def _with_gone_reader(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Exit code and stderr of kukectl ARGS writing to a pipe whose reader has left."""
    read, write = os.pipe()
    os.close(read)
    process = subprocess.Popen(
        [sys.executable, "-m", "kukeon.cli.main", *args],
        stdout=write,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(write)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def test_any_command_whose_reader_left_ends_quietly(tmp_path: Path) -> None:
    """`kukectl delete cells --all | head -1` said 'error: unexpected failure:
    BrokenPipeError' (exit 1): every command's output written while it talks to the server.
    (Click itself ends one that writes outside a request quietly, with 1.)"""
    socket = tmp_path / "api.sock"
    env = {**os.environ, "KUKEON_SERVER": f"unix://{socket}", "HOME": str(tmp_path)}
    with list_server(socket, [cell_document("web")]):
        assert _with_gone_reader(["get", "cells", "-o", "name"], env) == (EXIT_READER_GONE, b"")
        assert _with_gone_reader(["get", "cells", "-A"], env) == (EXIT_READER_GONE, b"")
