"""One etcd watch that survives: a stream from a revision, opened again after any failure.

The registry's watches (``watch``) and the Events' (``events``) are both this: one gRPC
watch stream of a key range at a time, decoded response by response by the caller's
``decode``; when the stream breaks (member killed, leader lost, stream cancelled, closed
by etcd) it is opened again from the revision after the last item delivered, so nothing
is lost or repeated, after a short backoff. Compaction of that revision is ``Gone`` (the
caller lists again); etcd unreachable for the retry budget is ``Unavailable``.

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
from .errors import Gone, HistoryRewound, StoreError, Unavailable
from .keys import range_end

log = logging.getLogger(__name__)

T = TypeVar("T")

Decode = Callable[[Any], list[T]]
"""The items of one watch response (its ``events``), in order; may raise ``Gone``."""


class _WatchStreamEndedError(Exception):
    """The server closed or cancelled a watch stream without compaction: resume it."""


HEALTHY_STREAM_SECONDS = 1.0
"""A stream that stayed open this long before it broke was working (the longest backoff
wait is 1 s): its failure starts a new retry budget."""


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
    backoff = Backoff(0.05, 1.0)
    failing_since: float | None = None  # when the current run of failures began
    while True:
        stream = _watch_stream(client, prefix, end, next_revision, what, decode, prev_kv)
        opened = loop.time()
        delivered = False
        try:
            async for batch in stream:
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
            raise Unavailable(
                f"watch {what}: etcd unreachable for {config.retry_timeout:g}s ({reason})"
            )
        log.info("watch %s resumes from revision %d (%s)", what, next_revision, reason)
        await backoff.sleep()


async def _watch_stream(
    client: EtcdClient,
    prefix: bytes,
    end: bytes,
    start_revision: int,
    what: str,
    decode: Decode[T],
    prev_kv: bool,
) -> AsyncGenerator[list[T], None]:
    """One gRPC watch stream; yields the decoded items of each response that has any."""
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
