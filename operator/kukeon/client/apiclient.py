"""A typed async client of the API, over the local unix socket or HTTPS with a token.

kukectl is built on it, and so can be anything else that drives kukeon: every call takes
and returns ``kukeon.api`` models, and every failure is one of two exceptions --
``ApiRequestError`` carrying the server's Status (code, reason, message, field causes) or
``ServerUnreachable`` naming the address that could not be reached.

Servers are written ``unix:///run/kukeon/kukeond.sock`` (or a bare absolute path) and
``https://host:port``; plain ``http://`` is refused, the server never offers it on TCP.

Its parts, one concept each, are modules of their own, their names importable from here
as before: the address (``address``), the errors and the decoding of an answer
(``errors``), the wait and retry of a 429 (``busy``) and the opening of long-running
requests (``streams``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeVar
from urllib.parse import quote, urlencode

from kukeon.api.fieldterms import term
from kukeon.api.names import Kind
from kukeon.client.address import DEFAULT_SERVER, ServerAddress, ServerAddressError, parse_server
from kukeon.client.answers import (
    Documents,
    compact_json,
    list_items,
    parse_object,
    print_warning,
    warning_text,
    warning_texts,
    watch_event,
)
from kukeon.client.busy import BUSY_RETRIES, BUSY_RETRY_SECONDS, TOO_MANY_REQUESTS, BusyRetry
from kukeon.client.errors import (
    SHOWN_BYTES,
    ApiRequestError,
    ServerUnreachable,
    StatusCause,
    UnreadableAnswer,
    decode_answer,
    malformed_answer,
)
from kukeon.client.httpexchange import (
    MalformedAnswerError,
    NoAnswerError,
    encode_request,
    exchange,
)
from kukeon.client.mergepatch import MERGE_PATCH_CONTENT_TYPE
from kukeon.client.paths import collection_path, object_path
from kukeon.client.streams import WebSocketOpening, open_response, reading_answer

if TYPE_CHECKING:
    import aiohttp

    from kukeon.api import AnyResource

# The models (``kukeon.api``: pydantic, every kind) load when a call first parses or sends
# one: a client that reads documents only (``list_documents``) never defines them.

CONNECT_TIMEOUT = 10.0  # seconds to connect (and for TLS to be set up), pooled or not
_WRITES = frozenset({"POST", "PUT", "PATCH"})

__all__ = [
    "BUSY_RETRIES",
    "BUSY_RETRY_SECONDS",
    "CONNECT_TIMEOUT",
    "DEFAULT_SERVER",
    "TOO_MANY_REQUESTS",
    "ApiClient",
    "ApiRequestError",
    "BusyRetry",
    "ClientWatchEvent",
    "Documents",
    "ObjectList",
    "ServerAddress",
    "ServerAddressError",
    "ServerUnreachable",
    "StatusCause",
    "SyncApiClient",
    "list_items",
    "parse_object",
    "parse_server",
    "print_warning",
    "warning_text",
    "warning_texts",
    "watch_event",
]

T = TypeVar("T")


class ClientWatchEvent(NamedTuple):
    """One event of a watch; BOOKMARKs carry only ``resource_version``."""

    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: AnyResource | None
    resource_version: int


class ObjectList(NamedTuple):
    items: list[AnyResource]
    resource_version: int


def _fields(name: str | None, field_selector: str | None) -> str:
    """One ``fieldSelector``: the object's name (a watch of one object; escaped, so a name
    with ``,`` or ``=`` is one value, never more terms) and the caller's."""
    terms = [term("metadata.name", name)] if name else []
    if field_selector:
        terms.append(field_selector)
    return ",".join(terms)


def _spec_write(document: dict[str, Any]) -> dict[str, Any]:
    """A create's or an update's body: without status, which the server keeps as stored (a
    server of another version may not know every status field this client's models have)."""
    return {key: value for key, value in document.items() if key != "status"}


