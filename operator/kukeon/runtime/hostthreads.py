"""A few threads of their own for the host operations that can block for long.

Removing a cgroup subtree (killing its processes, waiting for them, rmdir leaf first),
creating or removing a network namespace (``unshare``, a bind mount, an unmount that waits
for the kernel to let the namespace go), deleting a bridge (netlink, RCU grace periods) or
waiting for the subnet store's file lock can each hold a thread for seconds. On asyncio's
default executor a burst of them (a cascade removing fifty cells) would take every thread
it has, and whatever else runs there — aiohttp's file responses, ``getaddrinfo``, every
quick file read through ``asyncio.to_thread`` — would wait behind them.

So these run through :func:`run_on_host_thread`, on a bounded pool (``HOST_THREADS``
workers): at most that many slow operations run at once, the rest queue here, and the
default executor stays free. Quick reads (a cgroup's stats, whether a link exists) stay on
``asyncio.to_thread``.

kukeond opens the pool when it starts and closes it when it stops
(:func:`open_host_threads`, :func:`close_host_threads`, counted, so two daemons in one
process share it); anything else (tests, tools) gets one at its first call, which lives as
long as the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)

HOST_THREADS = 4
"""Slow host operations that may run at once (they wait on the kernel, not on the CPU)."""

_P = ParamSpec("_P")
_T = TypeVar("_T")

_guard = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_users = 0


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=HOST_THREADS, thread_name_prefix="kukeon-host")
        return _pool


async def run_on_host_thread(func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``func(*args, **kwargs)`` on a host thread (with the caller's context variables).

    Cancelling the caller does not stop ``func`` (a thread cannot be interrupted): it runs
    to its end, holding one of the pool's threads, as with ``asyncio.to_thread``.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(_executor(), call)


def open_host_threads() -> None:
    """Start the pool for a daemon (its threads start with the first operations)."""
    global _users
    _executor()
    with _guard:
        _users += 1


async def close_host_threads() -> None:
    """The daemon's stop: wait for the operations still running, then end the threads.

    The last of the daemons that opened the pool closes it; a later call opens a new one.
    """
    global _users, _pool
    with _guard:
        _users = max(0, _users - 1)
        if _users or _pool is None:
            return
        pool, _pool = _pool, None
    # Waiting is blocking: done on the default executor, bounded by the daemon's stop step.
    await asyncio.to_thread(pool.shutdown, wait=True)
    log.debug("host threads stopped")
