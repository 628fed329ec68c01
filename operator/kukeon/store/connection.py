"""How the registry reaches etcd: endpoints, TLS, authentication, deadlines and retries.

aetcd's own ``Client`` dials one plaintext ``host:port``. kukeond needs several endpoints
(so losing one member of a cluster is a reconnect, not an outage), TLS with client
certificates, and a token that is renewed when etcd expires it. ``EtcdClient`` keeps
aetcd's ``Client`` API (the framework uses it for leases) but builds the channel itself.

Every request carries ``hasleader: true``: a member cut off from its cluster then refuses
requests and cancels watch streams instead of serving stale data silently, and the
registry reconnects and resumes.

``Retrier`` runs one attempt of an operation again on transient gRPC failures (etcd
unavailable or without a leader, a deadline, "too many requests", a TLS stream reset) with
exponential backoff; every other failure (invalid argument, a request too large,
permission denied, a failed precondition...) is a ``StoreError`` at once, whether it comes
as gRPC's error or as aetcd's wrapper of it. A failed compare is a result, not an error,
so it is never retried here, nor is a full etcd's refusal (``SpaceExceeded``: it lasts
until room is freed and the alarm cleared, so retrying only made the caller wait out the
budget, past the API's request deadline). A write that failed mid-flight (connection
reset, deadline) may or may not have been applied: it is retried only when the caller
says the attempt is safe to repeat (it re-reads and re-decides, or it can recognise its
own earlier write); otherwise the caller gets ``OutcomeUnknown``. Once a request has spent
its whole budget etcd is known away (``health.StoreHealth``): later requests are refused at
once (``EtcdAway``, before anything is sent) until a probe or a request gets an answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aetcd
import grpc
from aetcd import rpc, watcher

from .endpoints import (
    UNIX_TLS_NAME,
    EndpointReporter,
    ResolveFailed,
    check_endpoints,
    describe,
    endpoint_scheme,
    grpc_target,
    split_endpoint,
    tls_name,
    unix_socket_path,
)
from .errors import SpaceExceeded, StoreError, Unavailable
from .health import StoreHealth

__all__ = ["ResolveFailed"]  # raised by EtcdClient.connect; etcdwatch takes it from here

T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Receive limit of the channel: list pages and watch batches stay far below it."""

log = logging.getLogger(__name__)

_REQUIRE_LEADER = ("hasleader", "true")
Metadata = tuple[tuple[str, str], ...]


class OutcomeUnknown(Unavailable):
    """A write failed in flight: etcd may or may not have applied it. Re-read before retrying."""


@dataclass(frozen=True, kw_only=True)
class EtcdConfig:
    """Where etcd is and how to talk to it.

    ``endpoints`` are ``host:port`` or ``http(s)://host:port``; ``https`` (or any TLS file)
    switches the channel to TLS. ``ca_file`` verifies the server (the system roots when
    omitted), ``cert_file``/``key_file`` authenticate the client. A single endpoint may
    instead be a unix socket, ``unix:///path`` or ``unixs:///path`` (TLS, the server's
    certificate verified for ``localhost`` unless ``server_name`` names another): the
    embedded etcd is reached so.
    """

    endpoints: Sequence[str] = ("127.0.0.1:2379",)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    """TLS name to verify instead of the endpoint's host (e.g. when dialing IPs)."""
    username: str | None = None
    password: str | None = None
    dial_timeout: float = 5.0
    """Seconds to wait for the first connection and each authentication."""
    request_timeout: float = 5.0
    """Deadline of one gRPC request."""
    retry_timeout: float = 20.0
    """Total seconds spent retrying transient failures before ``Unavailable``."""
    key_prefix: str = "/kukeon"
    """Root of every key the registry writes (tests use a unique one per case)."""
    channel_options: Sequence[tuple[str, Any]] = field(default=())
    interceptors: Sequence[grpc.aio.ClientInterceptor] = field(default=())
    """gRPC client interceptors (kukeond's request-latency histogram)."""

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("EtcdConfig.endpoints: at least one endpoint is required")
        if (self.username is None) != (self.password is None):
            raise ValueError("EtcdConfig: username and password must be given together")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("EtcdConfig: cert_file and key_file must be given together")
        sockets = []
        for endpoint in self.endpoints:  # each a unix or a TCP one, else ValueError naming it
            if unix_socket_path(endpoint) is not None:
                sockets.append(endpoint)
            else:
                split_endpoint(endpoint)
        if sockets and len(self.endpoints) > 1:
            raise ValueError(
                f"EtcdConfig.endpoints: the unix socket endpoint {sockets[0]!r} must be the "
                "only one (a channel dials one socket, or TCP endpoints)"
            )

    @property
    def uses_tls(self) -> bool:
        schemes = {endpoint_scheme(e) for e in self.endpoints}
        return bool(schemes & {"https", "unixs"}) or any((self.ca_file, self.cert_file))

    @property
    def unix_socket(self) -> str | None:
        """The socket path when the (single) endpoint is a unix socket."""
        return unix_socket_path(self.endpoints[0])


