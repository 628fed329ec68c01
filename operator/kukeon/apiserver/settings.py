"""What the API server needs to know: where to listen, how to authenticate, its limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SOCKET = Path("/run/kukeon/kukeond.sock")
MAX_BODY_BYTES = 1024 * 1024


class ApiSettings(BaseModel):
    """Listener, auth and limits of one API server.

    The unix socket is always served; the TCP listener is optional and, because it is
    reachable from other hosts, refuses to start without a TLS certificate/key and a
    tokens file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    socket_path: Path | None = DEFAULT_SOCKET
    socket_mode: int = 0o660
    socket_group: str | None = "kukeon"
    """Group owning the socket; created with groupadd when missing. None leaves it as is."""

    tcp_address: str | None = None
    """``host:port`` of the optional TCP (TLS) listener."""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tokens_file: Path | None = None

    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0)
    request_timeout: float = Field(default=30.0, gt=0)
    """Seconds a non-streaming request may take before it is answered 504."""
    bookmark_interval: float = Field(default=30.0, gt=0)
    """Seconds between BOOKMARK events on an idle watch."""
    watch_start_grace: float = Field(default=0.3, ge=0)
    """How long a watch waits for the store to refuse a compacted revision (-> HTTP 410)
    before committing to a 200 stream (after which it becomes an ERROR event)."""
    shutdown_timeout: float = Field(default=5.0, gt=0)
