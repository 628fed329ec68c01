"""How many bytes a realm may write through the API per second: a token bucket per realm,
answered 429 past it.

A realm's quota (``spec.quota``, ``kukeon.store.realmquota``) bounds its *live* data, not
etcd's *history*: every update keeps the version it replaces until etcd compacts it (the
embedded etcd compacts hourly what is older than an hour, ``store.embedded``), and when
history and data together reach etcd's backend quota (2 GiB) etcd raises ``NOSPACE`` and
refuses every write of every realm until kukeond's space keeper frees it. One editor
updating a 250 KB document in a loop fills a 128 MiB backend in 12-19 s
(``bench/write_flood.py``), so 2 GiB in minutes. As Kubernetes' API Priority and Fairness
gives each tenant its share of the server, each realm here has a bucket of ``burst_bytes``
that refills at ``bytes_per_second``: a write costs its document's bytes plus
``WRITE_OVERHEAD_BYTES`` (its key and etcd's record of the revision: a delete's tombstone
costs that alone), and one that does not fit what the bucket holds is answered ``429
TooManyRequests`` with the ``Retry-After`` that would let it fit, taking nothing. The
sustained rate times etcd's window is what a realm can leave in the history; the defaults
keep that a small share of the backend (``ApiSettings``, docs/install.md).

A write of a CellSet is charged as well for the cells kukeond will write because of it
(``set_cells_bytes``): a patch of ``replicas`` of a few bytes makes kukeond create that
many cells and write each of them over its life, so an editor scaling a set up and down in
a loop would otherwise write through kukeond what the bucket refuses them directly.

Only token holders below admin are charged (editors: viewers and nodes write nothing in
the registry); admins, the local admin on the unix socket included, pass uncharged, as
they pass the in-flight bound. Each API server keeps its own buckets: on a fleet a realm's
editors can write once per kukeond they reach.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kukeon.api import AnyResource, CellSet, Realm
from kukeon.apiserver.status import ApiError

WRITE_OVERHEAD_BYTES = 512
"""What a write costs besides its document: its etcd key (prefix, kind and names) and
etcd's record of the revision; the whole cost of a delete (its tombstone). It is also what
bounds the count of small writes: at the default rate, 32 writes of nothing a second."""

CELL_LIFE_WRITES = 3
"""The writes of a set's cell document kukeond makes over the cell's life (its create, its
status once Ready, its deletion mark), each its whole document, besides its tombstone."""

CELL_STATUS_BYTES = 256
"""What a cell's status adds to its document per container (a container's state, ids,
times) and once more for the cell's own (state, network, node): measured ~700 bytes for a
one-container cell Ready on a bridge."""

MAX_RETRY_AFTER_SECONDS = 3600
"""The longest Retry-After answered (a realm whose rate an admin set very low)."""

_PRUNE_EVERY = 1024
"""Buckets are forgotten once full again (a full bucket is one never used), looked for
every this many charges, so the table holds the realms that wrote lately, not every realm
ever named."""


@dataclass(frozen=True)
class Rate:
    """A bucket's refill (bytes a second; 0: no bound) and size (bytes)."""

    bytes_per_second: int
    burst_bytes: int
    setting: str = "realmWriteBytesPerSecond"
    """What sets the refill, named by a refusal (kukeond's setting or the realm's field)."""


@dataclass
class _Bucket:
    tokens: float
    updated: float
    rate: Rate


