"""One probe check: exec in the container, HTTP GET or TCP connect to the cell's address.

Each check ends within the probe's ``timeoutSeconds`` and answers success or failure with a
short message (the output, the HTTP status, the connection error), never raises for what
the workload does: a check that cannot run at all (no address, exec refused by containerd)
is a failure with its reason, as in Kubernetes.

- ``exec`` runs the command through containerd's exec with the container's own process
  spec (user, environment, working directory) and the command replaced; its output is
  read from FIFOs and capped (the rest is drained and dropped, never stored); on timeout
  the process is SIGKILLed and always deleted, so no process is left behind.
- ``httpGet`` connects from the host to the cell's address (``httpcheck``), a new connection
  per request; a redirect to the cell's own address is followed (up to 10), one to
  another host is not, as kubelet; a status in [200, 400) at the end is success, a 3xx
  with a warning (kubelet's ``ProbeWarning`` Event).
- ``tcpSocket`` opens and closes a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kukeon.api.probes import PROBE_OUTPUT_MAX, ExecAction, HTTPGetAction, Probe, TCPSocketAction
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdError
from kukeon.runtime.containerd.pipes import read_output
from kukeon.runtime.containerd.tasks import ExitStatus, FifoIO

from .httpcheck import REDIRECTS_MAX, HttpReplyError, HttpTarget, http_get, redirect_target


@dataclass(frozen=True, slots=True)
class CheckResult:
    success: bool
    message: str = ""
    warning: str | None = None
    """A success to report (kubelet's probe.Warning): an httpGet answered by a redirect it
    did not follow. Said without the body, which may change at every check."""


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where a container's probes go."""

    namespace: str
    container_id: str
    """containerd's id of the container (exec)."""
    address: str | None
    """The cell's IP (127.0.0.1 for hostNetwork); None while it has none."""
    fifo_root: Path
    """Where exec probes' FIFOs are made (kukeond's state directory)."""


EXEC_SLOTS = 8
"""Exec checks in flight at once per containerd namespace, i.e. per realm: each is a runc
exec (a process started in the container), the costly kind; the others of the realm wait
for a slot. Per realm, because a check holds its slot up to its ``timeoutSeconds`` (an
hour at most): with one pool for the node, one realm's eight slow exec probes held every
slot and no other realm's exec probe ran, so their cells never got Ready."""


class ExecSlots:
    """``EXEC_SLOTS`` semaphores, one per namespace, each kept only while held or awaited."""

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._pools: dict[str, tuple[asyncio.Semaphore, int]] = {}
        """namespace -> (its semaphore, the checks holding or awaiting it)."""

    def __len__(self) -> int:
        return len(self._pools)

    @contextlib.asynccontextmanager
    async def held(self, namespace: str) -> AsyncIterator[None]:
        semaphore, users = self._pools.get(namespace, (asyncio.Semaphore(self._slots), 0))
        self._pools[namespace] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._pools[namespace]
            if users == 1:
                del self._pools[namespace]
            else:
                self._pools[namespace] = (semaphore, users - 1)


def truncate(text: str, limit: int = PROBE_OUTPUT_MAX) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Prober:
    """Runs checks; one per kukeond (its HTTP session is shared by every check)."""

    def __init__(self, containerd: ContainerdClient, *, exec_slots: int = EXEC_SLOTS) -> None:
        self.containerd = containerd
        self._exec_slots = ExecSlots(exec_slots)

    async def close(self) -> None:
        """Nothing is held between checks (each opens its own connection)."""

    async def check(self, probe: Probe, target: ProbeTarget) -> CheckResult:
        seconds = float(probe.timeout_seconds)
        try:
            if probe.exec is not None:
                # The wait for a slot (of the realm's) is not the check's time.
                async with self._exec_slots.held(target.namespace):
                    return await self._exec(probe.exec, target, seconds)
            if target.address is None:
                return CheckResult(False, "the cell has no address yet")
            if probe.http_get is not None:
                return await self._http(probe.http_get, target.address, seconds)
            assert probe.tcp_socket is not None
            return await self._tcp(probe.tcp_socket, target.address, seconds)
        except ContainerdError as error:
            return CheckResult(False, truncate(f"probe could not run: {error}"))

    # --- tcpSocket ----------------------------------------------------------------------

    async def _tcp(self, action: TCPSocketAction, address: str, seconds: float) -> CheckResult:
        try:
            async with asyncio.timeout(seconds):
                _, writer = await asyncio.open_connection(address, action.port)
        except TimeoutError:
            return CheckResult(
                False, f"dial tcp {address}:{action.port}: timed out after {seconds:g}s"
            )
        except OSError as error:
            why = os.strerror(error.errno) if error.errno else str(error)
            return CheckResult(False, f"dial tcp {address}:{action.port}: {why}")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return CheckResult(True)

    # --- httpGet ------------------------------------------------------------------------

    async def _http(self, action: HTTPGetAction, address: str, seconds: float) -> CheckResult:
        """GET the path; a redirect to the cell's own address is followed (up to
        ``REDIRECTS_MAX``, the reply at the end decides), one to another host is not (its
        3xx is the success), as kubelet does; the timeout bounds the whole chain."""
        target = HttpTarget(action.scheme.lower(), action.port, action.path)
        url = target.url(address)
        headers = [(header.name, header.value) for header in action.http_headers]
        try:
            async with asyncio.timeout(seconds):
                for _ in range(REDIRECTS_MAX + 1):
                    reply = await http_get(
                        address,
                        target.port,
                        target.path,
                        headers,
                        tls=target.scheme == "https",
                        limit=PROBE_OUTPUT_MAX,
                    )
                    followed = redirect_target(reply, address, target)
                    if followed is None:
                        break
                    target, url = followed, followed.url(address)
                else:
                    return CheckResult(False, f"GET {url}: stopped after {REDIRECTS_MAX} redirects")
        except TimeoutError:
            return CheckResult(False, f"GET {url}: timed out after {seconds:g}s")
        except ssl.SSLError as error:
            return CheckResult(False, truncate(f"GET {url}: TLS: {error}"))
        except OSError as error:
            why = os.strerror(error.errno) if error.errno else str(error)
            return CheckResult(False, truncate(f"GET {url}: {why}"))
        except HttpReplyError as error:
            return CheckResult(False, truncate(f"GET {url}: {error}"))
        if 300 <= reply.status < 400:
            # kubelet's probe.Warning: a success, reported ("Probe terminated redirects").
            to = f"to {reply.location}" if reply.location else "without a Location"
            said = f"probe terminated redirects: GET {url}: HTTP {reply.status} {to}"
            return CheckResult(True, warning=truncate(f"{said}, not followed"))
        if 200 <= reply.status < 300:
            return CheckResult(True)
        text = reply.body.decode(errors="replace")
        return CheckResult(False, truncate(f"GET {url}: HTTP {reply.status}: {text}"))

    # --- exec ---------------------------------------------------------------------------

    async def _exec(self, action: ExecAction, target: ProbeTarget, seconds: float) -> CheckResult:
        tasks = self.containerd.tasks(target.namespace)
        container = await self.containerd.containers(target.namespace).get(target.container_id)
        process: dict[str, Any] = dict(container.spec.get("process", {}))
        process.update(args=list(action.command), terminal=False)
        process.pop("consoleSize", None)
        exec_id = f"probe-{secrets.token_hex(6)}"
        fifo_dir = target.fifo_root / exec_id
        fifos = FifoIO(fifo_dir, terminal=False, stdin=False)
        try:
            io = await fifos.open()
            return await self._run_exec(
                tasks, target.container_id, exec_id, process, io, fifos, seconds
            )
        finally:
            fifos.close()
            await asyncio.to_thread(shutil.rmtree, fifo_dir, True)

    async def _run_exec(
        self,
        tasks: Any,
        cid: str,
        exec_id: str,
        process: Mapping[str, Any],
        io: Any,
        fifos: FifoIO,
        seconds: float,
    ) -> CheckResult:
        waiting: asyncio.Future[ExitStatus] | None = None
        output = bytearray()
        try:
            await tasks.exec(cid, exec_id, process=process, io=io)
            waiting = asyncio.ensure_future(tasks.wait(cid, exec_id=exec_id))
            await tasks.start(cid, exec_id=exec_id)
            try:
                async with asyncio.timeout(seconds):
                    await _drain(fifos, waiting, output)
                    # Shielded: the timeout must not cancel the wait itself, or the
                    # process would look finished and never be killed.
                    status = await asyncio.shield(waiting)
            except TimeoutError:
                said = _text(output).strip()
                return CheckResult(
                    False,
                    truncate(
                        f"command timed out after {seconds:g}s" + (f": {said}" if said else "")
                    ),
                )
        finally:
            await tasks.end_process(cid, exec_id, waiting)
        if status.code == 0:
            return CheckResult(True)
        said = _text(output).strip()
        return CheckResult(
            False, truncate(f"command exited with {status.code}" + (f": {said}" if said else ""))
        )


def _text(output: bytearray) -> str:
    return output[:PROBE_OUTPUT_MAX].decode(errors="replace")


async def _drain(fifos: FifoIO, exited: asyncio.Future[ExitStatus], output: bytearray) -> None:
    """Read stdout and stderr to their ends, keeping the first bytes only."""

    async def one(fd: int | None) -> None:
        if fd is None:
            return
        # Past the cap the FIFO is no longer read: a command that floods its output blocks
        # on a full pipe until its timeout instead of keeping kukeond busy reading.
        while len(output) < PROBE_OUTPUT_MAX and (
            chunk := await read_output(fd, exited, quiet=0.2)
        ):
            output.extend(chunk[: PROBE_OUTPUT_MAX - len(output)])

    await asyncio.gather(one(fifos.stdout_fd), one(fifos.stderr_fd))
