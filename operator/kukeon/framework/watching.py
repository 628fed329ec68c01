"""One list + watch per kind, feeding every version it sees into the object queues.

The registry's watch already resumes by itself after a dropped stream (etcd restarted,
a member lost) as long as etcd comes back within its retry budget. This loop handles
what is left: ``Gone`` (the history we needed was compacted) relists and replaces the
cached set, treating objects missing from the list as deleted (and, when the list is
older than what was seen, etcd went back to an older snapshot's revision: ``HistoryRewound``
or a relist after a restart, the list replaces every held version whatever its revision);
``Unavailable`` (etcd
was away longer than the budget) waits with backoff and resumes the watch from the last
revision seen (sooner when the etcd client's health sees etcd back), so no change is lost
either way. Every restart is counted in
``kukeon_watch_restarts_total{kind,reason}``.

A document the registry cannot decode never reaches this loop (the registry skips it and
counts it). Anything else unexpected ends ``run``: the operator's supervisor logs it and
starts it again, and the next run relists rather than trusting the last revision.
"""

from __future__ import annotations

import asyncio
import logging

from kukeon.api import Kind, key_of
from kukeon.retrying import Backoff
from kukeon.store import EtcdAway, Gone, HistoryRewound, StoreError, Unavailable
from kukeon.store.health import StoreHealth, health_of, pause

from .metrics import FrameworkMetrics
from .protocols import Store
from .queueing import ObjectQueues
from .settings import Settings

log = logging.getLogger(__name__)


class KindWatcher:
    """Keeps ``queues`` up to date with every object of one kind."""

    def __init__(
        self,
        *,
        kind: Kind,
        store: Store,
        queues: ObjectQueues,
        settings: Settings,
        metrics: FrameworkMetrics,
        health: StoreHealth | None = None,
    ) -> None:
        """``health``: the etcd client's (``store``'s own when omitted): a watch backed off
        during an outage (up to ``watch_retry_max``) resumes as soon as etcd answers."""
        self.kind = kind
        self._store = store
        self._health = health if health is not None else health_of(store)
        self._queues = queues
        self._settings = settings
        self._metrics = metrics
        self.listed = asyncio.Event()
        """Set once the first list has been handed to the queues."""
        self.revision: int | None = None

    def _restarted(self, reason: str) -> None:
        self._metrics.watch_restarts_total.labels(self.kind.value, reason).inc()

    async def _relist(self) -> int:
        listing = await self._store.list(self.kind)
        seen = self._queues.seen_revision(self.kind)
        if listing.resource_version < seen:
            # A list is linearizable: older than a version already seen, etcd went back
            # (restored from an older snapshot) and what was held from after it is no more.
            log.info(
                "%s: etcd is at revision %d, behind revision %d already seen (restored from "
                "an older snapshot?): the list replaces everything held",
                self.kind.value,
                listing.resource_version,
                seen,
                extra={"kind": self.kind.value},
            )
            self._queues.rewound(self.kind, listing.resource_version)
        present = set()
        for obj in listing.items:
            present.add(key_of(obj))
            self._queues.offer(obj)
        for key in self._queues.known(self.kind):
            if key not in present:
                self._queues.forget(self.kind, key, revision=listing.resource_version)
        self._queues.mark_listed(self.kind)
        self.listed.set()
        log.info(
            "listed %d %s object(s) at revision %d",
            len(listing.items),
            self.kind.value,
            listing.resource_version,
            extra={"kind": self.kind.value},
        )
        return listing.resource_version

    async def run(self) -> None:
        backoff = Backoff(self._settings.watch_retry_initial, self._settings.watch_retry_max)
        while True:
            try:
                if self.revision is None:
                    self.revision = await self._relist()
                async for event in self._store.watch(self.kind, resource_version=self.revision):
                    if event.type == "DELETED":
                        self._queues.forget(
                            self.kind, key_of(event.object), revision=event.revision
                        )
                    else:
                        self._queues.offer(event.object)
                    self.revision = event.revision
                    backoff.reset()
                reason = "ended"
            except Gone as error:
                log.warning("watch %s: %s; relisting", self.kind.value, error)
                self.revision = None
                self._restarted("rewound" if isinstance(error, HistoryRewound) else "gone")
                continue
            except Unavailable as error:
                reason = "unavailable"
                # etcd known away is said once by the store, not again by each kind's watch.
                level = logging.DEBUG if isinstance(error, EtcdAway) else logging.WARNING
                log.log(
                    level,
                    "watch %s: %s; retrying in %.1fs",
                    self.kind.value,
                    error,
                    backoff.current,
                )
            except StoreError as error:
                reason = "error"
                log.error(
                    "watch %s failed: %s; retrying in %.1fs",
                    self.kind.value,
                    error,
                    backoff.current,
                )
            except Exception:
                # A bug, not etcd: start from a fresh list when the supervisor restarts us.
                self.revision = None
                raise
            self._restarted(reason)
            await pause(self._health, backoff.next())