_RECHECK_SECONDS = 5.0
_RETIRE_SECONDS = 30.0
"""How long a channel replaced by ``mend`` lives on for the calls still on it."""


def _read_optional(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


FileStamp = tuple[int, int] | None


def _stamps(paths: Sequence[Path | None]) -> tuple[FileStamp, ...]:
    """Each file's inode and modification time (None: no such file): what a rewrite changes
    (``pki``'s atomic writes give a new inode)."""
    stamps: list[FileStamp] = []
    for path in paths:
        try:
            facts = os.stat(path) if path is not None else None
        except OSError:
            facts = None
        stamps.append(None if facts is None else (facts.st_ino, facts.st_mtime_ns))
    return tuple(stamps)


class EtcdClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client over a channel built from an ``EtcdConfig``."""

    def __init__(self, config: EtcdConfig) -> None:
        super().__init__(
            username=config.username,
            password=config.password,
            timeout=config.request_timeout,
            connect_wait_timeout=int(max(config.dial_timeout, 1)),
        )
        self.config = config
        self._reporter = EndpointReporter()
        self._tls_name: str | None = None
        """The host a multi-endpoint channel verifies certificates for, set at each open."""
        self._checked: tuple[float, str] | None = None
        self._check_lock = asyncio.Lock()
        self._left_out: tuple[str, ...] = ()
        """Endpoints whose names did not resolve when the channel was opened."""
        self._reopen = False
        self._mended_at = -_RECHECK_SECONDS
        self._tls_stamps: tuple[FileStamp, ...] = ()
        """The TLS files as the channel was opened with them."""
        self._retired: set[grpc.aio.Channel] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self.health = StoreHealth(self._probe)
        """Whether etcd is known away: every ``Retrier`` on this client refuses at once then."""

    def _channel_options(self) -> list[tuple[str, Any]]:
        options: dict[str, Any] = {
            "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
            "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
            "grpc.keepalive_time_ms": 10_000,
            "grpc.keepalive_timeout_ms": 5_000,
            "grpc.keepalive_permit_without_calls": 1,
            "grpc.http2.max_pings_without_data": 0,
            "grpc.initial_reconnect_backoff_ms": 100,
            "grpc.min_reconnect_backoff_ms": 100,
            "grpc.max_reconnect_backoff_ms": 1_000,
        }
        if self.config.server_name:
            options["grpc.ssl_target_name_override"] = self.config.server_name
        elif self.config.unix_socket is not None:
            options["grpc.ssl_target_name_override"] = UNIX_TLS_NAME
        elif self.config.uses_tls and len(self.config.endpoints) > 1:
            # The target is then an address list ("ipv4:a:1,b:2"), not a name gRPC can
            # verify a certificate against: check the host of the first endpoint that
            # answered instead (etcd members' certificates usually name every member; else
            # set server_name), never a name that did not resolve.
            first = split_endpoint(self.config.endpoints[0])[1]
            options["grpc.ssl_target_name_override"] = self._tls_name or first
        options.update(dict(self.config.channel_options))
        return list(options.items())

    async def _target(self) -> str:
        """A single endpoint is gRPC's to resolve (again at each reconnect); several are
        checked one by one here (``endpoints``), and only those that resolve are dialed."""
        if (socket_path := self.config.unix_socket) is not None:
            return f"unix:{socket_path}"
        if len(self.config.endpoints) == 1:
            _, host, port = split_endpoint(self.config.endpoints[0])
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        states = await check_endpoints(self.config.endpoints, within=self.config.dial_timeout)
        self._reporter.report(states)
        target = grpc_target(states)  # ResolveFailed naming each endpoint when none resolved
        self._tls_name = tls_name(states)
        self._left_out = tuple(state.endpoint for state in states if not state.addresses)
        return target

    async def endpoints_now(self) -> str:
        """Each endpoint and what it does now (resolves, takes a TCP connection), for an
        error that gives up: checked at most every few seconds, however many requests fail."""
        if len(self.config.endpoints) == 1:
            return ""
        async with self._check_lock:
            now = asyncio.get_running_loop().time()
            if self._checked is None or now - self._checked[0] > _RECHECK_SECONDS:
                timeout = min(self.config.dial_timeout, 1.0)
                states = await check_endpoints(self.config.endpoints, within=timeout)
                self._reporter.report(states)
                self._checked = (now, describe(states))
            return self._checked[1]

    async def _open_channel(self) -> grpc.aio.Channel:
        target = await self._target()
        if not self.config.uses_tls:
            return grpc.aio.insecure_channel(
                target, options=self._channel_options(), interceptors=list(self.config.interceptors)
            )
        # Stamped before they are read: a rewrite in between is found by the next ``mend``.
        self._tls_stamps = await asyncio.to_thread(_stamps, self._tls_files())
        ca, cert, key = await asyncio.to_thread(
            lambda: (
                _read_optional(self.config.ca_file),
                _read_optional(self.config.cert_file),
                _read_optional(self.config.key_file),
            )
        )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        return grpc.aio.secure_channel(
            target,
            credentials,
            options=self._channel_options(),
            interceptors=list(self.config.interceptors),
        )

    async def connect(self) -> None:
        if self._connected.is_set():
            if self._reopen and not self._is_connecting:  # type: ignore[has-type]
                await self._reopen_channel()
            return
        if self._is_connecting:  # type: ignore[has-type]
            async with asyncio.timeout(self.config.dial_timeout):
                await self._connected.wait()
            return
        self._is_connecting = True
        try:
            await self._install(await self._open_channel())
            self._connected.set()
        finally:
            self._is_connecting = False

    def _tls_files(self) -> tuple[Path | None, ...]:
        return (self.config.ca_file, self.config.cert_file, self.config.key_file)

    async def mend(self) -> None:
        """After a failed request: when endpoints were left out of the channel (their names
        did not resolve) and one resolves now, or the TLS files were written again since
        it was opened (``pki`` made new certificates: a clock stepped back before theirs,
        an expiry; an operator's rotation), have the next ``connect`` reopen it with them.
        Checked at most every few seconds; a channel that works is never reopened."""
        loop = asyncio.get_running_loop()
        if self._reopen or loop.time() - self._mended_at < _RECHECK_SECONDS:
            return
        tls = self.config.uses_tls and any(self._tls_files())
        if not self._left_out and not tls:
            return
        self._mended_at = loop.time()
        if tls and await asyncio.to_thread(_stamps, self._tls_files()) != self._tls_stamps:
            log.info("etcd's TLS files changed since the channel was opened: opening it again")
            self._reopen = True
            return
        if not self._left_out:
            return
        states = await check_endpoints(self._left_out, within=min(self.config.dial_timeout, 1.0))
        self._reopen = any(state.addresses for state in states)

    async def _reopen_channel(self) -> None:
        """A new channel over what resolves now, its stubs installed in place of the old
        one's; the old channel is closed a while later, not under the calls still on it."""
        self._reopen = False
        self._is_connecting = True
        try:
            channel = await self._open_channel()
        except ResolveFailed:
            return  # DNS went again: the channel there is the best there is
        finally:
            self._is_connecting = False
        retired = self.channel
        await self._install(channel)
        if retired is not None:
            self._retired.add(retired)
            asyncio.get_running_loop().call_later(
                _RETIRE_SECONDS, lambda: self._close_retired(retired)
            )

    def _close_retired(self, channel: grpc.aio.Channel) -> None:
        if channel in self._retired:
            self._retired.discard(channel)
            task = asyncio.ensure_future(channel.close(None))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _probe(self) -> bool:
        """One linearizable count-only range of a single key (a leader and quorum needed,
        as for any request): True when etcd answered, whatever it said."""
        request = rpc.RangeRequest(key=self.config.key_prefix.encode(), count_only=True)
        try:
            await self.connect()
            await self.kvstub.Range(
                request, metadata=self.metadata, timeout=self.config.request_timeout
            )
        except grpc.aio.AioRpcError as error:
            if not is_transient(error):
                return True
        except (aetcd.ClientError, TimeoutError, ResolveFailed):
            pass
        else:
            return True
        await self.mend()  # as a request's retries: a name left out that resolves now
        return False

    async def close(self) -> None:
        await self.health.close()
        retired, self._retired = set(self._retired), set()
        await asyncio.gather(*(channel.close(None) for channel in retired), *self._closing)
        await super().close()

    async def _install(self, channel: grpc.aio.Channel) -> None:
        """Requests go through ``channel`` from now on."""
        self.channel = channel
        self.kvstub = rpc.KVStub(channel)
        self.clusterstub = rpc.ClusterStub(channel)
        self.leasestub = rpc.LeaseStub(channel)
        self.maintenancestub = rpc.MaintenanceStub(channel)
        self.auth_stub = rpc.AuthStub(channel)
        self.watchstub = rpc.WatchStub(channel)
        self.metadata: Metadata = (_REQUIRE_LEADER,)
        if self.config.username is not None:
            await self.authenticate()
        self._watcher = watcher.Watcher(
            self.watchstub, timeout=self.config.request_timeout, metadata=self.metadata
        )

    async def authenticate(self) -> None:
        """(Re)fetch the auth token: etcd's simple tokens expire (5 minutes by default)."""
        request = rpc.AuthenticateRequest(name=self.config.username, password=self.config.password)
        response = await self.auth_stub.Authenticate(request, timeout=self.config.dial_timeout)
        self.metadata = (_REQUIRE_LEADER, ("token", response.token))
        if self._watcher is not None:
            self._watcher._metadata = self.metadata


_NOT_APPLIED_HINTS = (
    "no leader",
    "failed to connect",
    "connection refused",
    "proposal dropped",
    "not capable",
    "too many requests",
    "dns resolution failed",
)


def is_space_exceeded(error: grpc.aio.AioRpcError) -> bool:
    """etcd's NOSPACE refusal ("etcdserver: mvcc: database space exceeded"). It shares
    RESOURCE_EXHAUSTED with "too many requests", which does pass by itself."""
    details = (error.details() or "").lower()
    return error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "space exceeded" in details


def is_transient(error: grpc.aio.AioRpcError) -> bool:
    if is_space_exceeded(error):
        return False
    if error.code() == grpc.StatusCode.INTERNAL:
        # Over TLS, a server going away ends open streams with RST_STREAM, which gRPC
        # reports as INTERNAL "Stream removed" instead of UNAVAILABLE.
        return "stream removed" in (error.details() or "").lower()
    return error.code() in {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }


def surely_not_applied(error: grpc.aio.AioRpcError) -> bool:
    """True when etcd never took the request (no connection, no leader, refused)."""
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return True
    if error.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    details = (error.details() or "").lower()
    return any(hint in details for hint in _NOT_APPLIED_HINTS)


def is_expired_token(error: grpc.aio.AioRpcError) -> bool:
    details = (error.details() or "").lower()
    return error.code() == grpc.StatusCode.UNAUTHENTICATED and "token" in details


def _describe(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details()}"


_TRANSIENT_CLIENT_ERRORS = (
    aetcd.ConnectionFailedError,  # UNAVAILABLE: no connection, no leader
    aetcd.ConnectionTimeoutError,  # DEADLINE_EXCEEDED
    aetcd.WatchTimeoutError,
)
"""aetcd's own errors that pass by themselves. Any other (invalid argument, failed
precondition, unauthenticated, a compacted revision, a duplicate lease, internal) says the
same thing again however often it is asked: retrying it only made the caller wait out the
whole budget and then called a refusal "unavailable"."""


def _refuse_for_good(error: grpc.aio.AioRpcError, what: str) -> None:
    """Raise the store's error for a gRPC failure that retrying cannot mend: a full etcd
    (``SpaceExceeded``), or any code but the transient ones (invalid argument, a value or
    request too large, permission denied, not found...)."""
    if is_space_exceeded(error):
        raise SpaceExceeded(
            f"{what}: etcd refused the write: database space exceeded (its NOSPACE "
            "alarm is raised; writes are taken again once room is freed and the "
            "alarm cleared, which kukeond's space keeper does for its embedded etcd)"
        ) from error
    if not is_transient(error):
        raise StoreError(f"{what}: etcd refused the request ({_describe(error)})") from error


class Retrier:
    """Runs attempts again on transient failures, with jittered exponential backoff."""

    def __init__(self, *, client: EtcdClient, retry_timeout: float) -> None:
        self._client = client
        self._retry_timeout = retry_timeout

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        what: str,
        repeatable: bool,
    ) -> T:
        """Await ``attempt()`` until it succeeds or fails for good.

        ``repeatable``: the attempt may run again after an in-flight failure (reads, and
        writes that re-read or recognise their own earlier write).
        """
        await self._client.health.check(what)  # etcd known away: refused, nothing sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_timeout
        delay = 0.05
        reauthenticated = False
        while True:
            try:
                await self._client.connect()
                result = await attempt()
                self._client.health.answered()
                return result
            except grpc.aio.AioRpcError as error:
                if is_expired_token(error) and not reauthenticated:
                    reauthenticated = True
                    await self._reauthenticate(what)
                    continue
                _refuse_for_good(error, what)
                if not repeatable and not surely_not_applied(error):
                    raise OutcomeUnknown(
                        f"{what}: etcd failed while the write was in flight ({_describe(error)}); "
                        "it may or may not have been applied, read the object again"
                    ) from error
                if loop.time() + delay > deadline:
                    raise await self._unavailable(
                        f"{what}: etcd is unavailable after {self._retry_timeout:g}s of retries "
                        f"({_describe(error)})"
                    ) from error
            except aetcd.ClientError as error:
                cause = error.__cause__
                if isinstance(cause, grpc.aio.AioRpcError):
                    # aetcd's wrapper of a gRPC failure: judged as that failure is.
                    _refuse_for_good(cause, what)
                    unapplied = surely_not_applied(cause)
                elif isinstance(error, _TRANSIENT_CLIENT_ERRORS):
                    unapplied = False
                else:
                    raise StoreError(f"{what}: etcd refused the request ({error!r})") from error
                if not repeatable and not unapplied:
                    raise OutcomeUnknown(
                        f"{what}: etcd failed while the write was in flight ({error!r}); "
                        "it may or may not have been applied, read the object again"
                    ) from error
                if loop.time() + delay > deadline:
                    raise await self._unavailable(
                        f"{what}: cannot connect to etcd ({error!r})"
                    ) from error
            except TimeoutError as error:
                if loop.time() + delay > deadline:
                    raise await self._unavailable(
                        f"{what}: cannot connect to etcd ({error!r})"
                    ) from error
            except ResolveFailed as error:  # raised by connect(): no request was sent
                if loop.time() + delay > deadline:
                    raise await self._unavailable(
                        f"{what}: cannot connect to etcd ({error})"
                    ) from error
            await self._client.mend()  # a name left out that resolves now is dialed too
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 1.0)

    async def _unavailable(self, message: str) -> Unavailable:
        """The give-up, naming each of several endpoints and what it does now (gRPC's
        error names the last address it tried only)."""
        endpoints = await self._client.endpoints_now()
        said = f"{message}; etcd endpoints now: {endpoints}" if endpoints else message
        self._client.health.failed(said)  # until etcd answers, later requests fail at once
        return Unavailable(said)

    async def _reauthenticate(self, what: str) -> None:
        try:
            await self._client.authenticate()
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"{what}: etcd authentication failed ({_describe(error)})") from error
