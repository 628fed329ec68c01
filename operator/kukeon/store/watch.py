"""Watches of the registry: every change of a kind under a scope, resumed across failures.

A watch is one etcd watch stream at a time; when it breaks (member killed, leader lost,
stream cancelled) it is opened again from the revision after the last one delivered, so
nothing is lost or repeated. Compaction is ``Gone`` (the caller relists). Invalid
documents do not exist for a watcher, as for a list (``_watch_event``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal, NamedTuple

import grpc
from aetcd import rpc

from kukeon.api import AnyResource, Kind

from .connection import is_transient
from .errors import Gone, StoreError, Unavailable
from .keys import range_end
from .registrybase import RegistryBase
from .txn import Stored

log = logging.getLogger(__name__)


class WatchEvent(NamedTuple):
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: AnyResource
    revision: int


_Batch = list[WatchEvent]


class _WatchStreamEndedError(Exception):
    """The server closed or cancelled a watch stream without compaction: resume it."""


class RegistryWatch(RegistryBase):
    """watch: the changes after a revision, as the registry's own events."""

    async def watch(
        self,
        kind: Kind,
        scope: tuple[str, ...] = (),
        *,
        resource_version: int,
    ) -> AsyncIterator[WatchEvent]:
        """Every change of ``kind`` under ``scope`` with revision > ``resource_version``.

        Survives a killed member or a leader change: the stream is opened again from the
        revision after the last one delivered, so nothing is lost or repeated. Raises
        ``Gone`` when etcd no longer has that history (relist, then watch from the list's
        resourceVersion) and ``Unavailable`` when etcd stays unreachable for the retry budget.
        """
        prefix = self._layout.scope_prefix(kind, scope).encode()
        end = range_end(prefix)
        next_revision = resource_version + 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.retry_timeout
        delay = 0.05
        while True:
            stream = self._watch_stream(kind, prefix, end, next_revision)
            try:
                async for batch in stream:
                    deadline = loop.time() + self._config.retry_timeout
                    delay = 0.05
                    for event in batch:
                        yield event
                    next_revision = batch[-1].revision + 1
            except grpc.aio.AioRpcError as error:
                if not is_transient(error) and error.code() != grpc.StatusCode.CANCELLED:
                    raise StoreError(
                        f"watch {kind.value}: etcd refused the stream ({error.details()})"
                    ) from error
                reason = f"{error.code().name}: {error.details()}"
            except (_WatchStreamEndedError, TimeoutError) as error:
                reason = str(error) or repr(error)
            finally:
                await stream.aclose()
            if self._closed:
                raise Unavailable(f"watch {kind.value}: the registry was closed")
            if loop.time() + delay > deadline:
                raise Unavailable(
                    f"watch {kind.value}: etcd unreachable for {self._config.retry_timeout:g}s "
                    f"({reason})"
                )
            log.info("watch %s resumes from revision %d (%s)", kind.value, next_revision, reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _watch_stream(
        self, kind: Kind, prefix: bytes, end: bytes, start_revision: int
    ) -> AsyncGenerator[_Batch, None]:
        """One gRPC watch stream; yields the decoded events of each response."""
        await self._client.connect()
        create = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=prefix, range_end=end, start_revision=start_revision, prev_kv=True
            )
        )
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield create
            await stop.wait()

        call = self._client.watchstub.Watch(requests(), metadata=self._client.metadata)
        responses = call.__aiter__()
        try:
            while True:
                response = await self._next_response(responses)
                if response.compact_revision:
                    raise Gone(
                        f"watch from revision {start_revision}: etcd compacted its history up "
                        f"to revision {response.compact_revision}; list again and watch from "
                        "the list's resourceVersion",
                        compacted_revision=response.compact_revision,
                    )
                if response.canceled:
                    raise _WatchStreamEndedError(f"cancelled by etcd: {response.cancel_reason}")
                decoded = [self._watch_event(kind, event) for event in response.events]
                batch = [event for event in decoded if event is not None]
                if batch:
                    yield batch
        finally:
            stop.set()
            call.cancel()

    @staticmethod
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

    def _watch_event(self, kind: Kind, event: Any) -> WatchEvent | None:
        """The event as a watcher sees it; None for a change it must not see.

        Invalid documents do not exist for a watcher (as for a list): an object whose new
        version is invalid is DELETED (with its last valid version), one whose invalid
        version becomes valid is ADDED, and changes between invalid versions are skipped.
        """
        kv = event.kv
        previous = event.prev_kv if event.HasField("prev_kv") else None
        if event.type == rpc.Event.EventType.DELETE:
            if previous is None:
                raise Gone(
                    f"the last state of deleted {kv.key.decode()!r} is compacted; list again",
                    compacted_revision=kv.mod_revision,
                )
            self._documents.forget(kv.key)
            was_invalid = self._invalid.was_invalid(kv.key, previous.mod_revision)
            last = (
                None if was_invalid else self._codec.last_version(kind, previous, kv.mod_revision)
            )
            self._invalid.valid(kv.key, kv.mod_revision)
            if last is None:
                return None  # never delivered: nothing to delete for the watcher
            return WatchEvent("DELETED", last, kv.mod_revision)
        created = kv.create_revision == kv.mod_revision
        was_invalid = previous is not None and self._invalid.was_invalid(
            kv.key, previous.mod_revision
        )
        current = self._codec.decoded(kind, kv.key, kv.value, kv.mod_revision)
        if isinstance(current, str):
            self._documents.forget(kv.key)
            if created or previous is None or was_invalid:
                return None
            # The watcher holds the previous version: to it the object is gone now.
            last = self._codec.last_version(kind, previous, kv.mod_revision)
            if last is None:
                return None
            return WatchEvent("DELETED", last, kv.mod_revision)
        # Controllers update what they were just told about: spare them the read.
        self._documents.remember(kv.key, Stored(kv.value, kv.mod_revision))
        kind_of_change: Literal["ADDED", "MODIFIED"] = (
            "ADDED" if created or was_invalid else "MODIFIED"
        )
        return WatchEvent(kind_of_change, current, kv.mod_revision)
