"""What the API server needs to know: where to listen, how to authenticate, its limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kukeon.apiserver.admission import HostAllowances, normalize_directory
from kukeon.apiserver.inflight import MAX_LONG_RUNNING, MAX_LONG_RUNNING_PER_USER
from kukeon.apiserver.listeners import TLS_HANDSHAKE_TIMEOUT
from kukeon.apiserver.writebudget import WRITE_OVERHEAD_BYTES, Rate
from kukeon.client.paths import DEFAULT_SOCKET
from kukeon.store.codec import MAX_DOCUMENT_BYTES

MAX_BODY_BYTES = 1024 * 1024

REALM_WRITE_BYTES_PER_SECOND = 16 * 1024
"""What a realm may write through the API a second, sustained. Arithmetic (docs/install.md):
etcd's periodic compactor with the embedded etcd's 1 h retention runs hourly, keeping the
last hour, so up to 2 h of history (7200 s) stand just before a run; 16 KiB/s over that is
112.5 MiB, 120.5 MiB with a full burst, ~157 MiB of backend at the ~1.3 bytes of backend
per byte written measured: under a third of a realm's default live quota
(``realmQuotaStorageBytes``, 512 MiB) and under 8 % of etcd's 2 GiB. Normal use is far
below: `kukectl apply` of 300 objects of 2 KiB is 750 KiB, within the burst."""
REALM_WRITE_BURST_BYTES = 8 * 1024 * 1024
"""What a realm may write at once before the rate applies: eight of the largest documents."""
MIN_WRITE_BURST_BYTES = MAX_DOCUMENT_BYTES + WRITE_OVERHEAD_BYTES
"""A smaller burst would charge the largest document less than it writes."""


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
    max_tcp_connections: int = Field(default=0, ge=0)
    """TCP connections held open at once, TLS handshakes included; more are closed at
    once. 0: ``listeners.DEFAULT_MAX_TCP_CONNECTIONS``, lowered to what the open-files
    limit leaves (``listeners.tcp_connection_cap``)."""
    tls_handshake_timeout: float = Field(default=TLS_HANDSHAKE_TIMEOUT, gt=0)
    """Seconds a TCP client has to finish its TLS handshake."""

    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0)
    max_requests_inflight: int = Field(default=400, gt=0)
    """Short requests answered at once; more are answered 429 (``inflight``)."""
    max_long_running_per_user: int = Field(default=MAX_LONG_RUNNING_PER_USER, gt=0)
    """Watches, followed logs and sessions one token holder may have open at once."""
    max_long_running: int = Field(default=MAX_LONG_RUNNING, gt=0)
    """Long-running requests open at once, everyone's together; token holders together stop
    a tenth short of it, one realm's editors together at a quarter of that (``inflight``)."""
    realm_write_bytes_per_second: int = Field(default=REALM_WRITE_BYTES_PER_SECOND, ge=0)
    """Bytes a realm's non-admin writes may add to etcd a second, sustained (its bucket's
    refill, ``writebudget``); 0: no bound. A realm's ``spec.quota.writeBytesPerSecond``
    overrides it."""
    realm_write_burst_bytes: int = Field(default=REALM_WRITE_BURST_BYTES, gt=0)
    """Bytes a realm's non-admin writes may add at once (its bucket's size); at least the
    largest document's cost, ``MIN_WRITE_BURST_BYTES``."""
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
    insecure_registries: tuple[str, ...] = ()
    """kukeond's ``insecureRegistries``: a non-admin's image from a registry on the node
    (loopback, link-local, ``localhost``) is refused unless it is one of these."""

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

    @model_validator(mode="after")
    def _burst_holds_a_document(self) -> ApiSettings:
        if self.realm_write_burst_bytes < MIN_WRITE_BURST_BYTES:
            raise ValueError(
                f"realm_write_burst_bytes {self.realm_write_burst_bytes} is smaller than the "
                f"cost of the largest document, {MIN_WRITE_BURST_BYTES} bytes"
            )
        return self

    @property
    def realm_write_rate(self) -> Rate:
        """Every realm's write budget unless its spec sets its own."""
        return Rate(self.realm_write_bytes_per_second, self.realm_write_burst_bytes)

    @property
    def host_allowances(self) -> HostAllowances:
        return HostAllowances(
            host_paths=self.allowed_host_paths,
            secret_dirs=self.secret_dirs,
            secret_env=frozenset(self.allowed_secret_env),
        )
