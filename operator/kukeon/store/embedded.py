"""A private etcd process: kukeond's store when no endpoints are configured, and the tests'.

``EtcdProcess`` runs one member (Debian's ``etcd`` binary) on loopback ports, or on unix
sockets in a directory, with its own data directory; a set of them forms a cluster.
``EmbeddedEtcd`` is the single-member case kukeond uses. Everything is asyncio: the process
is an asyncio subprocess and readiness is polled over ``/health`` without blocking the loop.

The embedded etcd listens on unix sockets in its ``0700`` data directory, not on loopback:
no port a local user could take while kukeond is down (delaying or breaking its restart),
and no listener a local user can reach at all. Over the sockets it still speaks mutual TLS
only, with the certificates of ``pki`` kept in that directory, as defence in depth. It is
kukeond's child in earnest: it gets SIGKILL when the thread that started it exits (a
parent-death signal, set by util-linux ``setpriv``), a pidfile lets the next start stop an
etcd an earlier run left behind on the same data directory, and with ``restart_on_exit``
an etcd that dies alone is started again, with backoff, on the same sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aetcd
import grpc

from kukeon.cancelling import cancel_and_wait
from kukeon.fileio import host_disk_refusal
from kukeon.processes import identify

from .connection import EtcdClient, EtcdConfig
from .endpoints import SOCKET_PATH_MAX, UNIX_TLS_NAME

if TYPE_CHECKING:
    # Imported where used: pki loads cryptography's x509 (~1.7 MiB of kukeond's RSS,
    # docs/benchmarks/memory-idle.md), which a kukeond on an external etcd never needs.
    from .pki import EtcdPki

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CLIENT_SOCKET = "client:0"
PEER_SOCKET = "peer:0"
"""The sockets' names in etcd's working directory: etcd takes a unix listener's address in
its ``host:port`` form only (``unixs://client:0``), and makes the socket by that name."""
STALE_GRACE_SECONDS = 5.0
"""How long a stale etcd gets after SIGTERM before SIGKILL."""
RESTART_INITIAL_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_SECONDS = 60.0
"""An etcd that ran this long before dying is restarted without the accumulated backoff."""


class EtcdStartError(RuntimeError):
    """etcd did not become healthy; the message carries the end of its log."""


def find_etcd_binary() -> str:
    found = shutil.which("etcd") or (
        "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None
    )
    if found is None:
        raise EtcdStartError("the `etcd` binary is not installed (Debian package etcd-server)")
    return found


def parent_death_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL`` when util-linux's setpriv is there, else nothing.

    The kernel sends the signal when the *thread* that forked the child exits; kukeond
    starts etcd from its event loop's thread, which lives as long as kukeond.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


async def _open_stream(
    address: str | tuple[str, int], tls: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if isinstance(address, str):  # a unix socket, whose TLS name is not in its address
        server_name = UNIX_TLS_NAME if tls is not None else None
        return await asyncio.open_unix_connection(address, ssl=tls, server_hostname=server_name)
    host, port = address
    return await asyncio.open_connection(host, port, ssl=tls)


async def http_health(
    address: str | tuple[str, int],
    *,
    wait_seconds: float = 2.0,
    tls: ssl.SSLContext | None = None,
) -> bool:
    """True when etcd's ``/health`` says the member has a leader and serves.

    A raised ``NOSPACE`` alarm does not count (``?exclude=NOSPACE``): a full etcd serves
    reads and deletes, and kukeond's space keeper, which clears the alarm, runs only once
    kukeond has started. Counted, it made every health check fail while the alarm stood,
    so kukeond could not start on its own full etcd and never recovered by itself.

    ``address``: ``(host, port)``, or a unix socket's path. ``tls``: the context to dial a
    TLS listener with (it carries the client certificate when etcd demands one).
    """
    host = UNIX_TLS_NAME if isinstance(address, str) else address[0]
    try:
        async with asyncio.timeout(wait_seconds):
            reader, writer = await _open_stream(address, tls)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET /health?exclude=NOSPACE HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        async with asyncio.timeout(wait_seconds):
            await writer.drain()
            raw = await reader.read()
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(wait_seconds):
                await writer.wait_closed()
    _, _, body = raw.partition(b"\r\n\r\n")
    try:
        health: Any = json.loads(body)
    except ValueError:
        return False
    return isinstance(health, dict) and str(health.get("health")) == "true"


class EtcdProcess:
    """One etcd member; ``initial_cluster`` names all members when it is part of a cluster."""

    def __init__(
        self,
        *,
        name: str,
        data_dir: Path,
        client_port: int = 0,
        peer_port: int = 0,
        socket_dir: Path | None = None,
        initial_cluster: str | None = None,
        cluster_token: str = "kukeon-etcd",
        binary: str | None = None,
        log_path: Path | None = None,
        host: str = LOOPBACK,
        extra_args: Sequence[str] = (),
        client_tls: ssl.SSLContext | None = None,
        pki: EtcdPki | None = None,
        parent_death_signal: bool = False,
    ) -> None:
        """``pki``: mutual TLS on the client and the peer listener with these certificates
        (the files must exist: ``ensure_pki``). ``client_tls``: serve clients over https
        with certificates passed in ``extra_args``; the context is what the health check
        dials with (derived from ``pki`` when that is given). ``parent_death_signal``: the
        member gets SIGKILL when the thread that spawned it exits. ``socket_dir``: listen on
        unix sockets there (``CLIENT_SOCKET``, ``PEER_SOCKET``) instead of on ports; etcd
        runs in that directory, as it makes its sockets in its working directory, so
        ``data_dir`` must be absolute."""
        if socket_dir is not None and not (socket_dir.is_absolute() and data_dir.is_absolute()):
            raise ValueError("EtcdProcess: socket_dir and data_dir must be absolute paths")
        self.name = name
        self.pki = pki
        if client_tls is None and pki is not None:
            client_tls = pki.client_context()
        self.client_tls = client_tls
        self.data_dir = data_dir
        self.host = host
        self.socket_dir = socket_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.cluster_token = cluster_token
        self.binary = binary
        self.log_path = log_path or data_dir.with_name(data_dir.name + ".log")
        self.extra_args = list(extra_args)
        self.parent_death_signal = parent_death_signal
        self._process: asyncio.subprocess.Process | None = None

    def _listen_url(self, secure: bool, port: int, socket_name: str) -> str:
        if self.socket_dir is not None:
            return f"{'unixs' if secure else 'unix'}://{socket_name}"
        return f"{'https' if secure else 'http'}://{self.host}:{port}"

    @property
    def client_socket(self) -> Path | None:
        return None if self.socket_dir is None else self.socket_dir / CLIENT_SOCKET

    @property
    def client_listen_url(self) -> str:
        """The client URL etcd is given (a socket's name relative to its directory)."""
        return self._listen_url(self.client_tls is not None, self.client_port, CLIENT_SOCKET)

    @property
    def client_url(self) -> str:
        """What a client dials: ``http(s)://host:port``, or ``unix(s):///dir/client:0``."""
        if self.client_socket is None:
            return self.client_listen_url
        return f"{'unixs' if self.client_tls is not None else 'unix'}://{self.client_socket}"

    @property
    def peer_url(self) -> str:
        return self._listen_url(self.pki is not None, self.peer_port, PEER_SOCKET)

    @property
    def endpoint(self) -> str:
        if self.client_socket is not None:
            return self.client_url
        return f"{self.host}:{self.client_port}"

    @property
    def _health_address(self) -> str | tuple[str, int]:
        if self.client_socket is not None:
            return str(self.client_socket)
        return (self.host, self.client_port)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def command(self) -> list[str]:
        binary = self.binary or find_etcd_binary()
        tls = self.pki.etcd_args() if self.pki is not None else []
        return [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_listen_url,
            "--advertise-client-urls", self.client_listen_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.cluster_token,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-level", "warn",
            *tls,
            *self.extra_args,
        ]  # fmt: skip

    async def spawn(self) -> None:
        """Start the process without waiting (a cluster member is healthy only with quorum)."""
        if self.running:
            return
        command = self.command()
        if self.parent_death_signal:
            command = parent_death_prefix() + command

        def open_log() -> Any:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            if self.socket_dir is not None:
                # A killed etcd leaves its sockets behind, and etcd 3.4 then refuses to
                # start ("bind: address already in use": it removes a stale peer socket
                # itself, not the client one). Whoever owns the directory stopped that etcd.
                for name in (CLIENT_SOCKET, PEER_SOCKET):
                    (self.socket_dir / name).unlink(missing_ok=True)
            return self.log_path.open("ab")

        log_file = await asyncio.to_thread(open_log)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                cwd=self.socket_dir,
            )
        finally:
            log_file.close()

    async def wait(self) -> int | None:
        """Until the process exits; its status (None when it was never started)."""
        if self._process is None:
            return None
        return await self._process.wait()

    async def wait_healthy(self, *, within: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if not self.running:
                raise EtcdStartError(
                    f"etcd member {self.name} exited with status "
                    f"{self._process.returncode if self._process else '?'}: {await self.log_tail()}"
                )
            if await http_health(self._health_address, tls=self.client_tls):
                return
            if loop.time() > deadline:
                raise EtcdStartError(
                    f"etcd member {self.name} not healthy on {self.client_url} after "
                    f"{within:g}s: {await self.log_tail()}"
                )
            await asyncio.sleep(0.05)

    async def start(self, *, within: float = 30.0) -> None:
        await self.spawn()
        await self.wait_healthy(within=within)

    async def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM (etcd flushes and exits), SIGKILL after ``grace`` seconds."""
        await self._signal_and_wait(signal.SIGTERM, grace)

    async def kill(self) -> None:
        await self._signal_and_wait(signal.SIGKILL, 10.0)

    async def _signal_and_wait(self, sig: signal.Signals, grace: float) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def log_tail(self, lines: int = 15) -> str:
        def read() -> str:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError:
                return "(no log)"
            return "\n".join(text.splitlines()[-lines:])

        return await asyncio.to_thread(read)


def _uses_data_dir(pid: int, data_dir: Path) -> bool:
    """True when process ``pid`` is alive and was started with ``--data-dir data_dir``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # gone (a zombie's cmdline is empty, so it never matches either)
    wanted = os.fsencode(str(data_dir))
    for index, argument in enumerate(argv):
        if argument == b"--data-dir" and index + 1 < len(argv) and argv[index + 1] == wanted:
            return True
        if argument == b"--data-dir=" + wanted:
            return True
    return False


def _alive(pid: int) -> bool:
    return identify(pid) is not None  # a zombie is gone


def stop_stale_members(
    data_dir: Path, pid_file: Path, *, grace: float = STALE_GRACE_SECONDS
) -> list[int]:
    """Stop every etcd still serving ``data_dir`` (an earlier kukeond's, after a kill -9).

    The pidfile names the last one started; processes are also looked for by their
    ``--data-dir`` argument, in case the pidfile was lost. SIGTERM, then SIGKILL after
    ``grace`` seconds. Blocking: run it in a thread. Returns the pids stopped.
    """
    candidates: set[int] = set()
    with contextlib.suppress(OSError, ValueError):
        candidates.add(int(pid_file.read_text().strip()))
    with contextlib.suppress(OSError):
        candidates.update(int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    candidates.discard(os.getpid())
    stale = sorted(pid for pid in candidates if _uses_data_dir(pid, data_dir))
    for pid in stale:
        log.warning("stopping etcd pid %d, left serving %s by an earlier run", pid, data_dir)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in stale) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in stale:
        if _alive(pid) and _uses_data_dir(pid, data_dir):
            log.warning("etcd pid %d ignored SIGTERM for %gs; SIGKILL", pid, grace)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while any(_alive(pid) for pid in stale) and time.monotonic() < deadline:
        time.sleep(0.05)
    return stale


class EmbeddedEtcd:
    """kukeond's private single-member etcd, kept in ``data_dir``.

    ``data_dir`` (``0700``) holds ``etcd/`` (etcd's data), ``pki/`` (the CA, member and
    client certificates, see ``pki``), the client and peer sockets (``client:0``,
    ``peer:0``: etcd's unix listeners, reached as ``unixs://<data_dir>/client:0``),
    ``etcd.pid`` and ``etcd.log``. By default history older than
    ``auto_compaction_retention`` is compacted so a long-running node does not grow without
    bound (watchers then relist, as they must with any etcd).

    ``restart_on_exit``: an etcd that exits while it should run is started again on the
    same sockets, after a backoff doubling from 0.5 s up to 30 s (reset once it has run for
    a minute); ``restarts`` counts them.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        binary: str | None = None,
        auto_compaction_retention: str | None = "1h",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        restart_on_exit: bool = False,
    ) -> None:
        # Absolute: etcd runs in this directory (its sockets are made there).
        self.data_dir = Path(data_dir).absolute()
        self.binary = binary
        self.auto_compaction_retention = auto_compaction_retention
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.restart_on_exit = restart_on_exit
        self.restarts = 0
        self._member: EtcdProcess | None = None
        self._pki: EtcdPki | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def tcp_ports_file(self) -> Path:
        """Where kukeon before the sockets kept its loopback ports: marks a data directory
        whose member still has a TCP peer URL in etcd's membership."""
        return self.data_dir / "ports.json"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "etcd.pid"

    @property
    def etcd_data_dir(self) -> Path:
        return self.data_dir / "etcd"

    @property
    def client_socket(self) -> Path:
        return self.data_dir / CLIENT_SOCKET

    @property
    def pki(self) -> EtcdPki:
        """The certificates (made by the first ``start``)."""
        from .pki import EtcdPki

        return self._pki or EtcdPki(self.data_dir / "pki")

    @property
    def member(self) -> EtcdProcess:
        if self._member is None:
            raise RuntimeError("EmbeddedEtcd is not started")
        return self._member

    @property
    def endpoint(self) -> str:
        """``unixs://<data_dir>/client:0``: what an ``EtcdConfig`` needs (with ``pki``'s files)."""
        return f"unixs://{self.client_socket}"

    @property
    def running(self) -> bool:
        return self._member is not None and self._member.running

    def config(self, **overrides: Any) -> EtcdConfig:
        """How to reach this etcd: its socket, the CA and the client certificate."""
        pki = self.pki
        settings: dict[str, Any] = {
            "endpoints": [self.endpoint],
            "ca_file": pki.ca_file,
            "cert_file": pki.client_cert_file,
            "key_file": pki.client_key_file,
        }
        settings.update(overrides)
        return EtcdConfig(**settings)

    def _tls_names(self) -> tuple[str, ...]:
        """What the member certificate names: ``localhost``, which kukeon's clients verify
        on a socket, and the socket's path short of its ``:0``, which etcdctl verifies
        (it takes the host of ``unixs:///dir/client:0`` for the server's name)."""
        return (UNIX_TLS_NAME, str(self.client_socket).removesuffix(":0"))

    def _prepare(self) -> EtcdPki:
        """The data directory (0700), the certificates, and no stale etcd on the data."""
        from .pki import ensure_pki

        length = len(os.fsencode(str(self.client_socket)))
        if length > SOCKET_PATH_MAX:
            raise EtcdStartError(
                f"the embedded etcd's socket {self.client_socket} would be {length} bytes, "
                f"over the {SOCKET_PATH_MAX} a unix socket address holds: give it a data "
                "directory with a shorter path"
            )
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        pki = ensure_pki(self.data_dir / "pki", hosts=self._tls_names())
        stop_stale_members(self.etcd_data_dir, self.pid_file)
        return pki

    def _new_member(self, pki: EtcdPki) -> EtcdProcess:
        extra = list(self.extra_args)
        if self.auto_compaction_retention:
            extra += [
                "--auto-compaction-mode", "periodic",
                "--auto-compaction-retention", self.auto_compaction_retention,
            ]  # fmt: skip
        return EtcdProcess(
            name="kukeon",
            data_dir=self.etcd_data_dir,
            socket_dir=self.data_dir,
            binary=self.binary,
            log_path=self.data_dir / "etcd.log",
            extra_args=extra,
            pki=pki,
            parent_death_signal=True,
        )

    def _write_pid_file(self, pid: int) -> None:
        temporary = self.pid_file.with_name(f".{self.pid_file.name}.tmp")
        try:
            temporary.write_text(f"{pid}\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.pid_file)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            if error.filename is None:  # a write refused for space names no file
                error.filename = str(self.pid_file)
            raise

    async def _launch(self) -> None:
        pki = await asyncio.to_thread(self._prepare)
        self._pki = pki
        member = await asyncio.to_thread(self._new_member, pki)
        self._member = member
        await member.spawn()
        if member.pid is not None:
            try:
                await asyncio.to_thread(self._write_pid_file, member.pid)
            except OSError:
                # Not left running unrecorded (a full disk refuses the pidfile): the
                # supervisor's next try would start a second etcd on the same data.
                await member.kill()
                raise
        try:
            await member.wait_healthy(within=self.startup_timeout)
        except EtcdStartError:
            await member.kill()
            raise
        if await asyncio.to_thread(self.tcp_ports_file.exists):
            await self._move_peer_url_to_its_socket(member)

    async def _move_peer_url_to_its_socket(self, member: EtcdProcess) -> None:
        """A data directory an earlier kukeon served on loopback ports keeps its member's
        peer URL (``https://127.0.0.1:<port>``) in etcd's membership. etcd starts on it
        all the same (a lone member never dials its own peer URL) and publishes its new
        client URL itself; the peer URL is set to the socket here, once, so that the
        membership names no port (anyone's by now). Failing, it is tried at the next start."""
        client = EtcdClient(self.config(retry_timeout=5.0))
        try:
            async for listed in client.members():
                if listed.name == member.name and list(listed.peer_urls) != [member.peer_url]:
                    await client.update_member(listed.id, [member.peer_url])
                    log.info(
                        "embedded etcd: peer URL %s of the TCP listener replaced by %s",
                        ",".join(listed.peer_urls),
                        member.peer_url,
                    )
        except (grpc.aio.AioRpcError, aetcd.ClientError) as error:
            log.warning("embedded etcd: its peer URL was not moved to its socket: %s", error)
            return
        finally:
            await client.close()
        await asyncio.to_thread(self.tcp_ports_file.unlink, missing_ok=True)

    async def start(self) -> None:
        """Start (or start again) on its sockets; waits until etcd is healthy.

        An etcd an earlier run left on this data directory is stopped first.
        """
        if self.running:
            return
        self._stopping = False
        await self._launch()
        if self.restart_on_exit and (self._supervisor is None or self._supervisor.done()):
            self._supervisor = asyncio.create_task(
                self._supervise(), name="kukeon-embedded-etcd-supervisor"
            )

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            member = self.member
            started = loop.time()
            status = await member.wait()
            if self._stopping:
                return
            if loop.time() - started > RESTART_RESET_SECONDS:
                failures = 0
            log.warning(
                "embedded etcd (%s) exited with status %s; starting it again",
                member.client_url,
                status,
            )
            while True:
                delay = min(RESTART_MAX_SECONDS, RESTART_INITIAL_SECONDS * 2 ** min(failures, 16))
                failures += 1
                await asyncio.sleep(delay)
                try:
                    await self._launch()
                except (EtcdStartError, OSError) as error:
                    summary = str(error).splitlines()[0]
                    if host_disk_refusal(error) is not None:
                        # It names no file: the operator is told which disk to free.
                        summary += f" (in {self.data_dir}: started again once room is freed)"
                    log.error("embedded etcd did not start again: %s", summary)
                    continue
                self.restarts += 1
                log.info("embedded etcd is serving again at %s", self.endpoint)
                break

    async def _stop_supervisor(self) -> None:
        self._stopping = True
        task, self._supervisor = self._supervisor, None
        if task is not None:
            await cancel_and_wait(task)

    async def stop(self, *, grace: float = 10.0) -> None:
        await self._stop_supervisor()
        if self._member is not None:
            await self._member.stop(grace=grace)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.pid_file.unlink)

    async def kill(self) -> None:
        """SIGKILL, as a crash would: etcd's WAL must bring the data back on restart.

        A supervised etcd is killed for good (the supervisor is stopped first).
        """
        await self._stop_supervisor()
        if self._member is not None:
            await self._member.kill()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
