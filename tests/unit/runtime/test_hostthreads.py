"""kukeon.runtime.hostthreads: slow host operations run on a bounded pool of their own."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from kukeon.runtime import hostthreads
from kukeon.runtime.hostthreads import (
    HOST_THREADS,
    close_host_threads,
    open_host_threads,
    run_on_host_thread,
)

WHO = contextvars.ContextVar("WHO", default="nobody")


async def test_runs_on_a_host_thread_with_the_callers_context() -> None:
    WHO.set("caller")

    def where(suffix: str, *, twice: bool) -> str:
        name = threading.current_thread().name
        return f"{name}:{WHO.get()}:{suffix * (2 if twice else 1)}"

    answer = await run_on_host_thread(where, "x", twice=True)
    assert answer.startswith("kukeon-host")
    assert answer.endswith(":caller:xx")


async def test_slow_operations_queue_on_the_pool_and_leave_the_default_executor_free() -> None:
    release = threading.Event()
    running = 0
    most = 0
    lock = threading.Lock()

    def slow() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1

    held = [asyncio.ensure_future(run_on_host_thread(slow)) for _ in range(HOST_THREADS * 3)]
    try:
        await asyncio.sleep(0.2)
        # Every host thread is busy, yet a quick read on the default executor answers.
        async with asyncio.timeout(2):
            assert await asyncio.to_thread(lambda: 42) == 42
        assert most == HOST_THREADS
    finally:
        release.set()
        await asyncio.gather(*held)
    assert most == HOST_THREADS


async def test_the_last_daemon_to_close_ends_the_pool_and_a_new_one_follows() -> None:
    open_host_threads()
    open_host_threads()
    pool = hostthreads._pool
    assert pool is not None
    await close_host_threads()
    assert hostthreads._pool is pool  # the other daemon still uses it
    await close_host_threads()
    assert hostthreads._pool is None
    assert await run_on_host_thread(lambda: "again") == "again"  # a fresh pool
    assert hostthreads._pool is not None
    assert hostthreads._pool is not pool
