"""Serving the API: the unix socket, the optional TCP+TLS listener, start and stop.

``ApiServerRunner`` is an explicit lifecycle object in the manner of aiohttp's
``AppRunner``/``Site``: ``await runner.start()`` binds every listener (or raises a typed
error naming what is missing), ``await runner.stop()`` lets requests finish, ends open
watch streams and removes the socket file.

The unix socket is bound, given its group and mode, and only then made to listen, so no
connection is ever accepted with looser permissions than configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import os
import socket
import ssl
import stat
from functools import partial
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from kukeon.apiserver.app import ReadinessCheck, create_app
from kukeon.apiserver.auth import TokenBook, TokensFileError
from kukeon.apiserver.hostpathmounts import warn_about_host_paths
from kukeon.apiserver.listeners import (
    AcceptingSite,
    ConnectionCapError,
    listener_metrics,
    open_files_limit,
    tcp_connection_cap,
)
from kukeon.apiserver.lowlevel import PARSER_LIMITS, StatusAppRunner
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.settings import ApiSettings
from kukeon.apiserver.writerules import ContainerCheck
from kukeon.fileio import warn_if_open_to_others
from kukeon.framework.aiotasks import Supervisor
from kukeon.processes import held_by_others

log = logging.getLogger(__name__)

TCP_RETRY_SECONDS = 2.0
"""How often the TCP address is tried again while another account's listener holds it."""


class ApiServerError(Exception):
    """The API server cannot start; the message names the missing file, group or address."""


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    warn_if_open_to_others(
        key, "API TLS key file", if_replaced="kukeond's API serves under their key"
    )
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ApiServerError(
            f"cannot load the API TLS certificate {cert} / key {key}: {exc}"
        ) from exc
    return context


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ApiServerError(f"API TCP address {address!r} must be host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def _bind_tcp(host: str, port: int) -> socket.socket:
    """A socket bound to the first address ``host`` names (``listen`` comes later)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


async def ensure_group(name: str) -> int:
    """The gid of ``name`` (a numeric gid is itself), creating it as a system group when it
    is missing."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        pass
    process = await asyncio.create_subprocess_exec(
        "groupadd",
        "--system",
        name,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    try:
        return grp.getgrnam(name).gr_gid  # also covers a concurrent groupadd winning
    except KeyError:
        raise ApiServerError(
            f"cannot create group {name!r} for the API socket: groupadd exited "
            f"{process.returncode}: {stderr.decode(errors='replace').strip()}"
        ) from None


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ApiServerError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)  # left behind by a server that died
            return
        raise ApiServerError(f"cannot probe existing socket {path}: {exc}") from exc
    finally:
        probe.close()
    raise ApiServerError(f"another server is already listening on {path}")


def _bind_unix(path: Path, mode: int, gid: int | None) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)
        if gid is not None:
            os.chown(path, -1, gid)
    except OSError as exc:
        sock.close()
        path.unlink(missing_ok=True)
        raise ApiServerError(f"cannot create the API socket {path}: {exc}") from exc
    return sock


