"""A read from a resourceVersion the server has not reached: wait a little, then a 504.

A client may only hold a revision the server gave it; one newer than etcd's current
revision comes from a server restored from an older backup, a client of another cluster,
or a made-up number. Answering current data "as of" it would hand the client a list older
than the version it asked for, and a watch from it would wait silently for writes that
may never come. kube-apiserver's watch cache waits up to 3 s for the revision (it may be a
write that is just being applied) and then answers ``504 Timeout``, reason ``Timeout``,
message ``Too large resource version: X, current: Y``, a cause of reason
``ResourceVersionTooLarge`` and ``retryAfterSeconds: 1``; so does this server, for GET,
LIST and the start of a WATCH (resources and Events). A client's reflector (client-go's,
kukectl's ``follow``) answers it by listing again without a revision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kukeon.apiserver.status import ApiError, Cause

TOO_LARGE_WAIT = 3.0
"""How long a read waits for etcd to reach the revision it asked for (kube-apiserver's 3 s)."""

TOO_LARGE_RETRY_AFTER = 1
"""The ``retryAfterSeconds`` of the refusal (kube-apiserver's)."""

_FIRST_PAUSE = 0.05
_LONGEST_PAUSE = 0.5


def wait_limit(request_timeout: float, stream_for: float | None = None) -> float:
    """How long a request may wait for its revision: 3 s, but within 80 % of the server's
    ``requestTimeout`` (so a GET or LIST gets this 504 and not the deadline's generic one,
    and a watch, which has no deadline, waits no longer than a GET would) and, for a watch,
    within its own ``timeoutSeconds`` (a client that asked for a 1 s watch is not held 3 s)."""
    wait = min(TOO_LARGE_WAIT, request_timeout * 0.8)
    return wait if stream_for is None else min(wait, stream_for)


def too_large(wanted: int, current: int, name: str = "resourceVersion") -> ApiError:
    """The refusal of a read from ``wanted`` when the server is at ``current``."""
    return ApiError(
        504,
        f"Timeout: Too large resource version: {wanted}, current: {current}",
        reason="Timeout",
        causes=[Cause(name, "Too large resource version", "ResourceVersionTooLarge")],
        retry_after_seconds=TOO_LARGE_RETRY_AFTER,
    )


async def wait_for_revision(
    wanted: int,
    current_revision: Callable[[], Awaitable[int]],
    *,
    known: int = 0,
    wait: float = TOO_LARGE_WAIT,
    name: str = "resourceVersion",
) -> None:
    """Return once etcd's revision is at least ``wanted``; ``too_large`` after ``wait``.

    ``known``: a revision the server has already seen (a cache's), which cannot be newer
    than etcd's: at or past ``wanted``, etcd is not asked. Otherwise etcd's revision is
    read again after pauses growing from 50 ms to 0.5 s (any write of any kind moves it).
    """
    if wanted <= known:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    pause = _FIRST_PAUSE
    while True:
        revision = await current_revision()
        if revision >= wanted:
            return
        left = deadline - loop.time()
        if left <= 0:
            raise too_large(wanted, revision, name)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _LONGEST_PAUSE)
