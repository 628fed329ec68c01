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
    with _UnixServer(str(socket), Answer) as server:
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
