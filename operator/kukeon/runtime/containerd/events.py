"""containerd's event stream as an async iterator that survives containerd restarts.

Controllers learn about exits and OOM kills here instead of polling. The stream sees every
namespace (each event names its own). It starts with :class:`Subscribed` once containerd has
registered the subscription. When containerd goes away the iterator re-subscribes once it
answers again and yields ``Subscribed(reconnected=True)``: events in between are lost, so a
consumer must re-read the state it cares about (``tasks.get``) at that point.

containerd wraps each event in an Any whose type_url is the bare message name
(``containerd.events.TaskExit``), which ``Any.Unpack`` does not accept; events are decoded
by that name instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from kukeon.retrying import Backoff
from kukeon.runtime.containerd._gen.services.events.v1 import container_pb2, events_pb2, task_pb2
from kukeon.runtime.containerd._util import to_datetime
from kukeon.runtime.containerd.errors import (
    ContainerdCallError,
    ContainerdError,
    ContainerdUnavailableError,
)

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient

TOPIC_TASK_CREATE: Final = "/tasks/create"
TOPIC_TASK_START: Final = "/tasks/start"
TOPIC_TASK_EXIT: Final = "/tasks/exit"
TOPIC_TASK_OOM: Final = "/tasks/oom"
TOPIC_TASK_DELETE: Final = "/tasks/delete"
TOPIC_CONTAINER_DELETE: Final = "/containers/delete"
# A subscriber publishes a marker on its own topic until it sees it come back.
SYNC_TOPIC_PREFIX: Final = "/kukeon/subscribed"
SYNC_TYPE_URL: Final = "kukeon.io/events/SubscriptionSync"

_RESUMABLE_CODES: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}
)


def topic_filter(topic: str, *, namespace: str | None = None) -> str:
    """A Subscribe filter for one topic, optionally in one namespace."""
    expression = f'topic=="{topic}"'
    if namespace is not None:
        expression = f'namespace=="{namespace}",{expression}'
    return expression


def task_lifecycle_filters(*, namespace: str | None = None) -> tuple[str, ...]:
    """Filters for what a cell controller watches: exits and OOM kills."""
    return (
        topic_filter(TOPIC_TASK_EXIT, namespace=namespace),
        topic_filter(TOPIC_TASK_OOM, namespace=namespace),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    namespace: str
    topic: str
    timestamp: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCreated(Event):
    container_id: str
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(Event):
    container_id: str
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskExited(Event):
    container_id: str
    # The init process's id equals container_id; an exec'd process carries its exec id.
    id: str
    pid: int
    exit_status: int
    exited_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOOM(Event):
    container_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDeleted(Event):
    container_id: str
    pid: int
    exit_status: int
    exited_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerDeleted(Event):
    container_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherEvent(Event):
    type_url: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The subscription is live on containerd: events after this point will be delivered.

    ``reconnected`` is True when the stream had been cut (containerd restarted): events
    published in between were missed, so the consumer must re-read the state it follows.
    """

    reconnected: bool


@dataclass(frozen=True, slots=True)
class _Envelope:
    namespace: str
    topic: str
    timestamp: datetime | None


def decode_envelope(envelope: events_pb2.Envelope) -> Event:
    """The typed event of an envelope (OtherEvent for kinds kukeon does not decode)."""
    common = _Envelope(
        namespace=envelope.namespace,
        topic=envelope.topic,
        timestamp=to_datetime(envelope.timestamp),
    )
    type_name = envelope.event.type_url.rpartition("/")[2]
    payload = envelope.event.value
    decoder = _DECODERS.get(type_name)
    if decoder is not None:
        try:
            return decoder(payload, common)
        except DecodeError:
            pass
    return OtherEvent(
        namespace=common.namespace,
        topic=common.topic,
        timestamp=common.timestamp,
        type_url=envelope.event.type_url,
        payload=payload,
    )


def _task_exit(payload: bytes, common: _Envelope) -> Event:
    message = task_pb2.TaskExit.FromString(payload)
    return TaskExited(
        namespace=common.namespace,
        topic=common.topic,
        timestamp=common.timestamp,
        container_id=message.container_id,
        id=message.id,
        pid=message.pid,
        exit_status=message.exit_status,
        exited_at=to_datetime(message.exited_at),
    )


def _task_oom(payload: bytes, common: _Envelope) -> Event:
    message = task_pb2.TaskOOM.FromString(payload)
    return TaskOOM(
        namespace=common.namespace,
        topic=common.topic,
        timestamp=common.timestamp,
        container_id=message.container_id,
    )


