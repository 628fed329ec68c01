"""A private etcd process: kukeond's store when no endpoints are configured, and the tests'.

``EtcdProcess`` runs one member (Debian's ``etcd`` binary) on loopback ports with its own
data directory; a set of them forms a cluster. ``EmbeddedEtcd`` is the single-member case
kukeond uses: it remembers its ports next to its data, so a restart serves the same data
on the same address. Everything is asyncio: the process is an asyncio subprocess and
readiness is polled over ``/health`` without blocking the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .connection import EtcdConfig

LOOPBACK = "127.0.0.1"


class EtcdStartError(RuntimeError):
    """etcd did not become healthy; the message carries the end of its log."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As etcd (Go) binds: connections of the previous run in TIME_WAIT don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def find_etcd_binary() -> str:
    found = shutil.which("etcd") or (
        "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None
    )
    if found is None:
        raise EtcdStartError("the `etcd` binary is not installed (Debian package etcd-server)")
    return found


async def http_health(
    host: str, port: int, *, wait_seconds: float = 2.0, tls: ssl.SSLContext | None = None
) -> bool:
    """True when etcd's ``/health`` says the member has a leader and serves."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls), wait_seconds
        )
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), wait_seconds)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
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
        client_port: int,
        peer_port: int,
        initial_cluster: str | None = None,
        cluster_token: str = "kukeon-etcd",
        binary: str | None = None,
        log_path: Path | None = None,
        host: str = LOOPBACK,
        extra_args: Sequence[str] = (),
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``client_tls``: serve clients over https (``extra_args`` carry etcd's cert flags);
        the context is what the health check dials with."""
        self.name = name
        self.client_tls = client_tls
        self.data_dir = data_dir
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.cluster_token = cluster_token
        self.binary = binary
        self.log_path = log_path or data_dir.with_name(data_dir.name + ".log")
        self.extra_args = list(extra_args)
        self._process: asyncio.subprocess.Process | None = None

    @property
    def client_url(self) -> str:
        scheme = "https" if self.client_tls is not None else "http"
        return f"{scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def command(self) -> list[str]:
        binary = self.binary or find_etcd_binary()
        return [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.cluster_token,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-level", "warn",
            *self.extra_args,
        ]  # fmt: skip

    async def spawn(self) -> None:
        """Start the process without waiting (a cluster member is healthy only with quorum)."""
        if self.running:
            return
        command = self.command()

        def open_log() -> Any:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            return self.log_path.open("ab")

        log_file = await asyncio.to_thread(open_log)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()

    async def wait_healthy(self, *, within: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if not self.running:
                raise EtcdStartError(
                    f"etcd member {self.name} exited with status "
                    f"{self._process.returncode if self._process else '?'}: {await self.log_tail()}"
                )
            if await http_health(self.host, self.client_port, tls=self.client_tls):
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
            await asyncio.wait_for(process.wait(), grace)
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


class EmbeddedEtcd:
    """kukeond's private single-member etcd, kept in ``data_dir``.

    ``data_dir/etcd`` holds etcd's data, ``data_dir/ports.json`` the ports chosen on the
    first start (reused while they are free), ``data_dir/etcd.log`` its log. By default
    history older than ``auto_compaction_retention`` is compacted so a long-running node
    does not grow without bound (watchers then relist, as they must with any etcd).
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        binary: str | None = None,
        host: str = LOOPBACK,
        auto_compaction_retention: str | None = "1h",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.host = host
        self.auto_compaction_retention = auto_compaction_retention
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self._member: EtcdProcess | None = None

    @property
    def ports_file(self) -> Path:
        return self.data_dir / "ports.json"

    @property
    def member(self) -> EtcdProcess:
        if self._member is None:
            raise RuntimeError("EmbeddedEtcd is not started")
        return self._member

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: what an ``EtcdConfig`` needs."""
        return self.member.client_url

    @property
    def running(self) -> bool:
        return self._member is not None and self._member.running

    def config(self, **overrides: Any) -> EtcdConfig:
        return EtcdConfig(endpoints=[self.endpoint], **overrides)

    def _choose_ports(self, *, fresh: bool) -> tuple[int, int]:
        if not fresh and self.ports_file.exists():
            try:
                saved = json.loads(self.ports_file.read_text())
                client, peer = int(saved["client"]), int(saved["peer"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
            else:
                if port_is_free(client, self.host) and port_is_free(peer, self.host):
                    return client, peer
        client, peer = free_port(self.host), free_port(self.host)
        while peer == client:
            peer = free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports_file.write_text(json.dumps({"client": client, "peer": peer}))
        return client, peer

    def _new_member(self, client_port: int, peer_port: int) -> EtcdProcess:
        extra = list(self.extra_args)
        if self.auto_compaction_retention:
            extra += [
                "--auto-compaction-mode", "periodic",
                "--auto-compaction-retention", self.auto_compaction_retention,
            ]  # fmt: skip
        return EtcdProcess(
            name="kukeon",
            data_dir=self.data_dir / "etcd",
            client_port=client_port,
            peer_port=peer_port,
            binary=self.binary,
            log_path=self.data_dir / "etcd.log",
            host=self.host,
            extra_args=extra,
        )

    async def start(self) -> None:
        """Start (or start again) on the remembered ports; waits until etcd is healthy."""
        if self.running:
            return
        last_error: EtcdStartError | None = None
        for attempt in range(3):
            # A port picked as free can be taken by someone else before etcd binds it.
            ports = await asyncio.to_thread(self._choose_ports, fresh=attempt > 0)
            self._member = self._new_member(*ports)
            try:
                await self._member.start(within=self.startup_timeout)
                return
            except EtcdStartError as error:
                await self._member.kill()
                last_error = error
                if "address already in use" not in str(error):
                    raise
        assert last_error is not None
        raise last_error

    async def stop(self, *, grace: float = 10.0) -> None:
        if self._member is not None:
            await self._member.stop(grace=grace)

    async def kill(self) -> None:
        """SIGKILL, as a crash would: etcd's WAL must bring the data back on restart."""
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