class ApiClient:
    """Async client; use as ``async with ApiClient(server=...) as client``.

    ``pooled`` (the default) sends every request through one aiohttp session, its
    connections kept open and shared by concurrent requests. With ``pooled=False`` a plain
    request (``request`` and everything built on it: get, list, create, ...) has a
    connection of its own (:mod:`~kukeon.client.httpexchange`), so a short-lived
    caller such as kukectl never loads aiohttp unless it streams, uploads, watches or opens
    a WebSocket; the address, token, TLS and timeout mean the same either way.

    ``timeout`` bounds each plain request (not a stream, watch, upload or WebSocket); None
    is no limit (kubectl's ``--request-timeout=0``).
    """

    def __init__(
        self,
        *,
        server: str = DEFAULT_SERVER,
        token: str | None = None,
        ca_file: Path | None = None,
        timeout: float | None = 30.0,
        pooled: bool = True,
    ) -> None:
        self.address = parse_server(server)
        self.on_warning: Callable[[str], None] = print_warning
        """What to do with a server's ``Warning`` (kubectl prints it on stderr)."""
        self._token = token
        self._ca_file = ca_file
        self._timeout = timeout
        self._pooled = pooled
        self._session: aiohttp.ClientSession | None = None
        self.busy = BusyRetry()
        """How a 429 is waited out, for requests and long-running opens alike."""
        self.field_validation: str | None = None
        """Sent as ``fieldValidation`` on every create, update and patch when set (``Warn``,
        ``Ignore``; kukectl's ``--validate``); unset, the server's default (``Strict``)."""
        self.last_answer: tuple[str, bytes, int] | None = None
        """The last successful answer to a JSON request: the request (``GET /apis/...``),
        its first bytes and its length, for saying which answer a caller could not read."""

    # --- session -------------------------------------------------------------------------

    def _connector(self) -> aiohttp.BaseConnector:
        import aiohttp  # on first use: kukectl's commands without a server never load it

        if self.address.scheme == "unix":
            return aiohttp.UnixConnector(path=self.address.location)
        return aiohttp.TCPConnector(ssl=self._tls_context())

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ServerUnreachable(f"cannot load CA file {self._ca_file}: {exc}") from exc

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp  # on first use: kukectl's commands without a server never load it

        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self.address.base_url,
                connector=self._connector(),
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        if self._pooled:
            self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- transport -----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        plain_text: bool = False,
    ) -> Any:
        """One request; the decoded JSON answer (an object: anything else is an
        ``UnreadableAnswer`` naming the request; its text for ``plain_text``), or
        ApiRequestError/ServerUnreachable.

        A 429 (the server answering as many requests as it takes) is asked again after its
        ``Retry-After``, a few times, as kubectl does (``busy``): nothing of the request
        was done."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        if self.field_validation and method in _WRITES:
            params = {**(params or {}), "fieldValidation": self.field_validation}
        described = None if plain_text else f"{method} {path}"
        return await self.busy.call(
            lambda: self._request_once(method, path, params, data, headers, described)
        )

    async def _request_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str],
        described: str | None,
    ) -> Any:
        if not self._pooled:
            return await self._request_alone(method, path, params, data, headers, described)
        import aiohttp  # on first use: kukectl's commands without a server never load it

        session = self._open()
        try:
            with reading_answer(f"{method} {path}"):
                async with session.request(
                    method,
                    path,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(
                        total=self._timeout, sock_connect=CONNECT_TIMEOUT
                    ),
                ) as response:
                    raw = await response.read()
                    self._warned(response.headers.getall("Warning", ()))
                    return self._answered(
                        described,
                        response.status,
                        response.reason,
                        raw,
                        response.headers.get("Retry-After"),
                    )
        except aiohttp.ClientConnectionError as exc:
            raise ServerUnreachable(
                f"cannot reach the kukeon API at {self.address}: {exc}"
            ) from exc
        except TimeoutError as exc:
            raise self._timed_out(exc) from exc

    async def _request_alone(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str],
        described: str | None,
    ) -> Any:
        """``request`` on a connection of its own (``pooled=False``)."""
        unix = self.address.scheme == "unix"
        host, _, port = self.address.location.rpartition(":")
        if unix or not port.isdigit():
            host, port = self.address.location, "443"
        message = encode_request(
            method,
            path + (f"?{urlencode(params, quote_via=quote)}" if params else ""),
            host="kukeond" if unix else self.address.location,
            headers={**self._headers(), **headers},
            body=data,
        )
        tls = None if unix else self._tls_context()
        try:
            async with asyncio.timeout(self._timeout):
                answer = await exchange(
                    unix_path=self.address.location if unix else None,
                    host=host.strip("[]"),
                    port=int(port),
                    tls=tls,
                    connect_timeout=CONNECT_TIMEOUT,
                    request=message,
                )
        except TimeoutError as exc:
            raise self._timed_out(exc) from exc
        except MalformedAnswerError as exc:
            # Reached and answered: said as the answer it is, not as "cannot reach".
            raise malformed_answer(f"{method} {path}", exc.answer_is) from exc
        except NoAnswerError as exc:
            raise ServerUnreachable(
                f"the kukeon API at {self.address} closed the connection without answering "
                f"{method} {path}"
            ) from exc
        except OSError as exc:
            raise ServerUnreachable(
                f"cannot reach the kukeon API at {self.address}: {exc}"
            ) from exc
        self._warned(answer.warnings)
        return self._answered(
            described, answer.status, answer.reason, answer.body, answer.retry_after
        )

    def _answered(
        self,
        described: str | None,
        status: int,
        reason: str | None,
        raw: bytes,
        retry_after: str | None,
    ) -> Any:
        """``decode_answer``, the answer kept as ``last_answer`` first."""
        if described is not None and status < 400:
            self.last_answer = (described, raw[:SHOWN_BYTES], len(raw))
        return decode_answer(status, reason, raw, retry_after=retry_after, request=described)

    def _timed_out(self, exc: TimeoutError) -> ServerUnreachable:
        if self._timeout is None:  # not ours: the system's (ETIMEDOUT is a TimeoutError)
            return ServerUnreachable(f"cannot reach the kukeon API at {self.address}: {exc}")
        return ServerUnreachable(
            f"the kukeon API at {self.address} did not answer within {self._timeout:g}s"
        )

    def _warned(self, headers: Sequence[str]) -> None:
        for header in headers:
            for text in warning_texts(header):
                self.on_warning(text)

    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        on_headers: Callable[[Mapping[str, str]], None] | None = None,
    ) -> AsyncIterator[bytes]:
        """The answer's body chunk by chunk, as the server sends it (logs, follow mode);
        ``on_headers`` is given the answer's headers before its first chunk.

        No total timeout: a followed stream lasts as long as the caller reads it. A 429 at
        the open is waited out as a request's (``busy``).
        """
        import aiohttp  # on first use: kukectl's commands without a server never load it

        try:
            response = await open_response(self._open(), self.busy, method, path, params=params)
            async with response:
                if on_headers is not None:
                    on_headers(response.headers)
                async for chunk in response.content.iter_any():
                    yield chunk
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # A server gone mid-stream (kukeond restarted under `logs -f`) cuts the body:
            # a payload error, not a connection error; said as a watch's break is.
            raise ServerUnreachable(f"stream from {self.address} broke: {exc}") from exc

    async def upload(
        self,
        path: str,
        file: Path,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> Any:
        """POST a file as the request body, streamed from disk; the decoded JSON answer.
        A 429 (an upload is long-running) is waited out and the file sent again whole."""
        import aiohttp  # on first use: kukectl's commands without a server never load it

        session = self._open()

        async def once() -> Any:
            handle = await asyncio.to_thread(file.open, "rb")  # OSError: the caller's problem
            try:
                with reading_answer(f"POST {path}"):
                    async with session.post(
                        path, params=params, data=handle, headers={"Content-Type": content_type}
                    ) as response:
                        raw = await response.read()
                        retry_after = response.headers.get("Retry-After")
                        return self._answered(
                            f"POST {path}", response.status, response.reason, raw, retry_after
                        )
            finally:
                await asyncio.to_thread(handle.close)

        try:
            return await self.busy.call(once)
        except aiohttp.ClientConnectionError as exc:
            raise ServerUnreachable(
                f"cannot reach the kukeon API at {self.address}: {exc}"
            ) from exc

    def websocket(self, path: str, *, params: Sequence[tuple[str, str]] = ()) -> WebSocketOpening:
        """Open a WebSocket on ``path`` (exec, attach, cp, port-forward): awaited, or as
        ``async with client.websocket(...)``. A 429 at the upgrade is waited out (``busy``);
        ApiRequestError once the retries are spent."""
        return WebSocketOpening(self._open(), self.busy, path, params, str(self.address))

    # --- resources -----------------------------------------------------------------------

    async def get(self, kind: Kind, key: Sequence[str]) -> AnyResource:
        document = await self.get_document(kind, key)
        return parse_object(document, f"GET {object_path(kind, key)}")

    async def get_document(self, kind: Kind, key: Sequence[str]) -> dict[str, Any]:
        """As ``get``, the object as the server wrote it (a JSON object, not validated)."""
        path = object_path(kind, key)
        document: dict[str, Any] = await self.request("GET", path)
        if document.get("kind") != kind.value:
            raise UnreadableAnswer(f"GET {path}", f"not a {kind.value}", compact_json(document))
        return document

    async def list(
        self,
        kind: Kind,
        scope: Sequence[str] = (),
        *,
        label_selector: str | None = None,
        name: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        documents, revision = await self.list_documents(
            kind, scope, label_selector=label_selector, name=name, field_selector=field_selector
        )
        listed = f"GET {collection_path(kind, scope)}"
        return ObjectList([parse_object(item, listed) for item in documents], revision)

    async def list_documents(
        self,
        kind: Kind,
        scope: Sequence[str] = (),
        *,
        label_selector: str | None = None,
        name: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[Documents, int]:
        """As ``list``, the items as the server wrote them (JSON objects, not validated)
        and the list's resourceVersion: for a reader that only shows them."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if fields := _fields(name, field_selector):
            params["fieldSelector"] = fields
        path = collection_path(kind, scope)
        document = await self.request("GET", path, params=params)
        return list_items(document, f"GET {path}")

    @staticmethod
    def _dry(dry_run: bool) -> dict[str, str]:
        return {"dryRun": "All"} if dry_run else {}

    async def create(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        from kukeon.api import key_of, to_request_document

        kind = Kind(res.kind)
        scope = key_of(res)[:-1]
        path = collection_path(kind, scope)
        document = await self.request(
            "POST", path, params=self._dry(dry_run), body=_spec_write(to_request_document(res))
        )
        return parse_object(document, f"POST {path}")

    async def update(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        from kukeon.api import key_of, to_request_document

        path = object_path(Kind(res.kind), key_of(res))
        document = await self.request(
            "PUT", path, params=self._dry(dry_run), body=_spec_write(to_request_document(res))
        )
        return parse_object(document, f"PUT {path}")

    async def update_status(self, res: AnyResource) -> AnyResource:
        from kukeon.api import key_of, to_document

        path = object_path(Kind(res.kind), key_of(res), "status")
        document = await self.request("PUT", path, body=to_document(res))
        return parse_object(document, f"PUT {path}")

    async def patch(
        self,
        kind: Kind,
        key: Sequence[str],
        patch: Mapping[str, Any],
        *,
        status: bool = False,
        dry_run: bool = False,
    ) -> AnyResource:
        """Apply a JSON merge patch (RFC 7386) to the object or its status."""
        path = object_path(kind, key, "status" if status else None)
        document = await self.request(
            "PATCH",
            path,
            params=self._dry(dry_run),
            body=dict(patch),
            content_type=MERGE_PATCH_CONTENT_TYPE,
        )
        return parse_object(document, f"PATCH {path}")

    async def delete(
        self,
        kind: Kind,
        key: Sequence[str],
        *,
        cascade: bool = False,
        dry_run: bool = False,
        grace_seconds: int | None = None,
    ) -> AnyResource | None:
        """Delete; the object (now with a deletionTimestamp) while finalizers hold it, else
        None. ``grace_seconds``: a cell's stop grace for this deletion (kubectl's
        ``--grace-period``)."""
        params = self._dry(dry_run)
        if cascade:
            params["propagationPolicy"] = "Foreground"
        if grace_seconds is not None:
            params["gracePeriodSeconds"] = str(grace_seconds)
        path = object_path(kind, key)
        document = await self.request("DELETE", path, params=params)
        if isinstance(document, Mapping) and document.get("kind") == "Status":
            return None
        return parse_object(document, f"DELETE {path}")

    async def watch(
        self,
        kind: Kind,
        scope: Sequence[str] = (),
        *,
        resource_version: int | None = None,
        label_selector: str | None = None,
        name: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[ClientWatchEvent]:
        """Events of ``kind`` under ``scope``; without a resource_version, existing objects
        come first as ADDED. An ERROR event (e.g. 410 after compaction) raises
        ApiRequestError; a 429 at the open is waited out as a request's (``busy``)."""
        import aiohttp  # on first use: kukectl's commands without a server never load it

        params: dict[str, str] = {"watch": "true"}
        if resource_version is not None:
            params["resourceVersion"] = str(resource_version)
        if label_selector:
            params["labelSelector"] = label_selector
        if fields := _fields(name, field_selector):
            params["fieldSelector"] = fields
        if timeout_seconds is not None:
            params["timeoutSeconds"] = f"{timeout_seconds:g}"
        path = collection_path(kind, scope)
        watched = f"GET {path}?watch=true"
        try:
            response = await open_response(self._open(), self.busy, "GET", path, params=params)
            async with response:
                async for line in response.content:
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError as exc:  # a line cut short by a dropped connection
                        raise ServerUnreachable(f"watch on {self.address} broke: {exc}") from exc
                    event_type, obj, revision = watch_event(event, watched, line)
                    if event_type == "ERROR":
                        raise ApiRequestError.from_status(obj, 500)
                    if event_type == "BOOKMARK":
                        yield ClientWatchEvent(event_type, None, revision)
                    else:
                        yield ClientWatchEvent(event_type, parse_object(obj, watched), revision)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ServerUnreachable(f"watch on {self.address} broke: {exc}") from exc

    # --- server --------------------------------------------------------------------------

    async def version(self) -> dict[str, Any]:
        document = await self.request("GET", "/version")
        if not isinstance(document.get("gitVersion"), str):
            raise UnreadableAnswer("GET /version", "not a version", compact_json(document))
        return dict(document)

    async def readyz(self) -> str:
        try:
            return str(await self.request("GET", "/readyz", plain_text=True))
        except ApiRequestError as exc:
            return exc.message


class SyncApiClient:
    """A blocking facade over ``ApiClient`` for scripts and tests without an event loop.

    It owns a private event loop, so it must not be used from inside a running loop (use
    ``ApiClient`` there). Watches are async-only.
    """

    def __init__(
        self,
        *,
        server: str = DEFAULT_SERVER,
        token: str | None = None,
        ca_file: Path | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = ApiClient(server=server, token=token, ca_file=ca_file, timeout=timeout)

    def _run(self, call: Awaitable[T]) -> T:
        return self._loop.run_until_complete(call)

    def get(self, kind: Kind, key: Sequence[str]) -> AnyResource:
        return self._run(self._client.get(kind, key))

    def list(
        self, kind: Kind, scope: Sequence[str] = (), *, label_selector: str | None = None
    ) -> ObjectList:
        return self._run(self._client.list(kind, scope, label_selector=label_selector))

    def create(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        return self._run(self._client.create(res, dry_run=dry_run))

    def update(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        return self._run(self._client.update(res, dry_run=dry_run))

    def patch(
        self,
        kind: Kind,
        key: Sequence[str],
        patch: Mapping[str, Any],
        *,
        status: bool = False,
        dry_run: bool = False,
    ) -> AnyResource:
        return self._run(self._client.patch(kind, key, patch, status=status, dry_run=dry_run))

    def delete(
        self, kind: Kind, key: Sequence[str], *, cascade: bool = False, dry_run: bool = False
    ) -> AnyResource | None:
        return self._run(self._client.delete(kind, key, cascade=cascade, dry_run=dry_run))

    def version(self) -> dict[str, Any]:
        return self._run(self._client.version())

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
