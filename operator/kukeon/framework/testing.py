"""``OperatorRunner``: run an ``Operator`` in-process for the length of an ``async with``.

Like kopf's KopfRunner: the test builds an operator against a real registry (etcd from
the test fixtures), enters the runner (which returns once every kind is listed), writes
objects through the registry, waits for the handlers, and leaves; leaving stops the
operator gracefully and re-raises anything a background task of the operator crashed
with, so a broken watcher fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from .operator import Operator

# The framework's package logger: each of its modules logs to a child of it
# (``logging.getLogger(__name__)``), so a handler here sees them all.
_FRAMEWORK_LOG = logging.getLogger("kukeon.framework")


class _CrashCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.crashes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("background task"):
            self.crashes.append(record.getMessage())


class OperatorRunner:
    """``async with OperatorRunner(op) as runner:`` runs ``op`` until the block ends."""

    def __init__(
        self,
        operator: Operator,
        *,
        start_timeout: float = 30.0,
        release_leases: bool = True,
    ) -> None:
        self.operator = operator
        self._start_timeout = start_timeout
        self.release_leases = release_leases
        """False makes leaving the block look like a crash: leases are left to expire."""
        self._catcher = _CrashCatcher()

    async def __aenter__(self) -> Self:
        _FRAMEWORK_LOG.addHandler(self._catcher)
        try:
            async with asyncio.timeout(self._start_timeout):
                await self.operator.start()
        except BaseException:
            await self.operator.stop()
            _FRAMEWORK_LOG.removeHandler(self._catcher)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.operator.stop(release_leases=self.release_leases)
        finally:
            _FRAMEWORK_LOG.removeHandler(self._catcher)
        if exc is None and self._catcher.crashes:
            raise AssertionError(
                "operator background task(s) crashed: " + "; ".join(self._catcher.crashes)
            )

    async def stop(self) -> None:
        """Stop the operator before the block ends (e.g. to test a takeover)."""
        await self.operator.stop(release_leases=self.release_leases)

    async def wait_idle(self, *, within: float = 30.0) -> None:
        await self.operator.wait_idle(within=within)

    @staticmethod
    async def wait_for(
        predicate: Callable[[], bool | Awaitable[bool]],
        *,
        within: float = 30.0,
        interval: float = 0.02,
    ) -> None:
        """Poll ``predicate`` until it is true (TimeoutError after ``within``)."""
        async with asyncio.timeout(within):
            while True:
                result = predicate()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