def _task_start(payload: bytes, common: _Envelope) -> Event:
    message = task_pb2.TaskStart.FromString(payload)
    return TaskStarted(
        namespace=common.namespace,
        topic=common.topic,
        timestamp=common.timestamp,
        container_id=message.container_id,
        pid=message.pid,
    )


def _task_create(payload: bytes, common: _Envelope) -> Event:
    message = task_pb2.TaskCreate.FromString(payload)
    return TaskCreated(
        namespace=common.namespace,
        topic=common.topic,
        timestamp=common.timestamp,
        container_id=message.container_id,
        pid=message.pid,
    )


def _task_delete(payload: bytes, common: _Envelope) -> Event:
    message = task_pb2.TaskDelete.FromString(payload)
    return TaskDeleted(
        namespace=common.namespace,
        topic=common.topic,
        timestamp=common.timestamp,
        container_id=message.container_id,
        pid=message.pid,
        exit_status=message.exit_status,
        exited_at=to_datetime(message.exited_at),
    )


def _container_delete(payload: bytes, common: _Envelope) -> Event:
    message = container_pb2.ContainerDelete.FromString(payload)
    return ContainerDeleted(
        namespace=common.namespace,
        topic=common.topic,
        timestamp=common.timestamp,
        container_id=message.id,
    )


_DECODERS: Final[dict[str, Callable[[bytes, _Envelope], Event]]] = {
    "containerd.events.TaskExit": _task_exit,
    "containerd.events.TaskOOM": _task_oom,
    "containerd.events.TaskStart": _task_start,
    "containerd.events.TaskCreate": _task_create,
    "containerd.events.TaskDelete": _task_delete,
    "containerd.events.ContainerDelete": _container_delete,
}


class EventService:
    def __init__(self, *, client: ContainerdClient) -> None:
        self._client = client

    async def subscribe(
        self, *filters: str, max_backoff: float = 2.0
    ) -> AsyncGenerator[Event | Subscribed]:
        """Events matching any of ``filters`` (all events without any), forever.

        Within one filter a comma means AND. The first item is always
        :class:`Subscribed`, yielded once containerd has registered the subscription (so
        an action taken after it cannot be missed); another one follows every reconnection.
        Cancel the consuming task (or ``aclose()`` the iterator) to stop.
        """
        backoff = Backoff(0.05, max_backoff)
        failures = 0
        reconnected = False
        while True:
            generation = self._client.generation
            sync_topic = f"{SYNC_TOPIC_PREFIX}/{secrets.token_hex(8)}"
            wanted = [*filters, f'topic=="{sync_topic}"'] if filters else []
            call = self._client.stubs.events.Subscribe(
                events_pb2.SubscribeRequest(filters=wanted), metadata=self._client.metadata(None)
            )
            announcing = asyncio.ensure_future(self._announce(sync_topic))
            announced = False
            try:
                async for envelope in call:
                    if envelope.topic == sync_topic:
                        if not announced:
                            announced = True
                            announcing.cancel()
                            failures = 0
                            backoff.reset()
                            yield Subscribed(reconnected=reconnected)
                        continue
                    yield decode_envelope(envelope)
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RESUMABLE_CODES:
                    raise ContainerdCallError(
                        operation="subscribe to events",
                        code=error.code(),
                        detail=error.details() or "",
                    ) from error
            finally:
                announcing.cancel()
                call.cancel()
            # Cut (or ended by a shutting-down containerd): wait for it to answer again.
            failures += 1
            if failures % 3 == 0:
                self._client.redial(generation=generation)
            await backoff.sleep()
            await self._wait_for_daemon()
            reconnected = True

    async def _announce(self, topic: str) -> None:
        """Publish a marker until the subscription sees it: proof that it is registered."""
        request = events_pb2.PublishRequest(
            topic=topic, event=any_pb2.Any(type_url=SYNC_TYPE_URL, value=b"")
        )
        while True:
            with contextlib.suppress(ContainerdError):
                await self._client.call(
                    "publish",
                    lambda s, md: s.events.Publish(
                        request, metadata=md, timeout=self._client.call_timeout
                    ),
                    namespace=None,
                )
            await asyncio.sleep(0.1)

    async def _wait_for_daemon(self) -> None:
        while True:
            try:
                await self._client.version()
                return
            except ContainerdUnavailableError:
                continue
