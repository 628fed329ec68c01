"""One serialized, coalescing work slot per object, and a bounded pool of handler runs.

Why a slot and not a FIFO of events: a handler always wants the *latest* version of
its object, never a replay of the intermediate ones. Each object therefore has one
``_ObjectState`` holding the newest version seen; events only overwrite it and mark
it dirty. One worker task per object drains it, so two handlers never run on the same
object at once, and a burst of updates arriving while a handler runs collapses into
exactly one more run with the final version (coalescing).

Which changes count: a version whose spec and metadata are the same as the last one
handled (a status write, usually the handler's own) updates the cached object but
queues nothing; otherwise every status write would trigger its own reconcile. A
handler's own status write is taken as the newest version at once (``wrote``), not when
the watch delivers it: a pass queued while the last one ran (a task's exit, a timer)
starts right after it, and must not report from the status before that write.

Failures: ``TemporaryError`` and unexpected exceptions schedule a retry after the
backoff delay of the object's consecutive-failure count (reset by a success or a wait:
minutes of waiting for a parent must not turn the first real failure after it into a
five-minute backoff);
``PermanentError`` parks the object until its spec or metadata change. A change that
arrives while a retry is pending runs at once with the new version. A ``Requeue`` (a
planned wait: a restart back-off) runs the object again after exactly its delay, resets
both counts like a success (but the failures, for one that keeps its backoff: a pull
started beside the pass) and counts no retry.

What counts where: ``kukeon_reconcile_retries_total`` counts the retries of failures
only (a wait is no error); ``kukeon_queue_depth`` the objects due for a handler now (a
change, a resync, a timer, or a delay that has ended) that no worker has taken yet. An
object waiting out a delay (a failure's backoff, a wait's retry, a requeue) is not in
it until the delay ends, as Kubernetes' ``workqueue_depth`` leaves out its delaying
queue: a fleet of crash-looping cells is no backlog. ``idle`` still counts them.

Waiting on another object: a handler that raises ``WaitingError(on=Awaited(...))`` is
retried after its delay (or a backoff counted over consecutive waits; logged at debug
level, the processor says the wait once when it starts), and also as soon
as a newer version of the awaited object (or its deletion) is offered here -- at once if
one arrived while the handler ran. A parent's change therefore wakes the children waiting
on it; the delay is only a safety net. The same objects are what ``WatchedObjects``
(``cache``) shows, so the woken child reads a parent at least as new as the change that
woke it.

Change listeners (``listen``) are called with every newer version of an object of their
kind and with its last version when it is deleted, after the queues hold it: controllers
requeue what depends on it without a watch of their own.

Paused (``pause``, while this process does not converge its node: ``converging``):
changes, retries and timers are still taken in and coalesced, but no worker starts and a
running one exits after its pass; ``resume`` starts a worker for every object due.

Memory: the state of an object is dropped when the object is deleted, and its worker
task exits after ``queue_idle_timeout`` without work, so 10,000 quiet objects cost
10,000 small records and no tasks. A global semaphore bounds how many handlers run.

Realms: the objects of one realm hold at most ``Settings.realm_workers`` of those handlers
at once (a per-realm semaphore, taken before a global slot and kept only while held or
awaited). A handler may hold its worker for long (a cell's stop once waited out its grace,
up to an hour, in the pass): without this bound one realm's could hold every worker, and
no other realm's cell was converged for the hour. A cell's deletion, stop, container
replacement or container dropped from its spec holds none through its grace now: its
passes end with a ``Requeue`` (``controllers.stopgraces``).

``watching`` feeds this module; ``processing`` runs what it schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from kukeon.api import Kind, key_of
from kukeon.store import Unavailable

from .backoff import retry_delay
from .cache import revision_of
from .errors import Awaited
from .intents import Cause, HandlerRegistry, TimerIntent
from .longpasses import LongPasses
from .metrics import FrameworkMetrics
from .processing import Outcome, Processor, Result, describe
from .protocols import AnyResource, ObjectKey
from .settings import Settings
from .storetrouble import trouble_reason
from .waits import wait_event

log = logging.getLogger(__name__)

_Run = Callable[[], Awaitable[Outcome]]
ChangeListener = Callable[[AnyResource, bool], None]
"""Called with an object's newer version (False) or its last one when deleted (True)."""


