"""How many requests the API server works on at once: a bound, answered 429 past it.

Without one, a client (a buggy script, a hostile token holder) could open requests faster
than they finish, and every one holds memory and a task; a watch asked to resume from an
old revision even holds an etcd watch stream of its own (``watchhub``'s private feed).
As kube-apiserver's ``--max-requests-inflight``: at most ``max_requests_inflight`` short
requests at once, a quarter of them for one token holder (a rough fairness, where
kube-apiserver has its priority and fairness queues), beyond which a request is answered
``429 Too Many Requests`` with ``Retry-After: 1`` at once (kubectl and kukectl's clients
wait and retry). Long-running
requests (watches, followed logs, exec and attach sessions) are not short: they are bounded
per user instead (``max_long_running_per_user``). Both bound token holders only: the local
admin on the unix socket (root on the host anyway) and other nodes forwarding their users'
requests (bound on the node they asked) pass, as kube-apiserver's system:masters, so that
token holders filling the bound cannot lock out the one who can mend things.
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


class InflightLimits:
    """The counts of requests in flight, and the check each request passes first."""

    def __init__(self, *, max_requests: int, max_long_running_per_user: int) -> None:
        self.max_requests = max_requests
        self.max_requests_per_user = max(1, max_requests // USER_SHARE)
        self.max_long_running_per_user = max_long_running_per_user
        self.requests = 0
        self.short: collections.Counter[str] = collections.Counter()
        self.long_running: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def admitted(self, *, user: str | None, long_running: bool) -> Iterator[None]:
        """Count one request while it runs; ``ApiError`` 429 when it is one too many.
        ``user`` None: not bound per user (the local admin)."""
        if long_running:
            if user is None:
                yield
                return
            if self.long_running[user] >= self.max_long_running_per_user:
                raise _too_many(
                    f"user {user!r} already has {self.long_running[user]} watches, followed "
                    f"logs or sessions open, the most this server allows a user "
                    f"(apiMaxLongRunningPerUser {self.max_long_running_per_user}); close some"
                )
            with _counted(self.long_running, user):
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
        self.requests += 1
        try:
            if user is None:
                yield
            else:
                with _counted(self.short, user):
                    yield
        finally:
            self.requests -= 1


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
