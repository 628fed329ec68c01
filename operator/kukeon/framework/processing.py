"""Running the handlers of one object once, and turning what happened into an ``Outcome``.

Given the latest version of an object, ``Processor.process`` decides which handler is
due (finalize when deletion was requested and this operator's finalizer is still held,
reconcile otherwise), keeps the finalizer bookkeeping (add it before the first
reconcile, remove it after a successful finalize), runs the handler, records a failure
in ``status.reason``/``status.message`` and in the metrics, and reports the result (a
``Requeue`` is no failure: nothing recorded, counted ``requeued``). A store's refusal
(etcd full or away, a write it finds invalid or too large) is said without a traceback.
It never sleeps or retries: scheduling the next attempt is ``queueing``'s job.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any, NamedTuple

from kukeon.api import Kind, key_of
from kukeon.fileio import host_disk_refusal
from kukeon.store import DocumentTooLarge, Invalid, InvalidStoredDocument, StoreError, Unavailable

from .cache import WatchedObjects
from .errors import Awaited, HandlerError, PermanentError, Requeue, TemporaryError, WaitingError
from .intents import Cause, HandlerContext, HandlerRegistry, ObjectHandler, TimerIntent
from .metrics import (
    RESULT_CANCELLED,
    RESULT_ERROR,
    RESULT_PERMANENT,
    RESULT_REQUEUED,
    RESULT_SUCCESS,
    RESULT_TEMPORARY,
    RESULT_WAITING,
    FrameworkMetrics,
)
from .protocols import AnyResource, Store
from .settings import Settings
from .status import patch_status
from .storetrouble import ConditionLog, status_writable, trouble_reason

log = logging.getLogger(__name__)


_REFUSALS_KEPT = 1024
"""Objects whose last refused write is remembered (to say it once); the oldest go first."""


def host_disk_reason(error: BaseException) -> str | None:
    """The status reason of a write the host's disk refused (full, over quota, read-only),
    found on the error or on what it was raised from; None for anything else."""
    refusal = host_disk_refusal(error)
    return refusal[0] if refusal is not None else None


def describe_host_disk_error(error: BaseException) -> str:
    refusal = host_disk_refusal(error)
    if refusal is None:
        raise ValueError(f"not a write the host's disk refused: {error!r}")
    refused = refusal[1]
    where = f" writing {refused.filename}" if refused.filename else ""
    return (
        f"{refused.strerror or refused}{where}: kukeond retries once the host's disk takes "
        "writes again"
    )


def _say_refused(
    condition: ConditionLog, ctx: HandlerContext, what: str, reason: str, message: str
) -> None:
    """Log a pass the process's condition refused, at the level ``condition`` gives it."""
    level, unsaid = condition.level(reason)
    ctx.logger.log(
        level,
        "%s failed (%s): %s; will retry%s",
        what,
        reason,
        message,
        f" ({unsaid} more passes refused since this was last said)" if unsaid else "",
        extra={"reason": reason, "retry": ctx.retry},
    )


class Result(enum.Enum):
    SKIPPED = "skipped"  # nothing to do for this version (filtered out, no handler)
    SUCCESS = "success"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    GONE = "gone"  # the object disappeared while we worked on it
    REQUEUED = "requeued"  # a planned wait (``Requeue``): run again after ``delay``


class Outcome(NamedTuple):
    result: Result
    handled: AnyResource | None
    """The version the handler saw (after the framework's own finalizer write)."""
    delay: float | None = None
    """A retry delay the handler asked for (``TemporaryError(delay=...)``), or the wait
    of a ``Requeue``."""
    waiting_on: Awaited | None = None
    """The object a waiting handler waits for (``WaitingError(on=...)``): its change wakes it."""
    waiting: bool = False
    """A ``WaitingError``: not a failure, so it does not grow the failure backoff."""
    said: str | None = None
    """A wait's statement (its reason and message): given back to the next pass as
    ``waited``, so a wait that goes on is not logged as news again."""
    at_most: float | None = None
    """The latest a retry may come (``TemporaryError(at_most=...)``), backoff or not."""
    keeps_backoff: bool = False
    """A ``Requeue(keeps_backoff=True)``: the failure count stays as it was."""


