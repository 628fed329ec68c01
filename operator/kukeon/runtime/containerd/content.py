"""containerd's content store as a :class:`~kukeon.runtime.containerd.types.BlobStore`.

The image importer and the registry puller both end by writing blobs here. A write is
streamed (Content.Write: WRITE chunks, then COMMIT with the expected digest and size), and
the digest is also computed on this side, so a blob that does not match is aborted before
containerd stores it. Writing a blob that is already stored is a no-op.

Blobs nothing references are garbage-collected, so writers hold a lease (``lease=``) until
the image that references them exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

import grpc

from kukeon.cancelling import cancel_and_wait
from kukeon.runtime.containerd._gen.services.content.v1 import content_pb2
from kukeon.runtime.containerd._util import to_datetime
from kukeon.runtime.containerd.client import Metadata, Stubs, Subject
from kukeon.runtime.containerd.errors import (
    BlobDigestMismatchError,
    ContainerdCallError,
    ContentNotFoundError,
)
from kukeon.runtime.containerd.oci import DigestVerifier, digest_of

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient


class _Feedable(Protocol):
    def feed(self, chunk: bytes) -> None: ...


_Sink = TypeVar("_Sink", bound=_Feedable)

# containerd's label conventions for content (its docs/garbage-collection.md).
LABEL_UNCOMPRESSED: Final = "containerd.io/uncompressed"
LABEL_GC_REF_CONTENT: Final = "containerd.io/gc.ref.content"
LABEL_GC_REF_SNAPSHOT: Final = "containerd.io/gc.ref.snapshot"
_CHUNK_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ContentInfo:
    digest: str
    size: int
    created_at: datetime | None
    labels: Mapping[str, str] = field(default_factory=dict)


class ContentStore:
    """The content store of one containerd namespace (implements ``BlobStore``)."""

    def __init__(
        self, *, client: ContainerdClient, namespace: str, lease: str | None = None
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.lease = lease

    def with_lease(self, lease: str | None) -> ContentStore:
        return ContentStore(client=self._client, namespace=self.namespace, lease=lease)

    async def info(self, digest: str) -> ContentInfo:
        response = await self._client.call(
            "info",
            lambda s, md: s.content.Info(
                content_pb2.InfoRequest(digest=digest),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("content", digest),
        )
        return _info(response.info)

    async def sizes(self) -> dict[str, int]:
        """Every blob of the namespace and its size as stored (what its images take)."""
        parts = await self._client.collect(
            "list",
            lambda s, md: s.content.List(
                content_pb2.ListContentRequest(), metadata=md, timeout=self._client.call_timeout
            ),
            namespace=self.namespace,
        )
        return {info.digest: info.size for part in parts for info in part.info}

    async def has_blob(self, digest: str) -> bool:
        try:
            await self.info(digest)
        except ContentNotFoundError:
            return False
        return True

    async def read_blob(self, digest: str) -> bytes:
        request = content_pb2.ReadContentRequest(digest=digest)
        parts = await self._client.collect(
            "read",
            lambda s, md: s.content.Read(request, metadata=md, timeout=self._client.call_timeout),
            namespace=self.namespace,
            subject=Subject("content", digest),
        )
        return b"".join(part.data for part in parts)

    async def read_through(self, digest: str, start: Callable[[], _Sink]) -> _Sink:
        """Stream a blob through a sink ``start()`` makes, chunk by chunk in a worker thread,
        keeping nothing: for reading a blob too large to hold. What the sink raises ends
        the read. Read again from the start, through a new sink, if containerd goes away
        midway."""

        async def read(stubs: Stubs, metadata: Metadata) -> _Sink:
            sink = start()
            request = content_pb2.ReadContentRequest(digest=digest)
            async for part in stubs.content.Read(request, metadata=metadata):
                await asyncio.to_thread(sink.feed, part.data)
            return sink

        return await self._client.call(
            "read", read, namespace=self.namespace, subject=Subject("content", digest)
        )

    async def write_blob(
        self,
        *,
        digest: str,
        size: int,
        chunks: AsyncIterator[bytes],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Store a blob, verifying ``digest`` and ``size``; a stored blob is left as is.

        ``chunks`` is consumed once: this call is not retried if containerd goes away
        midway (the caller fetches again). Raises :class:`BlobDigestMismatchError` when the
        bytes do not match, after aborting the partial write.
        """
        if await self.has_blob(digest):
            if labels:
                await self.update_labels(digest, labels)
            return
        ref = f"kukeon-{digest.replace(':', '-')}-{uuid.uuid4().hex[:12]}"
        write = _BlobWrite(ref=ref, digest=digest, size=size, labels=dict(labels or {}))
        metadata = self._client.metadata(self.namespace, lease=self.lease)
        call = self._client.stubs.content.Write(None, metadata=metadata)
        try:
            await write.send(call, chunks)
        except ContainerdCallError as error:
            if error.code == grpc.StatusCode.ALREADY_EXISTS:
                return
            await self._abort(ref)
            raise
        except asyncio.CancelledError:
            call.cancel()
            raise
        except Exception:
            # The source failed or did not match: nothing of it is to be kept. The call
            # is ended first: containerd lets go of the ingest only then, and an abort
            # before that fails ("unlinkat ...: directory not empty").
            await write.close(call)
            await self._abort(ref)
            raise

    async def write_bytes(
        self, data: bytes, *, digest: str | None = None, labels: Mapping[str, str] | None = None
    ) -> str:
        """Store an in-memory blob (manifests, configs); returns its digest."""
        digest = digest or digest_of(data)

        async def one_chunk() -> AsyncIterator[bytes]:
            for start in range(0, len(data), _CHUNK_BYTES):
                yield data[start : start + _CHUNK_BYTES]

        await self.write_blob(digest=digest, size=len(data), chunks=one_chunk(), labels=labels)
        return digest

    async def update_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        """Set these labels on a blob, leaving its other labels alone."""
        request = content_pb2.UpdateRequest(
            info=content_pb2.Info(digest=digest, labels=dict(labels))
        )
        request.update_mask.paths.extend(f"labels.{key}" for key in labels)
        response = await self._client.call(
            "update",
            lambda s, md: s.content.Update(request, metadata=md, timeout=self._client.call_timeout),
            namespace=self.namespace,
            lease=self.lease,
            subject=Subject("content", digest),
        )
        return _info(response.info)

    async def delete(self, digest: str) -> bool:
        try:
            await self._client.call(
                "delete",
                lambda s, md: s.content.Delete(
                    content_pb2.DeleteContentRequest(digest=digest),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                subject=Subject("content", digest),
            )
        except ContentNotFoundError:
            return False
        return True

    async def _abort(self, ref: str) -> None:
        async def abort(stubs: Stubs, metadata: Metadata) -> None:
            try:
                await stubs.content.Abort(
                    content_pb2.AbortRequest(ref=ref),
                    metadata=metadata,
                    timeout=self._client.call_timeout,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    raise

        await self._client.call("abort", abort, namespace=self.namespace)


def _info(message: content_pb2.Info) -> ContentInfo:
    return ContentInfo(
        digest=message.digest,
        size=message.size,
        created_at=to_datetime(message.created_at),
        labels=dict(message.labels),
    )


_WriteCall = grpc.aio.StreamStreamCall[
    content_pb2.WriteContentRequest, content_pb2.WriteContentResponse
]


@dataclass(frozen=True, slots=True)
class _BlobWrite:
    """One blob's ``Write`` stream, sent one request at a time.

    containerd answers every request of a Write before it reads the next, and ends the
    call with its refusal (a full disk: ENOSPC) when one fails. Waiting for each answer
    before sending the next request means that refusal reaches us as its status: a
    request sent while containerd ends the call comes back from grpc.aio as INTERNAL
    "Internal error from Core" instead, and the cause is lost."""

    ref: str
    digest: str
    size: int
    labels: dict[str, str]

    async def send(self, call: _WriteCall, chunks: AsyncIterator[bytes]) -> None:
        """Every chunk, then the commit; what is wrong with the source (its own failure,
        bytes that do not match) is raised before the commit."""
        verifier = DigestVerifier(self.digest, self.size)
        offset = 0
        async with contextlib.aclosing(_read_ahead(chunks)) as ahead:
            async for chunk in ahead:
                verifier.update(chunk)
                await self._exchange(call, self._request(content_pb2.WRITE, offset, data=chunk))
                offset += len(chunk)
        actual = verifier.actual()
        if actual != self.digest or offset != self.size:
            raise BlobDigestMismatchError(
                expected=f"{self.digest} ({self.size} bytes)",
                actual=f"{actual} ({offset} bytes)",
            )
        await self._exchange(call, self._request(content_pb2.COMMIT, offset, labels=self.labels))
        # containerd ends the call after answering the commit (and sends that answer
        # again as it returns): the end is read, not asked for, since done_writing() on
        # a call the server has ended never returns.
        while isinstance(await call.read(), content_pb2.WriteContentResponse):
            pass
        await self._ended(call)

    async def close(self, call: _WriteCall) -> None:
        """End the write without a commit, once containerd waits for the next request."""
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call.done_writing()
            while isinstance(await call.read(), content_pb2.WriteContentResponse):
                pass

    def _request(
        self,
        action: content_pb2.WriteAction.ValueType,
        offset: int,
        *,
        data: bytes = b"",
        labels: dict[str, str] | None = None,
    ) -> content_pb2.WriteContentRequest:
        return content_pb2.WriteContentRequest(
            action=action,
            ref=self.ref,
            total=self.size,
            expected=self.digest,
            offset=offset,
            data=data,
            labels=labels,
        )

    async def _exchange(self, call: _WriteCall, request: content_pb2.WriteContentRequest) -> None:
        try:
            await call.write(request)
            answer = await call.read()
        except grpc.aio.AioRpcError as error:
            raise self._refusal(error.code(), error.details()) from error
        if not isinstance(answer, content_pb2.WriteContentResponse):  # grpc.aio.EOF
            await self._ended(call)
            raise self._refusal(grpc.StatusCode.UNKNOWN, "the write ended before its commit")

    async def _ended(self, call: _WriteCall) -> None:
        """The call's status, raised unless it is OK."""
        code = await call.code()
        if code != grpc.StatusCode.OK:
            raise self._refusal(code, await call.details())

    def _refusal(self, code: grpc.StatusCode, detail: str | None) -> ContainerdCallError:
        return ContainerdCallError(
            operation=f"write content {self.digest}", code=code, detail=detail or ""
        )


async def _read_ahead(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """``chunks`` without empty ones, the next read while the last is written: the source
    (a file read in a thread, a registry's body) works while containerd writes, as it did
    when requests were streamed without waiting for answers."""

    async def following() -> bytes | None:
        async for chunk in chunks:
            if chunk:
                return chunk
        return None

    ahead = asyncio.create_task(following())
    try:
        while (chunk := await ahead) is not None:
            ahead = asyncio.create_task(following())
            yield chunk
    finally:
        if not ahead.done():  # the write ended early: the source's read is not wanted
            await cancel_and_wait(ahead)
