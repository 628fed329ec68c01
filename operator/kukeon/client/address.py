"""Where the API is: ``unix:///path/to/kukeond.sock`` or ``https://host:port``.

Plain ``http://`` is refused: the server never offers it on TCP.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from kukeon.client.paths import DEFAULT_SOCKET

DEFAULT_SERVER = f"unix://{DEFAULT_SOCKET}"


class ServerAddressError(ValueError):
    """The server address is not ``unix:///path`` or ``https://host:port``."""


class ServerAddress(NamedTuple):
    scheme: str  # "unix" or "https"
    location: str  # socket path, or host:port

    @property
    def base_url(self) -> str:
        return "http://kukeond" if self.scheme == "unix" else f"https://{self.location}"

    def __str__(self) -> str:
        return f"unix://{self.location}" if self.scheme == "unix" else self.base_url


def parse_server(server: str) -> ServerAddress:
    """``unix:///path``, ``/path`` or ``https://host:port`` -> ServerAddress."""
    text = server.strip()
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise ServerAddressError(f"unix socket address must be absolute: {server!r}")
        return ServerAddress("unix", path)
    if text.startswith("/"):
        return ServerAddress("unix", text)
    if text.startswith("https://"):
        location = text[len("https://") :].rstrip("/")
        if not location or "/" in location:
            raise ServerAddressError(f"expected https://host:port, got {server!r}")
        try:  # 'https://[::1' or 'https://h:x' was a DNS failure or a traceback later
            parts = urlsplit(f"https://{location}")
            parts.port  # noqa: B018 - read for its ValueError
        except ValueError as exc:
            raise ServerAddressError(f"expected https://host:port, got {server!r}: {exc}") from None
        if not parts.hostname:
            raise ServerAddressError(f"expected https://host:port, got {server!r}: no host")
        return ServerAddress("https", location)
    if text.startswith("http://"):
        raise ServerAddressError(
            f"{server!r}: the API is served over TLS only on TCP; use https://"
        )
    raise ServerAddressError(
        f"server {server!r} must be unix:///path/to/kukeond.sock or https://host:port"
    )