def change_digest(obj: AnyResource) -> bytes:
    """Identity of what a handler reacts to: spec and metadata, without resourceVersion."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(obj.spec.model_dump_json().encode())
    hasher.update(obj.metadata.model_dump_json(exclude={"resource_version"}).encode())
    return hasher.digest()


def _revision(obj: AnyResource) -> int:
    return int(obj.metadata.resource_version or 0)


@dataclass(eq=False, kw_only=True)
class _ObjectState:
    kind: Kind
    key: ObjectKey
    latest: AnyResource | None
    revision: int
    latest_digest: bytes = b""
    dirty: bool = False
    forced: bool = False
    cause: Cause = Cause.CHANGE
    timers_due: dict[str, TimerIntent] = field(default_factory=dict)
    handled_digest: bytes | None = None
    parked_digest: bytes | None = None
    failures: int = 0
    waits: int = 0
    wait_said: str | None = None
    """The statement of the wait the last pass ended in (``Outcome.said``), None when it
    did not end waiting: the next pass logs the same wait at debug level only."""
    retry_handle: asyncio.TimerHandle | None = None
    awaiting: tuple[Kind, ObjectKey] | None = None
    """The object in whose ``_waiters`` this one is listed."""
    worker: asyncio.Task[None] | None = None
    running: bool = False
    handling: bytes | None = None
    """The digest of the version the running handler was given (None: none runs)."""
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def due(self) -> bool:
        """A handler is due now (a change, a resync, a timer, a delay that has ended)."""
        return self.dirty or bool(self.timers_due)

    @property
    def waiting(self) -> bool:
        """Due now or after a delay (a retry or a requeue scheduled)."""
        return self.due or self.retry_handle is not None


class ObjectQueues:
    """Every object's state and worker, across all kinds of one operator."""

    def __init__(
        self,
        *,
        processor: Processor,
        handlers: HandlerRegistry,
        settings: Settings,
        metrics: FrameworkMetrics,
        long_passes: LongPasses | None = None,
    ) -> None:
        self._processor = processor
        self.long_passes = long_passes or LongPasses(
            threshold=settings.long_pass_seconds, metrics=metrics
        )
        """Every running pass, for saying those that run too long (``Operator`` checks)."""
        self._handlers = handlers
        self._settings = settings
        self._metrics = metrics
        self._states: dict[tuple[Kind, ObjectKey], _ObjectState] = {}
        self._waiting: dict[Kind, set[ObjectKey]] = {}
        """Per kind, the objects due for a handler now or after a delay (``idle``)."""
        self._due: dict[Kind, set[ObjectKey]] = {}
        """Per kind, the objects due now (``depth``, ``kukeon_queue_depth``)."""
        self._running = 0
        self._slots = asyncio.Semaphore(settings.max_workers)
        self._realm_slots: dict[str, tuple[asyncio.Semaphore, int]] = {}
        """Per realm: its semaphore and how many workers hold or await it (then dropped)."""
        self._accepting = True
        self._paused = False
        """No handler is started (``pause``); what is due waits for ``resume``."""
        self._waiters: dict[tuple[Kind, ObjectKey], set[tuple[Kind, ObjectKey]]] = {}
        """Awaited object -> the objects whose handler waits for its next change."""
        self._listeners: dict[Kind, list[ChangeListener]] = {}
        self._listed: set[Kind] = set()
        self._by_kind: dict[Kind, dict[ObjectKey, _ObjectState]] = {}
        """The same states as ``_states``, per kind: what ``objects`` lists."""
        self._revisions: dict[Kind, int] = {}
        """The newest revision offered or forgotten per kind (``seen_revision``)."""
        self._cache_only: set[Kind] = set()

    def mark_listed(self, kind: Kind) -> None:
        """Every object of ``kind`` has been offered once (its watcher's first list)."""
        self._listed.add(kind)

    def is_listed(self, kind: Kind) -> bool:
        return kind in self._listed

    def cache_only(self, kind: Kind) -> None:
        """Keep the newest version of every object of ``kind`` but run nothing for them:
        a kind watched for ``WatchedObjects`` readers, with no handler of its own."""
        self._cache_only.add(kind)

    def objects(self, kind: Kind) -> list[AnyResource]:
        """The newest version of every live object of ``kind`` (in no particular order)."""
        states = self._by_kind.get(kind, {})
        return [state.latest for state in states.values() if state.latest is not None]

    def seen_revision(self, kind: Kind) -> int:
        """The newest revision of ``kind`` offered or forgotten here (0 before any)."""
        return self._revisions.get(kind, 0)

    def listen(self, kind: Kind, listener: ChangeListener) -> None:
        """Call ``listener`` with every change of an object of ``kind`` (see the module)."""
        self._listeners.setdefault(kind, []).append(listener)

    # --- introspection (metrics, tests, the runner) --------------------------------------

    def depth(self, kind: Kind) -> int:
        """Objects of ``kind`` due for a handler now and not taken by a worker yet; one
        waiting out a delay (a retry, a requeue) is not counted until it ends."""
        return len(self._due.get(kind, ()))

    @property
    def running(self) -> int:
        return self._running

    def idle(self) -> bool:
        return self._running == 0 and not any(self._waiting.values())

    def known(self, kind: Kind) -> list[ObjectKey]:
        return [key for (k, key), st in self._states.items() if k == kind and st.latest]

    def latest(self, kind: Kind, key: ObjectKey) -> AnyResource | None:
        state = self._states.get((kind, key))
        return None if state is None else state.latest

    def failures(self, kind: Kind, key: ObjectKey) -> int:
        state = self._states.get((kind, key))
        return 0 if state is None else state.failures

    def _track(self, state: _ObjectState) -> None:
        waiting = self._waiting.setdefault(state.kind, set())
        if state.waiting:
            waiting.add(state.key)
        else:
            waiting.discard(state.key)
        due = self._due.setdefault(state.kind, set())
        before = len(due)
        if state.due:
            due.add(state.key)
        else:
            due.discard(state.key)
        if len(due) != before:
            self._metrics.queue_depth.labels(state.kind.value).set(len(due))

    # --- input ---------------------------------------------------------------------------

    def offer(self, obj: AnyResource, *, force: bool = False, cause: Cause = Cause.CHANGE) -> None:
        """A version of an object arrived (watch event, list item, resync)."""
        if not self._accepting:
            return
        kind = Kind(obj.kind)
        key = key_of(obj)
        revision = _revision(obj)
        if revision > self._revisions.get(kind, 0):
            self._revisions[kind] = revision
        state = self._states.get((kind, key))
        newer = True
        if state is None:
            state = _ObjectState(kind=kind, key=key, latest=obj, revision=revision)
            state.latest_digest = change_digest(obj)
            self._states[(kind, key)] = state
            self._by_kind.setdefault(kind, {})[key] = state
        elif state.latest is not None and revision <= state.revision:
            # The same version again (a resync, a trigger) or an older copy (a list racing
            # the watch): keep the one we have.
            newer = False
        else:
            if state.latest is None:
                # Re-created under the same key: nothing carries over from the old one.
                state.handled_digest = state.parked_digest = None
                state.failures = state.waits = 0
                state.wait_said = None
            state.latest = obj
            state.latest_digest = change_digest(obj)
            state.revision = revision
        if newer:
            self._changed(kind, key, obj, deleted=False)
        if kind in self._cache_only:
            return
        digest = state.latest_digest
        if digest == state.parked_digest:
            return
        if force or digest != state.handled_digest:
            state.dirty = True
            state.forced = state.forced or force
            state.cause = cause
            self._kick(state)

    def wrote(self, obj: AnyResource) -> None:
        """A version the operator itself just wrote (a handler's status): the object's next
        pass is given it even if the watch has not delivered it yet, so it never reports
        from the status before its own last write (read your own writes). The kind's
        ``seen_revision`` stays the watch's: other objects' writes below this one's
        revision may still be on their way."""
        kind = Kind(obj.kind)
        state = self._states.get((kind, key_of(obj)))
        revision = _revision(obj)
        if state is None or state.latest is None or revision <= state.revision:
            return
        state.latest, state.revision = obj, revision
        state.latest_digest = digest = change_digest(obj)
        self._changed(kind, state.key, obj, deleted=False)
        if kind in self._cache_only or not self._accepting:
            return
        if digest not in (state.handling, state.handled_digest, state.parked_digest):
            # The write re-read a change of someone else's that the watch has not
            # delivered: its event is older than this version and will be dropped.
            state.dirty = True
            state.cause = Cause.CHANGE
            self._kick(state)

    def rewound(self, kind: Kind, revision: int) -> None:
        """etcd went back to ``revision`` (restored from an older snapshot), below versions
        held here: the list that follows is the truth whatever their revisions, so no held
        version counts as newer than a listed one (``offer``) nor outlives it (``forget``).
        Call it right before offering that list, with no await in between."""
        self._revisions[kind] = revision
        for state in self._by_kind.get(kind, {}).values():
            state.revision = 0

    def forget(self, kind: Kind, key: ObjectKey, *, revision: int | None = None) -> None:
        """The object is gone (a DELETED event, or missing from a relist)."""
        if revision is not None and revision > self._revisions.get(kind, 0):
            self._revisions[kind] = revision
        state = self._states.get((kind, key))
        if state is None:
            return
        if revision is not None and revision < state.revision:
            return
        self._cancel_retry(state)
        last = state.latest
        state.latest = None
        state.timers_due.clear()
        if state.worker is None:
            self._drop(state)
        else:
            state.dirty = True
            state.wakeup.set()
            self._track(state)
        if last is not None:
            self._changed(kind, key, last, deleted=True)

    # --- objects waiting on others, and change listeners ---------------------------------

    def _changed(self, kind: Kind, key: ObjectKey, obj: AnyResource, *, deleted: bool) -> None:
        for waiter in self._waiters.pop((kind, key), ()):
            state = self._states.get(waiter)
            if state is not None:
                state.awaiting = None
            # A waiter running right now re-checks the revision when it settles.
            if state is not None and state.retry_handle is not None:
                self._cancel_retry(state)
                self._retry_due(state)
        for listener in self._listeners.get(kind, ()):
            try:
                listener(obj, deleted)
            except Exception:
                log.exception("a change listener of %s failed", describe(kind, key))

    def _await(self, state: _ObjectState, awaited: Awaited) -> None:
        """``state``'s handler waits for ``awaited``: wake it on its change (or now)."""
        if awaited.kind not in self._listed:
            return  # not watched here (or not listed yet): only the retry's delay wakes it
        target = (awaited.kind, awaited.key)
        current = self._states.get(target)
        latest = None if current is None else current.latest
        if revision_of(latest) > awaited.revision or (latest is None and awaited.revision):
            # It changed (or went) while the handler ran: no need to wait for the delay.
            self._cancel_retry(state)
            self._retry_due(state)
            return
        if state.awaiting != target:
            self._stop_awaiting(state)
        self._waiters.setdefault(target, set()).add((state.kind, state.key))
        state.awaiting = target

    def _stop_awaiting(self, state: _ObjectState) -> None:
        """Take ``state`` off its awaited object's list (it is gone, or awaits another):
        a deleted object's entry would stay there until that object changes."""
        target, state.awaiting = state.awaiting, None
        waiters = None if target is None else self._waiters.get(target)
        if target is None or waiters is None:
            return
        waiters.discard((state.kind, state.key))
        if not waiters:
            del self._waiters[target]

    def resync(self, kinds: Iterable[Kind] | None = None) -> None:
        """Queue every known object again, even if unchanged (unless parked)."""
        wanted = None if kinds is None else set(kinds)
        for (kind, _), state in list(self._states.items()):
            if state.latest is not None and (wanted is None or kind in wanted):
                self.offer(state.latest, force=True, cause=Cause.RESYNC)

    def tick_timer(self, timer: TimerIntent) -> None:
        """A timer's interval elapsed: queue it for every live object it applies to."""
        if not self._accepting:
            return
        for (kind, _), state in list(self._states.items()):
            obj = state.latest
            if kind != timer.kind or obj is None or obj.metadata.deletion_timestamp:
                continue
            if not timer.when(obj):
                continue
            state.timers_due[timer.name] = timer
            self._kick(state)

    def pause(self) -> None:
        """Start no handler until ``resume``: a running one finishes its pass, then its
        worker exits; changes, retries and timers are still taken in (coalesced)."""
        self._paused = True
        for state in self._states.values():
            state.wakeup.set()  # an idle worker exits now rather than at its idle timeout

    def resume(self) -> None:
        """Start a worker for every object due (what arrived while paused)."""
        if not self._paused:
            return
        self._paused = False
        for state in list(self._states.values()):
            if state.due:
                self._kick(state)

    def _kick(self, state: _ObjectState) -> None:
        self._track(state)
        if self._paused:
            return  # ``resume`` starts its worker
        if state.worker is None:
            state.worker = asyncio.create_task(
                self._work(state), name=f"kukeon-worker {describe(state.kind, state.key)}"
            )
        else:
            state.wakeup.set()

    def _drop(self, state: _ObjectState) -> None:
        if self._states.get((state.kind, state.key)) is state:
            del self._states[(state.kind, state.key)]
            self._by_kind[state.kind].pop(state.key, None)
        self._stop_awaiting(state)
        state.dirty = False
        state.timers_due.clear()
        self._track(state)

    # --- retries -------------------------------------------------------------------------

    def _cancel_retry(self, state: _ObjectState) -> None:
        if state.retry_handle is not None:
            state.retry_handle.cancel()
            state.retry_handle = None

    def _schedule_retry(
        self,
        state: _ObjectState,
        requested: float | None,
        *,
        waiting: bool = False,
        at_most: float | None = None,
    ) -> None:
        self._cancel_retry(state)
        if waiting:
            state.failures, state.waits = 0, state.waits + 1
            attempt = state.waits
        else:
            state.failures, state.waits = state.failures + 1, 0
            attempt = state.failures
        delay = requested
        if delay is None:
            delay = retry_delay(attempt, settings=self._settings)
        if at_most is not None:
            delay = min(delay, at_most)
        if not waiting:
            # A wait is no error: no retry counted, and the processor said it once.
            self._metrics.retries_total.labels(state.kind.value).inc()
        log.log(
            logging.DEBUG if waiting else logging.INFO,
            "%s: %s %d in %.2fs",
            describe(state.kind, state.key),
            "wait" if waiting else "retry",
            attempt,
            delay,
            extra={"kind": state.kind.value, "key": "/".join(state.key), "delay": delay},
        )
        loop = asyncio.get_running_loop()
        state.retry_handle = loop.call_later(delay, self._retry_due, state)

    def _requeue(self, state: _ObjectState, delay: float) -> None:
        """Run ``state`` again after exactly ``delay`` (a ``Requeue``): no backoff step,
        no retry counted, logged at debug level since every pass of the wait asks it."""
        self._cancel_retry(state)
        if state.latest is None or not self._accepting:
            return
        log.debug(
            "%s: requeued in %.2fs",
            describe(state.kind, state.key),
            delay,
            extra={"kind": state.kind.value, "key": "/".join(state.key), "delay": delay},
        )
        loop = asyncio.get_running_loop()
        state.retry_handle = loop.call_later(delay, self._retry_due, state)

    def _retry_due(self, state: _ObjectState) -> None:
        state.retry_handle = None
        if not self._accepting or state.latest is None:
            self._track(state)
            return
        state.dirty = True
        state.forced = True
        state.cause = Cause.RETRY
        self._kick(state)

    # --- the worker of one object --------------------------------------------------------

    async def _work(self, state: _ObjectState) -> None:
        try:
            while self._accepting and not self._paused:
                if not state.dirty and not state.timers_due:
                    if state.latest is None:
                        break
                    state.wakeup.clear()
                    await wait_event(state.wakeup, self._settings.queue_idle_timeout)
                    if not state.dirty and not state.timers_due:
                        break
                    continue
                async with self._realm_slot(state), self._slots:
                    if not self._accepting or self._paused:
                        break
                    await self._step(state)
        finally:
            state.worker = None
            if state.latest is None and self._states.get((state.kind, state.key)) is state:
                self._drop(state)
            elif (
                state.waiting
                and self._accepting
                and not self._paused
                and state.retry_handle is None
            ):
                # Work arrived after the idle decision: start a new worker for it.
                self._kick(state)

    @contextlib.asynccontextmanager
    async def _realm_slot(self, state: _ObjectState) -> AsyncIterator[None]:
        """One of the ``realm_workers`` slots of the object's realm (none for a Node)."""
        if state.kind == Kind.NODE or not state.key:
            yield
            return
        realm = state.key[0]
        semaphore, users = self._realm_slots.get(realm, (None, 0))
        if semaphore is None:
            semaphore = asyncio.Semaphore(self._settings.realm_workers)
        self._realm_slots[realm] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._realm_slots[realm]
            if users <= 1:
                del self._realm_slots[realm]
            else:
                self._realm_slots[realm] = (semaphore, users - 1)

    async def _step(self, state: _ObjectState) -> None:
        if state.dirty:
            obj = state.latest
            forced, cause = state.forced, state.cause
            state.dirty = state.forced = False
            self._track(state)
            if obj is None:
                return
            digest = state.latest_digest
            if digest == state.parked_digest or (not forced and digest == state.handled_digest):
                return
            retry = state.failures or state.waits
            current: AnyResource = obj
            waited = state.wait_said
            state.handling = digest
            try:
                outcome = await self._guarded(
                    state,
                    lambda: self._processor.process(
                        current, cause=cause, retry=retry, waited=waited
                    ),
                )
            finally:
                state.handling = None
            self._settle(state, obj, digest, outcome)
        elif state.timers_due:
            name = next(iter(state.timers_due))
            timer = state.timers_due.pop(name)
            self._track(state)
            obj = state.latest
            if obj is None or obj.metadata.deletion_timestamp is not None:
                return
            await self._guarded(state, lambda: self._processor.run_timer(timer, obj))

    async def _guarded(self, state: _ObjectState, run: _Run) -> Outcome:
        """Run one handler pass; a failure of the framework's own store calls is retried."""
        self._running += 1
        try:
            with self.long_passes.running(state.kind, state.key):
                return await run()
        except Exception as error:
            level = logging.WARNING
            if isinstance(error, Unavailable):  # etcd full or out of reach: said as such
                level, _ = self._processor.store_trouble.level(trouble_reason(error))
            log.log(
                level,
                "%s: %s: %s; will retry",
                describe(state.kind, state.key),
                type(error).__name__,
                error,
                extra={"kind": state.kind.value, "key": "/".join(state.key)},
            )
            return Outcome(Result.TEMPORARY, state.latest)
        finally:
            self._running -= 1

    def _settle(
        self, state: _ObjectState, given: AnyResource, given_digest: bytes, outcome: Outcome
    ) -> None:
        handled = outcome.handled
        # The framework's own finalizer write hands the handler a newer version.
        digest = given_digest if handled is None or handled is given else change_digest(handled)
        if outcome.result is Result.GONE:
            return
        state.wait_said = outcome.said if outcome.waiting else None
        if outcome.result in (Result.SUCCESS, Result.SKIPPED):
            self._cancel_retry(state)
            state.failures = state.waits = 0
            state.handled_digest = digest
            state.parked_digest = None
        elif outcome.result is Result.PERMANENT:
            self._cancel_retry(state)
            state.failures = state.waits = 0
            state.handled_digest = digest
            state.parked_digest = digest
        elif outcome.result is Result.REQUEUED:
            # A planned wait ended a pass that did its work: no failure, no wait counted
            # (one that is a step of a retry keeps the failures counted so far).
            if not outcome.keeps_backoff:
                state.failures = 0
            state.waits = 0
            state.handled_digest = digest
            state.parked_digest = None
            self._requeue(state, outcome.delay or 0.0)
        elif state.latest is not None and self._accepting:
            state.handled_digest = digest
            self._schedule_retry(
                state, outcome.delay, waiting=outcome.waiting, at_most=outcome.at_most
            )
            if outcome.waiting_on is not None:
                self._await(state, outcome.waiting_on)
        self._track(state)

    # --- shutdown ------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """No new events, retries or timers; idle workers exit, busy ones finish their run."""
        self._accepting = False
        for state in self._states.values():
            self._cancel_retry(state)
            state.dirty = False
            state.timers_due.clear()
            state.wakeup.set()
            self._track(state)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running handlers, then cancel what is left."""
        workers = [s.worker for s in self._states.values() if s.worker is not None]
        if not workers:
            return
        _, pending = await asyncio.wait(workers, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled %d handler(s) still running after %.1fs", len(pending), grace)
            await asyncio.wait(pending)
