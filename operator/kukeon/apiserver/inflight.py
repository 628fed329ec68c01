"""How many requests the API server works on at once: a bound, answered 429 past it.

Without one, a client (a buggy script, a hostile token holder) could open requests faster
than they finish, and every one holds memory and a task; a watch asked to resume from an
old revision even holds an etcd watch stream of its own (``watchhub``'s private feed).
As kube-apiserver's ``--max-requests-inflight``: at most ``max_requests_inflight`` short
requests at once, a quarter of them for one token holder and a quarter for the editors of
one realm together (a rough fairness by user and by tenant, where kube-apiserver has its
priority and fairness queues' per-flow shares), beyond which a request is answered
``429 Too Many Requests`` with ``Retry-After: 1`` at once (kubectl and kukectl's clients
wait and retry). Long-running
requests (watches, followed logs, exec, attach and port-forward sessions, copies, image
imports and pulls) are not short: they have their own budget, as kube-apiserver's, bounded
per user (``max_long_running_per_user``) and all together (``max_long_running``: each holds
a connection, a task, buffers, some a process or an etcd watch stream, so without it many
token holders, or one local client, could open them until kukeond ran out of memory or
descriptors). The short bound and the per-user bounds apply to token holders only: the
local admin on the unix socket (root on the host anyway) and other nodes forwarding their
users' requests (bound on the node they asked) pass, as kube-apiserver's system:masters,
so that token holders filling them cannot lock out the one who can mend things. The
whole long-running bound counts everyone, and token holders together stop a tenth short
of it (``RESERVED_SHARE``): that tenth is the local admin's and the nodes'. The editors of
one realm together hold at most a quarter of what token holders may (``REALM_SHARE``), as
for short requests: without it, a realm's editors with a few tokens each took every
long-running place, and every other realm's watches were answered 429.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator

from kukeon.apiserver.status import ApiError

RETRY_AFTER_SECONDS = 1
USER_SHARE = 4
"""One token holder may take at most 1/USER_SHARE of the short requests' bound, so one
client sending slow bodies cannot hold every place and lock out the others."""
REALM_SHARE = 4
"""The editors of one realm (tokens naming the same realms) together take at most
1/REALM_SHARE of the short requests' bound: a realm's users, however many tokens they hold,
cannot take the server from every other realm. Viewers and admins, who see every realm,
are bound per user only."""
MAX_LONG_RUNNING = 1000
"""Long-running requests open at once, everyone's together (``apiMaxLongRunning``)."""
MAX_LONG_RUNNING_PER_USER = 100
"""Long-running requests one token holder may have open (``apiMaxLongRunningPerUser``)."""
RESERVED_SHARE = 10
"""Token holders together take at most all but 1/RESERVED_SHARE of the long-running bound
(at least one place kept): the rest is for the local admin and forwarding nodes."""


