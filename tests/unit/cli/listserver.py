"""A fake API server on a unix socket that answers every GET with one list, for tests that
run kukectl in a fresh process (what it loads is the point, so no real server); and one
that answers every request with the same bytes (``answering``)."""

from __future__ import annotations

import contextlib
import http.server
import json
import socketserver
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client closing first is not the test's business (and would print on stderr)


@contextlib.contextmanager
def answering(
    socket: Path,
    body: bytes,
    *,
    methods: Sequence[str] = ("GET", "POST", "PUT", "PATCH", "DELETE"),
    seen: list[str] | None = None,
) -> Iterator[Path]:
    """Answer every request of ``methods`` on ``socket`` with 200 and ``body`` while the
    block runs; ``seen`` gets each request's path."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            if seen is not None:
                seen.append(self.path)
            if length := int(self.headers.get("Content-Length") or 0):
                self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "local"

        def log_message(self, format: str, *args: object) -> None:
            pass

    for method in methods:
        setattr(Answer, f"do_{method}", Answer.answer)
    with serving(socket, Answer):
        yield socket


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """A handler that answers JSON (``send_json``) and logs nothing."""

    def send_json(self, code: int, body: object) -> None:
        self.send_body(code, b"" if body is None else json.dumps(body).encode())

    def send_body(self, code: int, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def point_kukectl_at(socket: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """Make an in-process kukectl talk to ``socket`` only: no token, CA or context of the
    environment, and a config file of the test's."""
    for name in ("KUKEON_TOKEN", "KUKEON_CA", "KUKEON_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{socket}")


@contextlib.contextmanager
def serving(socket: Path, handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[Path]:
    """Serve requests on ``socket`` with ``handler`` while the block runs."""
    with _UnixServer(str(socket), handler) as server:
        # shutdown() waits for serve_forever's next poll (every 0.5 s by default).
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            yield socket
        finally:
            server.shutdown()


@contextlib.contextmanager
def list_server(
    socket: Path, items: Sequence[Mapping[str, Any]] = (), *, seen: list[str] | None = None
) -> Iterator[Path]:
    """Serve ``items`` as the answer to every GET on ``socket`` while the block runs;
    ``seen`` gets each GET's path."""
    body = json.dumps({"items": list(items), "metadata": {"resourceVersion": "1"}}).encode()
    with answering(socket, body, methods=("GET",), seen=seen):
        yield socket
