"""A stand-in for kukeond's API on a unix socket, for the health probes' tests."""

from __future__ import annotations

import socket
import threading
from pathlib import Path


class HealthzServer:
    """An HTTP/1.0 server on a unix socket answering every request with one status."""

    def __init__(self, path: Path, status: int) -> None:
        self.status = status
        self.requests: list[bytes] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                self.requests.append(connection.recv(4096))
                reason = "OK" if self.status == 200 else "Service Unavailable"
                connection.sendall(
                    f"HTTP/1.1 {self.status} {reason}\r\nContent-Length: 2\r\n\r\nok".encode()
                )

    def close(self) -> None:
        self.listener.close()
