"""What the API server needs to know: where to listen, how to authenticate, its limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kukeon.apiserver.admission import HostAllowances, normalize_directory
from kukeon.client.paths import DEFAULT_SOCKET

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
    max_requests_inflight: int = Field(default=400, gt=0)
    """Short requests answered at once; more are answered 429 (``inflight``)."""
    max_long_running_per_user: int = Field(default=100, gt=0)
    """Watches, followed logs and sessions one token holder may have open at once."""
    request_timeout: float = Field(default=30.0, gt=0)
    """Seconds a non-streaming request may take before it is answered 504."""
    bookmark_interval: float = Field(default=30.0, gt=0)
    """Seconds between BOOKMARK events on an idle watch."""
    watch_start_grace: float = Field(default=0.3, ge=0)
    """How long a watch waits for the store to refuse a compacted revision (-> HTTP 410)
    before committing to a 200 stream (after which it becomes an ERROR event)."""
    shutdown_timeout: float = Field(default=5.0, gt=0)
    watch_cache: bool = True
    """Answer GET and LIST from the watch cache (``watchcache``) rather than from etcd."""
    cache_wait: float = Field(default=1.0, gt=0)
    """How long a read waits for the watch cache to catch up with etcd before reading etcd."""

    # Admission (apiserver/admission.py): what non-admins may reach on the host below the
    # privileged level. Empty by default: no bind volumes, no fromFile, no fromEnv secrets.
    allowed_host_paths: tuple[str, ...] = ()
    """Host directories a bind volume's source may be under."""
    secret_dirs: tuple[str, ...] = ()
    """Host directories a secret's fromFile may be under."""
    allowed_secret_env: tuple[str, ...] = ()
    """Names of kukeond's environment variables a secret's fromEnv may read."""

    @field_validator("allowed_host_paths", "secret_dirs", mode="before")
    @classmethod
    def _normalized_directories(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(normalize_directory(str(item)) for item in value)
        return value

    @field_validator("allowed_secret_env")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name or "=" in name or any(ch.isspace() for ch in name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @property
    def host_allowances(self) -> HostAllowances:
        return HostAllowances(
            host_paths=self.allowed_host_paths,
            secret_dirs=self.secret_dirs,
            secret_env=frozenset(self.allowed_secret_env),
        )
