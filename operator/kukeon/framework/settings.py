"""Every tunable of an ``Operator`` in one frozen record.

Production keeps the defaults (0.5 s backoff doubling up to 5 minutes, a 15 s lease);
tests pass short values so a whole scenario of retries or a leader takeover runs in
seconds. Nothing in the framework reads a constant that is not here.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


def _hostname() -> str:
    return socket.gethostname()


@dataclass(frozen=True, kw_only=True)
class Settings:
    node_name: str = field(default_factory=_hostname)
    """Who this operator is: written into heartbeats and leader keys."""
    host_identity: str = ""
    """Where this operator runs (the same across its restarts there), written into its
    heartbeat so that another process taking the same node name can be told apart."""

    max_workers: int = 16
    """Handlers running at the same time over all objects and kinds."""

    max_workers_per_realm: int | None = None
    """Of those, at most this many for the objects of one realm (a Node's are no realm's),
    so that one realm's handlers that take long (a slow pass; a stop's grace, up to an
    hour, is waited out by none: ``controllers.stopgraces``) leave the other realms
    workers; None: all but a quarter of ``max_workers`` (12 of 16), at least 1."""

    backoff_initial: float = 0.5
    backoff_factor: float = 2.0
    backoff_max: float = 300.0
    backoff_jitter: float = 0.1
    """Each retry delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""

    resync_interval: float | None = 300.0
    """Every object is handed to its reconcile handler again this often (None: never)."""

    queue_idle_timeout: float = 5.0
    """A per-object worker with nothing to do for this long is dropped."""

    shutdown_grace: float = 10.0
    """On stop, running handlers get this long to finish before they are cancelled."""

    long_pass_seconds: float | None = 60.0
    """A handler pass still running this long after its start is logged as a WARNING with
    where it waits, again at each doubling of its age (``longpasses``; None: never)."""

    watch_retry_initial: float = 0.5
    watch_retry_max: float = 30.0
    """Backoff of a kind's watcher after the store gave up reaching etcd."""

    status_conflict_retries: int = 50
    """patch_status re-reads and re-applies at most this often when it keeps losing the CAS."""

    lease_ttl: int = 15
    """Seconds (etcd leases are whole seconds, at least 2 with etcd's default timing)."""

    lease_refresh_interval: float | None = None
    """How often a lease is kept alive; None means a third of the TTL."""

    leader_poll_interval: float | None = None
    """The pause before an election tries again after a failed campaign step or a broken
    watch of its key (followers and leaders watch the key, they do not poll it); None:
    min(1 s, TTL / 4)."""

    @property
    def realm_workers(self) -> int:
        """``max_workers_per_realm``, or its default: all but a quarter, at least 1."""
        if self.max_workers_per_realm is not None:
            return min(self.max_workers_per_realm, self.max_workers)
        return max(1, self.max_workers - max(1, self.max_workers // 4))

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ValueError(f"Settings.max_workers must be >= 1, got {self.max_workers}")
        if self.max_workers_per_realm is not None and self.max_workers_per_realm < 1:
            raise ValueError(
                f"Settings.max_workers_per_realm must be >= 1, got {self.max_workers_per_realm}"
            )
        if self.backoff_initial <= 0 or self.backoff_factor < 1:
            raise ValueError("Settings.backoff_initial must be > 0 and backoff_factor >= 1")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("Settings.backoff_max must be >= backoff_initial")
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError(
                f"Settings.backoff_jitter must be in [0, 1), got {self.backoff_jitter}"
            )
        if self.lease_ttl < 1:
            raise ValueError(f"Settings.lease_ttl must be >= 1 second, got {self.lease_ttl}")
        if self.long_pass_seconds is not None and self.long_pass_seconds <= 0:
            raise ValueError(
                f"Settings.long_pass_seconds must be > 0 or None, got {self.long_pass_seconds}"
            )
        if not self.node_name:
            raise ValueError("Settings.node_name must not be empty")

    @property
    def refresh_interval(self) -> float:
        if self.lease_refresh_interval is not None:
            return self.lease_refresh_interval
        return self.lease_ttl / 3

    @property
    def poll_interval(self) -> float:
        if self.leader_poll_interval is not None:
            return self.leader_poll_interval
        return min(1.0, self.lease_ttl / 4)