class ApiServerRunner:
    """Owns the listeners of one API application."""

    def __init__(
        self,
        *,
        app: web.Application,
        settings: ApiSettings,
        tls: ssl.SSLContext | None,
        metrics_registry: CollectorRegistry | None = None,
    ):
        self._app = app
        self._settings = settings
        self._tls = tls
        self._metrics = listener_metrics(metrics_registry)
        self._runner: web.AppRunner | None = None
        self._bound_socket: tuple[int, int] | None = None
        """(device, inode) of the socket file this runner made: the only one it removes."""
        self.tcp_port: int | None = None
        """The bound TCP port (useful with port 0), once started."""
        self.tcp_site: AcceptingSite | None = None
        self._later = Supervisor()
        """The TCP listener's wait for its address, when a local user holds it at start."""

    @property
    def socket_path(self) -> Path | None:
        return self._settings.socket_path

    @property
    def app(self) -> web.Application:
        return self._app

    async def start(self) -> None:
        if self._runner is not None:
            return
        settings = self._settings
        tcp_cap = self._tcp_connection_cap()
        await asyncio.to_thread(
            warn_about_host_paths, settings.allowed_host_paths, settings.secret_dirs
        )
        # StatusAppRunner: even what aiohttp's parser refuses is answered with a Status.
        runner = StatusAppRunner(
            self._app, shutdown_timeout=settings.shutdown_timeout, access_log=None, **PARSER_LIMITS
        )
        await runner.setup()
        self._runner = runner
        try:
            if settings.socket_path is not None:
                gid = (
                    await ensure_group(settings.socket_group)
                    if settings.socket_group is not None
                    else None
                )
                sock = await asyncio.to_thread(
                    _bind_unix, settings.socket_path, settings.socket_mode, gid
                )
                made = settings.socket_path.lstat()
                self._bound_socket = (made.st_dev, made.st_ino)
                # No cap: the local admin's; what it may hold is kept free of the TCP cap.
                await AcceptingSite(runner, sock, listener="unix", metrics=self._metrics).start()
                log.info("API listening on unix:%s", settings.socket_path)
            if settings.tcp_address is not None:
                await self._start_tcp(runner, tcp_cap)
        except BaseException:
            await self.stop()
            raise

    async def _start_tcp(self, runner: web.AppRunner, tcp_cap: int | None) -> None:
        """The TCP listener; its address in use is an ``ApiServerError``, unless only other
        accounts' listeners hold it: a local user's must not keep kukeond down (the unix
        socket included), so it is logged and listened on once free (a supervised task)."""
        address = self._settings.tcp_address
        assert address is not None
        host, port = _split_address(address)
        try:
            tcp = await asyncio.to_thread(_bind_tcp, host, port)
            await self._listen_tcp(runner, tcp, host, tcp_cap)
        except OSError as exc:
            holders = await asyncio.to_thread(held_by_others, port, exc)
            if holders is None:
                raise ApiServerError(f"cannot listen on {address}: {exc}") from exc
            log.error(
                "cannot listen on %s for the API: %s holds it, not root: serving the unix "
                "socket without it, and listening there once it is free",
                address,
                holders,
            )
            self.tcp_port = port  # where it will be: what the fleet is told
            self._later.start(
                "kukeon-api-tcp-listener",
                partial(self._listen_tcp_when_free, runner, host, port, tcp_cap),
                component="apiserver",
                finishable=True,
            )

    async def _listen_tcp(
        self, runner: web.AppRunner, tcp: socket.socket, host: str, tcp_cap: int | None
    ) -> None:
        try:
            self.tcp_site = AcceptingSite(
                runner,
                tcp,
                listener="tcp",
                ssl_context=self._tls,
                max_connections=tcp_cap,
                handshake_timeout=self._settings.tls_handshake_timeout,
                metrics=self._metrics,
            )
            await self.tcp_site.start()
        except BaseException:
            tcp.close()
            raise
        self.tcp_port = tcp.getsockname()[1]
        log.info(
            "API listening on https://%s:%s (at most %d connections)", host, self.tcp_port, tcp_cap
        )

    async def _listen_tcp_when_free(
        self, runner: web.AppRunner, host: str, port: int, tcp_cap: int | None
    ) -> None:
        while True:
            await asyncio.sleep(TCP_RETRY_SECONDS)
            try:
                tcp = await asyncio.to_thread(_bind_tcp, host, port)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            await self._listen_tcp(runner, tcp, host, tcp_cap)
            return

    def _tcp_connection_cap(self) -> int | None:
        """The TCP listener's cap (``listeners.tcp_connection_cap``); refused when it cannot
        fit the open-files limit."""
        settings = self._settings
        if settings.tcp_address is None:
            return None
        try:
            return tcp_connection_cap(
                settings.max_tcp_connections,
                open_files=open_files_limit(),
                unix_sessions=settings.max_requests_inflight + settings.max_long_running,
            )
        except ConnectionCapError as error:
            raise ApiServerError(str(error)) from None

    async def stop(self) -> None:
        await self._later.stop()
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        bound, self._bound_socket = self._bound_socket, None
        path = self._settings.socket_path
        # Only the socket this runner made: one found in use at start, or put in its place
        # since, is another server's.
        if path is not None and bound is not None:
            with contextlib.suppress(OSError):
                found = path.lstat()
                if stat.S_ISSOCK(found.st_mode) and (found.st_dev, found.st_ino) == bound:
                    path.unlink()

    async def __aenter__(self) -> ApiServerRunner:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


async def build_runner(
    *,
    settings: ApiSettings,
    registry: RegistryApi,
    metrics_registry: CollectorRegistry | None = None,
    readiness_checks: dict[str, ReadinessCheck] | None = None,
    container_check: ContainerCheck | None = None,
) -> ApiServerRunner:
    """Check the settings, load the tokens and TLS material, build the (unstarted) runner."""
    tokens: TokenBook | None = None
    tls: ssl.SSLContext | None = None
    if settings.tcp_address is not None:
        missing = [
            flag
            for flag, value in (
                ("TLS certificate (api_tls_cert_file)", settings.tls_cert_file),
                ("TLS key (api_tls_key_file)", settings.tls_key_file),
                ("tokens file (api_tokens_file)", settings.tokens_file),
            )
            if value is None
        ]
        if missing:
            raise ApiServerError(
                f"the TCP API listener {settings.tcp_address} requires TLS and tokens; missing: "
                + ", ".join(missing)
            )
        assert settings.tls_cert_file is not None
        assert settings.tls_key_file is not None
        assert settings.tokens_file is not None
        tls = await asyncio.to_thread(_tls_context, settings.tls_cert_file, settings.tls_key_file)
        try:
            tokens = await asyncio.to_thread(TokenBook.load, settings.tokens_file)
        except TokensFileError as exc:
            raise ApiServerError(str(exc)) from exc
    elif settings.tokens_file is not None:
        try:
            tokens = await asyncio.to_thread(TokenBook.load, settings.tokens_file)
        except TokensFileError as exc:
            raise ApiServerError(str(exc)) from exc
    app = create_app(
        registry=registry,
        settings=settings,
        tokens=tokens,
        metrics_registry=metrics_registry,
        readiness_checks=readiness_checks,
        container_check=container_check,
    )
    return ApiServerRunner(app=app, settings=settings, tls=tls, metrics_registry=metrics_registry)


async def serve_api(
    settings: ApiSettings,
    registry: RegistryApi,
    *,
    metrics_registry: CollectorRegistry | None = None,
    readiness_checks: dict[str, ReadinessCheck] | None = None,
    container_check: ContainerCheck | None = None,
) -> ApiServerRunner:
    """Build and start the API server; stop it with ``await runner.stop()``."""
    runner = await build_runner(
        settings=settings,
        registry=registry,
        metrics_registry=metrics_registry,
        readiness_checks=readiness_checks,
        container_check=container_check,
    )
    await runner.start()
    return runner