class InflightLimits:
    """The counts of requests in flight, and the check each request passes first."""

    def __init__(
        self,
        *,
        max_requests: int,
        max_long_running_per_user: int = MAX_LONG_RUNNING_PER_USER,
        max_long_running: int = MAX_LONG_RUNNING,
    ) -> None:
        self.max_requests = max_requests
        self.max_requests_per_user = max(1, max_requests // USER_SHARE)
        self.max_requests_per_realm = max(1, max_requests // REALM_SHARE)
        self.max_long_running_per_user = max_long_running_per_user
        self.max_long_running = max_long_running
        self.max_long_running_shared = max(
            1, max_long_running - max(1, max_long_running // RESERVED_SHARE)
        )
        """What token holders together may hold of ``max_long_running``."""
        self.max_long_running_per_realm = max(1, self.max_long_running_shared // REALM_SHARE)
        """What one realm's editors together may hold of ``max_long_running``."""
        self.requests = 0
        self.long_running_open = 0
        """Long-running requests open, everyone's."""
        self.short: collections.Counter[str] = collections.Counter()
        self.short_by_realm: collections.Counter[str] = collections.Counter()
        self.long_running: collections.Counter[str] = collections.Counter()
        self.long_running_by_realm: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def admitted(
        self, *, user: str | None, long_running: bool, realms: str | None = None
    ) -> Iterator[None]:
        """Count one request while it runs; ``ApiError`` 429 when it is one too many.
        ``user`` None: not bound per user (the local admin, a forwarding node); for a
        long-running request, bound by the whole of ``max_long_running``. ``realms``: the
        realms an editor's token names (`realm_flow`), whose short requests share one
        bound whatever the user; None: not bound per realm."""
        if long_running:
            with self._long_running(user, realms):
                yield
            return
        if self.requests >= self.max_requests:
            raise _too_many(
                f"the server is answering {self.requests} requests, the most it takes at once "
                f"(apiMaxRequestsInflight {self.max_requests}); retry in {RETRY_AFTER_SECONDS}s"
            )
        if user is not None and self.short[user] >= self.max_requests_per_user:
            raise _too_many(
                f"user {user!r} already has {self.short[user]} requests being answered, the "
                f"most one user may (a quarter of apiMaxRequestsInflight {self.max_requests}); "
                f"retry in {RETRY_AFTER_SECONDS}s"
            )
        if realms is not None and self.short_by_realm[realms] >= self.max_requests_per_realm:
            raise _too_many(
                f"the editors of realm {realms} already have {self.short_by_realm[realms]} "
                "requests being answered, the most one realm's users may together (a quarter "
                f"of apiMaxRequestsInflight {self.max_requests}); retry in "
                f"{RETRY_AFTER_SECONDS}s"
            )
        self.requests += 1
        try:
            with _counted_for(self.short, user, self.short_by_realm, realms):
                yield
        finally:
            self.requests -= 1

    @contextlib.contextmanager
    def _long_running(self, user: str | None, realms: str | None) -> Iterator[None]:
        bound = self.max_long_running if user is None else self.max_long_running_shared
        if self.long_running_open >= bound:
            whose = "" if user is None else f", of which token holders take {bound}"
            raise _too_many(
                f"the server has {self.long_running_open} watches, followed logs, sessions "
                f"and image transfers open, the most it keeps (apiMaxLongRunning "
                f"{self.max_long_running}{whose}); retry in {RETRY_AFTER_SECONDS}s"
            )
        if user is not None and self.long_running[user] >= self.max_long_running_per_user:
            raise _too_many(
                f"user {user!r} already has {self.long_running[user]} watches, followed "
                f"logs or sessions open, the most this server allows a user "
                f"(apiMaxLongRunningPerUser {self.max_long_running_per_user}); close some"
            )
        held = self.long_running_by_realm[realms] if realms is not None else 0
        if realms is not None and held >= self.max_long_running_per_realm:
            raise _too_many(
                f"the editors of realm {realms} already have {held} watches, followed logs or "
                "sessions open, the most one realm's users may together (a quarter of the "
                f"{self.max_long_running_shared} token holders may, apiMaxLongRunning "
                f"{self.max_long_running}); close some"
            )
        self.long_running_open += 1
        try:
            with _counted_for(self.long_running, user, self.long_running_by_realm, realms):
                yield
        finally:
            self.long_running_open -= 1


def realm_flow(realms: frozenset[str]) -> str:
    """The key an editor's short requests are counted under: the realms its token names."""
    return ",".join(sorted(realms))


@contextlib.contextmanager
def _counted_for(
    by_user: collections.Counter[str],
    user: str | None,
    by_realm: collections.Counter[str],
    realms: str | None,
) -> Iterator[None]:
    """One request counted under its user and its realms (each when not None)."""
    with contextlib.ExitStack() as counts:
        if user is not None:
            counts.enter_context(_counted(by_user, user))
        if realms is not None:
            counts.enter_context(_counted(by_realm, realms))
        yield


@contextlib.contextmanager
def _counted(counter: collections.Counter[str], user: str) -> Iterator[None]:
    counter[user] += 1
    try:
        yield
    finally:
        counter[user] -= 1
        if not counter[user]:
            del counter[user]


def _too_many(message: str) -> ApiError:
    return ApiError(
        429,
        message,
        reason="TooManyRequests",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