def describe(kind: Kind, key: tuple[str, ...]) -> str:
    return f"{kind.value} {'/'.join(key)}"


class KeyedLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the object's kind, key and node to every record, keeping per-call extras.

    (Python 3.11's LoggerAdapter replaces a call's ``extra`` instead of merging it.)
    """

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class Processor:
    """Runs the registered handlers for one object version."""

    def __init__(
        self,
        *,
        store: Store,
        handlers: HandlerRegistry,
        settings: Settings,
        metrics: FrameworkMetrics,
    ) -> None:
        self._store = store
        self._handlers = handlers
        self._settings = settings
        self._metrics = metrics
        self.cache: WatchedObjects | None = None
        """Set by the operator once it watches: handed to every handler's context."""
        self.wrote: Callable[[AnyResource], None] | None = None
        """Set with ``cache``: where a handler's own status writes go (``queueing.wrote``)."""
        self.store_trouble = ConditionLog()
        """How loudly etcd's refusals are said, the queues' own store calls' too."""
        self.disk_trouble = ConditionLog()
        """How loudly the host disk's refusals (``HostDiskFull``, ``HostDiskReadOnly``) are said."""
        self._refused: dict[tuple[Kind, tuple[str, ...]], str] = {}
        """The last refused write said per object (``_write_refused``), the latest last."""

    def logger(self, kind: Kind, key: tuple[str, ...]) -> logging.LoggerAdapter[logging.Logger]:
        extra = {"kind": kind.value, "key": "/".join(key), "node": self._settings.node_name}
        return KeyedLogger(log, extra)

    def _context(self, obj: AnyResource, *, cause: Cause, retry: int) -> HandlerContext:
        kind = Kind(obj.kind)
        key = key_of(obj)
        return HandlerContext(
            kind=kind,
            key=key,
            cause=cause,
            retry=retry,
            node_name=self._settings.node_name,
            store=self._store,
            logger=self.logger(kind, key),
            max_conflicts=self._settings.status_conflict_retries,
            cache=self.cache,
            wrote=self.wrote,
        )

    async def process(
        self, obj: AnyResource, *, cause: Cause, retry: int, waited: str | None = None
    ) -> Outcome:
        """Run what is due for ``obj``. ``waited``: the statement of the wait the object's
        last pass ended in (``Outcome.said``), None when it did not end waiting."""
        kind = Kind(obj.kind)
        key = key_of(obj)
        reconciler = self._handlers.reconcilers.get(kind)
        finalizer = self._handlers.finalizers.get(kind)

        if obj.metadata.deletion_timestamp is not None:
            if finalizer is None or finalizer.finalizer not in obj.metadata.finalizers:
                return Outcome(Result.SKIPPED, obj)
            if not finalizer.runs(obj):
                return Outcome(Result.SKIPPED, obj)  # another operator's to finalize
            ctx = self._context(obj, cause=Cause.DELETE, retry=retry)
            outcome = await self._run(finalizer.fn, obj, ctx, phase="finalize", waited=waited)
            if outcome.result is not Result.SUCCESS:
                return outcome
            await self._store.remove_finalizer(kind, key, finalizer.finalizer)
            ctx.logger.info("%s finalized", describe(kind, key))
            return Outcome(Result.SUCCESS, obj)

        missing = finalizer is not None and finalizer.finalizer not in obj.metadata.finalizers
        if finalizer is not None and missing and finalizer.when(obj):
            try:
                updated = await self._store.add_finalizer(kind, key, finalizer.finalizer)
            except Invalid:
                # Deletion was requested meanwhile: its event brings the next version.
                return Outcome(Result.SKIPPED, obj)
            if updated is None:
                return Outcome(Result.GONE, None)
            obj = updated

        if reconciler is None or not reconciler.when(obj):
            return Outcome(Result.SKIPPED, obj)
        ctx = self._context(obj, cause=cause, retry=retry)
        return await self._run(reconciler.fn, obj, ctx, phase="reconcile", waited=waited)

    async def run_timer(self, timer: TimerIntent, obj: AnyResource) -> Outcome:
        ctx = self._context(obj, cause=Cause.TIMER, retry=0)
        return await self._run(timer.fn, obj, ctx, phase=f"timer {timer.name}")

    async def _host_disk_failure(
        self, error: Exception, reason: str, obj: AnyResource, ctx: HandlerContext, what: str
    ) -> Outcome:
        # The host's disk, not a bug: no traceback, said in the status, and logged as the
        # process's condition (every pass writing there meets it): when it starts, then a
        # line a minute.
        self._metrics.reconcile_total.labels(ctx.kind.value, RESULT_TEMPORARY).inc()
        message = describe_host_disk_error(error)
        _say_refused(self.disk_trouble, ctx, what, reason, message)
        await self._record_failure(obj, ctx, reason, message)
        return Outcome(Result.TEMPORARY, obj)

    async def _store_refused(
        self, error: Unavailable, obj: AnyResource, ctx: HandlerContext, what: str
    ) -> Outcome:
        # etcd full or out of reach: every object's pass meets it at once, and it is no bug
        # of this one: no traceback, said when it starts and once a minute (ConditionLog).
        self._metrics.reconcile_total.labels(ctx.kind.value, RESULT_TEMPORARY).inc()
        reason = trouble_reason(error)
        _say_refused(self.store_trouble, ctx, what, reason, str(error))
        if status_writable(error):  # else that write would be refused too
            await self._record_failure(obj, ctx, reason, str(error))
        return Outcome(Result.TEMPORARY, obj)

    async def _write_refused(
        self, error: Invalid, obj: AnyResource, ctx: HandlerContext, what: str
    ) -> Outcome:
        # The store refused a write of the pass for what it holds (a document over the
        # limit): the same write is refused again until the object changes, so it is said
        # without a traceback, at warning level once and then at debug level while the same
        # words repeat (it was an error and a traceback at every pass), in the status, and
        # retried with the backoff of any failure.
        self._metrics.reconcile_total.labels(ctx.kind.value, RESULT_TEMPORARY).inc()
        reason = "DocumentTooLarge" if isinstance(error, DocumentTooLarge) else "WriteRefused"
        message = f"{what} failed: the store refused it: {error}"
        place = (ctx.kind, ctx.key)
        level = logging.DEBUG if self._refused.get(place) == message else logging.WARNING
        self._refused.pop(place, None)
        self._refused[place] = message
        while len(self._refused) > _REFUSALS_KEPT:
            del self._refused[next(iter(self._refused))]
        ctx.logger.log(
            level, "%s; will retry", message, extra={"reason": reason, "retry": ctx.retry}
        )
        await self._record_failure(obj, ctx, reason, message)
        return Outcome(Result.TEMPORARY, obj)

    async def _temporary(
        self,
        error: TemporaryError,
        obj: AnyResource,
        ctx: HandlerContext,
        what: str,
        *,
        waited: str | None,
    ) -> Outcome:
        waiting = isinstance(error, WaitingError)
        result = RESULT_WAITING if waiting else RESULT_TEMPORARY
        self._metrics.reconcile_total.labels(ctx.kind.value, result).inc()
        said = f"{error.reason}: {error}" if waiting else None
        level = logging.WARNING
        if waiting:
            # Said once when it starts; every pass of a long wait is no news.
            level = logging.DEBUG if said == waited else logging.INFO
        ctx.logger.log(
            level,
            "%s %s (%s): %s; will retry",
            what,
            "not done yet" if waiting else "failed",
            error.reason,
            error,
            extra={"reason": error.reason, "retry": ctx.retry},
        )
        # A wait is recorded too: the status says what the object waits for.
        if not (isinstance(error, WaitingError) and error.said_by_handler):
            await self._record_failure(obj, ctx, error.reason, str(error))
        on = error.on if isinstance(error, WaitingError) else None
        return Outcome(
            Result.TEMPORARY,
            obj,
            error.delay,
            on,
            waiting=waiting,
            said=said,
            at_most=error.at_most,
        )

    async def _run(
        self,
        fn: ObjectHandler,
        obj: AnyResource,
        ctx: HandlerContext,
        *,
        phase: str,
        waited: str | None = None,
    ) -> Outcome:
        kind = ctx.kind.value
        what = f"{phase} of {describe(ctx.kind, ctx.key)}"
        started = time.monotonic()
        try:
            await fn(obj, ctx)
        except asyncio.CancelledError:
            self._metrics.reconcile_total.labels(kind, RESULT_CANCELLED).inc()
            ctx.logger.warning("%s cancelled", what)
            raise
        except PermanentError as error:
            self._metrics.reconcile_total.labels(kind, RESULT_PERMANENT).inc()
            ctx.logger.error(
                "%s failed permanently (%s): %s; waiting for the object to change",
                what,
                error.reason,
                error,
                extra={"reason": error.reason, "retry": ctx.retry},
            )
            await self._record_failure(obj, ctx, error.reason, str(error))
            return Outcome(Result.PERMANENT, obj)
        except Requeue as planned:
            self._metrics.reconcile_total.labels(kind, RESULT_REQUEUED).inc()
            # Every pass of the wait says it: debug, and nothing in the status (the
            # handler wrote what it should say).
            ctx.logger.debug(
                "%s requeued in %.1fs (%s): %s",
                what,
                planned.delay,
                planned.reason,
                planned,
                extra={"reason": planned.reason, "retry": ctx.retry},
            )
            return Outcome(Result.REQUEUED, obj, planned.delay, keeps_backoff=planned.keeps_backoff)
        except TemporaryError as error:
            return await self._temporary(error, obj, ctx, what, waited=waited)
        except InvalidStoredDocument as error:
            # Another object's document in etcd is broken (the store logged it once, with
            # its key): retried with backoff until someone fixes it, without a traceback.
            self._metrics.reconcile_total.labels(kind, RESULT_TEMPORARY).inc()
            ctx.logger.warning(
                "%s failed (InvalidStoredDocument): %s; will retry",
                what,
                error,
                extra={"reason": "InvalidStoredDocument", "retry": ctx.retry},
            )
            await self._record_failure(obj, ctx, "InvalidStoredDocument", str(error))
            return Outcome(Result.TEMPORARY, obj)
        except Unavailable as error:
            return await self._store_refused(error, obj, ctx, what)
        except Invalid as error:
            return await self._write_refused(error, obj, ctx, what)
        except Exception as error:
            if (refused := host_disk_reason(error)) is not None:
                return await self._host_disk_failure(error, refused, obj, ctx, what)
            self._metrics.reconcile_total.labels(kind, RESULT_ERROR).inc()
            reason = error.reason if isinstance(error, HandlerError) else "UnexpectedError"
            ctx.logger.exception(
                "%s raised %s: %s; will retry",
                what,
                type(error).__name__,
                error,
                extra={"reason": reason, "retry": ctx.retry},
            )
            message = f"{phase} failed: {type(error).__name__}: {error}"
            await self._record_failure(obj, ctx, reason, message)
            return Outcome(Result.TEMPORARY, obj)
        finally:
            self._metrics.reconcile_duration.labels(kind).observe(time.monotonic() - started)
        self._metrics.reconcile_total.labels(kind, RESULT_SUCCESS).inc()
        self._refused.pop((ctx.kind, ctx.key), None)
        return Outcome(Result.SUCCESS, obj)

    async def _record_failure(
        self, obj: AnyResource, ctx: HandlerContext, reason: str, message: str
    ) -> None:
        try:
            await patch_status(
                self._store,
                obj,
                observe=False,
                max_conflicts=self._settings.status_conflict_retries,
                reason=reason,
                message=message,
            )
        except (StoreError, TypeError, ValueError) as error:
            ctx.logger.warning(
                "could not record the failure in the status of %s: %s",
                describe(ctx.kind, ctx.key),
                error,
            )