class WriteBudget:
    """Each realm's bucket and the charge every charged write passes first."""

    def __init__(self, *, default: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.default = default
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._charges = 0

    def charge(self, realm: str, cost: int, rate: Rate | None = None) -> None:
        """Take ``cost`` bytes from ``realm``'s bucket (at ``rate``, else the default), or
        raise ``ApiError`` 429 with the seconds until they are there, taking nothing."""
        rate = rate or self.default
        if rate.bytes_per_second <= 0:
            return
        now = self._clock()
        # A write bigger than the bucket waits for a full one rather than never passing.
        cost = min(max(cost, 0), rate.burst_bytes)
        bucket = self._refilled(realm, rate, now)
        if bucket.tokens < cost:
            wait = (cost - bucket.tokens) / rate.bytes_per_second
            raise _over_budget(realm, cost, rate, wait)
        bucket.tokens -= cost
        self._charges += 1
        if self._charges % _PRUNE_EVERY == 0:
            self._prune(now)

    def refund(self, realm: str, cost: int, rate: Rate | None = None) -> None:
        """Give back what a write that stored nothing was charged (a conflict, a 404)."""
        rate = rate or self.default
        bucket = self._buckets.get(realm)
        if bucket is not None:
            refunded = bucket.tokens + min(max(cost, 0), rate.burst_bytes)
            bucket.tokens = min(refunded, rate.burst_bytes)

    def available(self, realm: str, rate: Rate | None = None) -> float:
        """The bytes ``realm`` may write now (for tests and the docs' arithmetic)."""
        rate = rate or self.default
        return self._refilled(realm, rate, self._clock()).tokens

    def _refilled(self, realm: str, rate: Rate, now: float) -> _Bucket:
        bucket = self._buckets.get(realm)
        if bucket is None:
            bucket = self._buckets[realm] = _Bucket(float(rate.burst_bytes), now, rate)
            return bucket
        bucket.rate = rate
        elapsed = max(now - bucket.updated, 0.0)  # a clock that went back refills nothing
        bucket.tokens = min(bucket.tokens + elapsed * rate.bytes_per_second, rate.burst_bytes)
        bucket.updated = now
        return bucket

    def _prune(self, now: float) -> None:
        full = [
            realm
            for realm, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * bucket.rate.bytes_per_second
            >= bucket.rate.burst_bytes
        ]
        for realm in full:
            del self._buckets[realm]

    def __len__(self) -> int:
        return len(self._buckets)


def set_cells_bytes(res: AnyResource, current: AnyResource | None) -> int:
    """The bytes kukeond will write in etcd for the cells this write of a set makes: every
    replica when the set is new or its template changes (a roll replaces each cell), else
    the replicas added. Scaling down makes none (their deletion was charged when they were
    made); any other kind makes none."""
    if not isinstance(res, CellSet) or res.spec.template.spec is None:
        return 0
    if not isinstance(current, CellSet) or current.template_hash() != res.template_hash():
        made = res.spec.replicas
    else:
        made = max(res.spec.replicas - current.spec.replicas, 0)
    if made == 0:
        return 0
    hash_ = res.template_hash()
    name = f"{res.metadata.name}-{hash_}-xxxxx"  # the set controller's names
    document = json.dumps(res.cell_document(name, hash_), separators=(",", ":"))
    containers = len(res.spec.template.spec.containers)
    cell = len(document.encode()) + CELL_STATUS_BYTES * (containers + 1) + WRITE_OVERHEAD_BYTES
    return made * (CELL_LIFE_WRITES * cell + WRITE_OVERHEAD_BYTES)


def _over_budget(realm: str, cost: int, rate: Rate, wait: float) -> ApiError:
    seconds = min(max(math.ceil(wait), 1), MAX_RETRY_AFTER_SECONDS)
    return ApiError(
        429,
        f"realm {realm!r} has written more than its budget allows: this write of {cost} "
        f"bytes fits in {seconds}s ({rate.setting} {rate.bytes_per_second}, "
        f"realmWriteBurstBytes {rate.burst_bytes}; etcd keeps every version until it "
        f"compacts its history); retry in {seconds}s",
        reason="TooManyRequests",
        headers={"Retry-After": str(seconds)},
    )


RATE_REFRESH_SECONDS = 10.0
"""How long a realm's own rate (``spec.quota.writeBytesPerSecond``) is used before the
realm is read again: an admin's change takes effect within this."""

_RATES_KEPT = 4096


class RealmRates:
    """Each realm's write rate: its spec's, else the default; read at most every
    ``RATE_REFRESH_SECONDS`` per realm rather than once per write."""

    def __init__(
        self,
        *,
        default: Rate,
        read_realm: Callable[[str], Awaitable[AnyResource | None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = default
        self._read_realm = read_realm
        self._clock = clock
        self._rates: dict[str, tuple[float, Rate]] = {}

    async def of(self, realm: str) -> Rate:
        now = self._clock()
        cached = self._rates.get(realm)
        if cached is not None and now - cached[0] < RATE_REFRESH_SECONDS:
            return cached[1]
        stored = await self._read_realm(realm)
        quota = stored.spec.quota if isinstance(stored, Realm) else None
        own = quota.write_bytes_per_second if quota is not None else None
        rate = self.default
        if own is not None:
            rate = Rate(own, self.default.burst_bytes, "the realm's spec.quota.writeBytesPerSecond")
        if len(self._rates) >= _RATES_KEPT:
            self._rates.clear()  # realms come back one read each
        self._rates[realm] = (now, rate)
        return rate
