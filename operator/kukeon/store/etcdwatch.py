"""One etcd watch that survives: a stream from a revision, opened again after any failure.

The registry's watches (``watch``) and the Events' (``events``) are both this: one gRPC
watch stream of a key range at a time, decoded response by response by the caller's
``decode``; when the stream breaks (member killed, leader lost, stream cancelled, closed
by etcd) it is opened again from the revision after the last item delivered, so nothing
is lost or repeated, after a backoff (from 50 ms, doubled up to ``RESUME_MAX_SECONDS``,
with jitter: a watch per kind retried 13 times a second per node while etcd was away;
ended early when the client finds an etcd known away back, ``StoreHealth.wait_back``).
Compaction of that revision is ``Gone`` (the caller lists again); etcd unreachable for the
retry budget is ``Unavailable``.

The log says the first failure of a run ("resumes from revision N"), then a summary at
growing intervals ("still cannot resume after N attempts over T s"), and "resumed after
T s" once the stream is open again; each attempt between is at debug level. While etcd
is known away (the client's ``StoreHealth`` said so once) the failures are debug only.

A stream opened from a revision etcd has not reached is a history that went back: etcd was
restored from an older snapshot (or replaced by another at the same address). etcd
accepts such a watch and stays silent until its revision gets there, so every write of
the restored store in between would be missed for good; a linearizable read confirms it
(a member that merely lags is no reason) and the watch ends with ``HistoryRewound``, a
``Gone``: the caller lists again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from kukeon.retrying import Backoff

from .connection import EtcdClient, EtcdConfig, ResolveFailed, is_transient
from .errors import EtcdAway, Gone, HistoryRewound, StoreError, Unavailable
from .health import RETRY_AFTER_SECONDS
from .keys import range_end

log = logging.getLogger(__name__)

T = TypeVar("T")

Decode = Callable[[Any], list[T]]
"""The items of one watch response (its ``events``), in order; may raise ``Gone``."""


class _WatchStreamEndedError(Exception):
    """The server closed or cancelled a watch stream without compaction: resume it."""


HEALTHY_STREAM_SECONDS = 1.0
"""A stream that stayed open this long before it broke was working: its failure starts a
new retry budget."""
RESUME_FIRST_SECONDS = 0.05
RESUME_MAX_SECONDS = 1.0
"""The longest wait between two attempts (halved at most by the jitter): a watch resumes
within about a second of etcd being back, as the API does (an embedded etcd restarted in
under a second must not hold the controllers' events for seconds)."""
RESUME_JITTER = 0.5
SUMMARY_FIRST_SECONDS = 5.0
"""When a watch that cannot resume first says so again (then after twice as long each time)."""


class ResumeReport:
    """What one watch says of a run of failures: the first, summaries at growing intervals,
    and when it resumed; every other attempt at debug level only. ``quiet()`` True (etcd
    known away, said once by the client's health) turns the failures to debug too."""

    def __init__(self, what: str, *, clock: Callable[[], float], quiet: Callable[[], bool]):
        self._what = what
        self._clock = clock
        self._quiet = quiet
        self._since: float | None = None
        self._attempts = 0
        self._next_summary = 0.0
        self._said = False

    def failed(self, next_revision: int, reason: str) -> None:
        now = self._clock()
        self._attempts += 1
        level = logging.DEBUG if self._quiet() else logging.INFO
        if self._since is None:
            self._since, self._next_summary = now, now + SUMMARY_FIRST_SECONDS
            message = f"watch {self._what} resumes from revision {next_revision} ({reason})"
        elif now >= self._next_summary:
            self._next_summary = now + 2 * (now - self._since)
            message = (
                f"watch {self._what} still cannot resume after {self._attempts} attempts "
                f"over {now - self._since:.0f}s (last error: {reason})"
            )
        else:
            log.debug("watch %s: attempt %d failed (%s)", self._what, self._attempts, reason)
            return
        self._said = self._said or level == logging.INFO
        log.log(level, message)

    def resumed(self) -> None:
        """The stream is open again: said once, when a failure was said."""
        if self._since is not None and self._said:
            log.info(
                "watch %s resumed after %.1fs (%d failed attempts)",
                self._what,
                self._clock() - self._since,
                self._attempts,
            )
        self._since, self._attempts, self._said = None, 0, False


def _never() -> bool:
    return False


async def resumable_watch(
    client: EtcdClient,
    config: EtcdConfig,
    prefix: bytes,
    *,
    after: int,
    what: str,
    decode: Decode[T],
    revision_of: Callable[[T], int],
    closed: Callable[[], bool] = _never,
    prev_kv: bool = True,
) -> AsyncGenerator[T, None]:
    """Every item of the changes under ``prefix`` with revision > ``after``.

    ``what`` names the watch in errors and logs; ``closed`` says when the owner of the
    client has closed it (``Unavailable`` then, instead of a retry); ``prev_kv`` whether
    each event carries the key's previous version (the registry's watches need it).
    """
    end = range_end(prefix)
    next_revision = after + 1
    loop = asyncio.get_running_loop()
    backoff = Backoff(RESUME_FIRST_SECONDS, RESUME_MAX_SECONDS, jitter=RESUME_JITTER)
    report = ResumeReport(what, clock=loop.time, quiet=lambda: client.health.away)
    failing_since: float | None = None  # when the current run of failures began
    while True:
        stream = _watch_stream(client, prefix, end, next_revision, what, decode, prev_kv)
        opened = loop.time()
        delivered = False
        try:
            async for batch in stream:
                if not batch:  # etcd created the watch: it is working again
                    report.resumed()
                    continue
                delivered = True
                for item in batch:
                    yield item
                next_revision = revision_of(batch[-1]) + 1
        except grpc.aio.AioRpcError as error:
            if not is_transient(error) and error.code() != grpc.StatusCode.CANCELLED:
                raise StoreError(
                    f"watch {what}: etcd refused the stream ({error.details()})"
                ) from error
            reason = f"{error.code().name}: {error.details()}"
        except (_WatchStreamEndedError, TimeoutError, ResolveFailed) as error:
            reason = str(error) or repr(error)
        finally:
            await stream.aclose()
        if closed():
            raise Unavailable(f"watch {what}: the registry was closed")
        now = loop.time()
        if delivered or now - opened >= HEALTHY_STREAM_SECONDS:
            # That stream worked (however long it was idle): the budget starts at this
            # failure, not at the last event the watch happened to see.
            failing_since = None
            backoff.reset()
        if failing_since is None:
            failing_since = now
        if now + backoff.current - failing_since > config.retry_timeout:
            gave_up = f"watch {what}: etcd unreachable for {config.retry_timeout:g}s ({reason})"
            if client.health.away:  # said once already: the caller need not say it again
                raise EtcdAway(gave_up, retry_after_seconds=RETRY_AFTER_SECONDS)
            raise Unavailable(gave_up)
        report.failed(next_revision, reason)
        await client.health.wait_back(backoff.next())


async def _watch_stream(
    client: EtcdClient,
    prefix: bytes,
    end: bytes,
    start_revision: int,
    what: str,
    decode: Decode[T],
    prev_kv: bool,
) -> AsyncGenerator[list[T], None]:
    """One gRPC watch stream; yields an empty batch when etcd has created the watch, then
    the decoded items of each response that has any."""
    await client.connect()
    create = rpc.WatchRequest(
        create_request=rpc.WatchCreateRequest(
            key=prefix, range_end=end, start_revision=start_revision, prev_kv=prev_kv
        )
    )
    stop = asyncio.Event()

    async def requests() -> AsyncIterator[Any]:
        yield create
        await stop.wait()

    call = client.watchstub.Watch(requests(), metadata=client.metadata)
    responses = call.__aiter__()
    try:
        while True:
            response = await _next_response(responses)
            if response.created and response.header.revision + 1 < start_revision:
                await _check_not_rewound(client, prefix, end, start_revision, what)
            if response.compact_revision:
                raise Gone(
                    f"watch {what} from revision {start_revision}: etcd compacted its history "
                    f"up to revision {response.compact_revision}; list again and watch from "
                    "the list's resourceVersion",
                    compacted_revision=response.compact_revision,
                )
            if response.canceled:
                raise _WatchStreamEndedError(f"cancelled by etcd: {response.cancel_reason}")
            if response.created:
                yield []
            batch = decode(response)
            if batch:
                yield batch
    finally:
        stop.set()
        call.cancel()


async def _check_not_rewound(
    client: EtcdClient, prefix: bytes, end: bytes, start_revision: int, what: str
) -> None:
    """Raise ``HistoryRewound`` if etcd's revision, read linearizably (the member that
    answered the watch may lag), is still below the one before ``start_revision``."""
    reply = await client.kvstub.Range(
        rpc.RangeRequest(key=prefix, range_end=end, count_only=True),
        metadata=client.metadata,
        timeout=client.config.request_timeout,
    )
    current = int(reply.header.revision)
    if current + 1 >= start_revision:
        return
    seen = start_revision - 1
    raise HistoryRewound(
        f"watch {what} from revision {start_revision}: etcd is at revision {current}, behind "
        f"revision {seen} already seen (restored from an older snapshot?); list again and "
        "watch from the list's resourceVersion",
        revision=current,
        seen=seen,
    )


async def _next_response(responses: AsyncIterator[Any]) -> Any:
    try:
        return await anext(responses)
    except StopAsyncIteration:
        raise _WatchStreamEndedError("etcd closed the watch stream") from None
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # our caller is being cancelled, not just the gRPC call
        # grpc.aio cancels the call when the channel closes or is reset.
        raise _WatchStreamEndedError("the watch call was cancelled") from None
