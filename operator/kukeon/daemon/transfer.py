"""Copying files in and out of a container, and forwarding a TCP port of a cell.

Both are WebSockets on the cell, served by the kukeond of the cell's node (any other node
forwards them there, as exec); both need what exec needs, ``create`` in the cell's realm:

```
GET .../cells/{cell}/cp?container=&path=P&mode=read     the container's P as a tar stream
GET .../cells/{cell}/cp?container=&path=P&mode=write    a tar stream unpacked beside P
GET .../cells/{cell}/cp?...&mode=write&name=N           the copy P, or P/N when P is a directory
GET .../cells/{cell}/portforward?port=N                 one TCP connection to port N
```

**cp** runs ``tar`` in the container, as an exec (the container's user, environment and
working directory), the way ``kubectl cp`` does: ``tar -c -f - -C DIR -- NAME`` to read
(``DIR``/``NAME`` are P's parent and last component) and ``tar -x -o -f - -C DIR`` to
write (``-o``: what is written belongs to the container's user). kukeond only carries the
bytes between the client and the process: nothing of the container is written on the host,
so a hostile container can make kukeond write nothing anywhere; the client that unpacks a
stream it read (``kukectl cp``) checks every member itself. A stream to write is staged
(:mod:`kukeon.daemon.cpstage`): tar writes each file under a hidden name beside its
destination, and only once tar has read all of it and succeeded does kukeond rename them
into place, through the container's root (never outside it); a copy cut short leaves what
was there and removes what it staged. With ``name`` (what ``kukectl cp SRC CELL:DEST`` sends:
SRC's own name), the stream must be one file or directory named as P's last component, and
when P is a directory in the container kukeond puts it inside, as P/N, as ``docker cp`` and
``kubectl cp`` do: kukeond looks at P through tar's root (links followed inside it only)
before tar is given a byte, and renames the stream's members so tar writes them there.
Frames as exec's: client -> server ``0`` the tar stream to write (an empty payload ends
it); server -> client ``1`` the tar stream read, ``2`` tar's stderr, ``3``
``{"exitCode": N}`` once before the close, or ``{"error": ..., "exitCode": N}`` when tar
could not run (the image has no ``tar``: 127). Output is read from the process only as
fast as the client takes it.

**portforward** connects, from the node, to port N of the cell's own address: its IP on
its space's bridge (``status.network.ip``, once the cell's node wrote the status), or
``127.0.0.1`` for a cell whose containers all use the host's network. The caller names a
port and nothing else, so the route reaches no address but the cell's. Client -> server
``0`` bytes for the connection (an empty payload: the client's side ended, the
connection's writing half is shut); server -> client ``1`` bytes from the connection
(empty: the other side ended), ``3`` ``{"error": ...}`` when the connection cannot be made
or breaks, before the close. The socket closes when both sides have ended, or either fails
or goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import posixpath
import secrets
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from kukeon.api import Cell, Kind, Realm
from kukeon.apiserver.handlers import route_patterns
from kukeon.apiserver.status import ApiError, host_disk_refused
from kukeon.cancelling import cancel_and_wait
from kukeon.controllers import Controllers
from kukeon.controllers.cell import cell_key, ordered_containers
from kukeon.controllers.cellstate import containerd_container_id
from kukeon.daemon.cpstage import (
    JOURNALS,
    CommitError,
    Upload,
    UploadJournal,
    UploadRefusedError,
)
from kukeon.daemon.lookups import cell_of, no_such_container, realm_of
from kukeon.runtime.containerd.errors import ContainerdError, ProcessNotStartableError
from kukeon.runtime.containerd.pipes import InputStalledError, read_output, write_all
from kukeon.runtime.containerd.tasks import ExitStatus, FifoIO, TaskService, TaskStatus
from kukeon.runtime.hostfiles import make_dirs
from kukeon.store import Registry

log = logging.getLogger(__name__)

CP = "cp"
PORTFORWARD = "portforward"
CHUNK = 64 * 1024
MAX_PATH = 4096
NAME_MAX = 255
"""The longest name of a file (bytes), as Linux's file systems have it."""
MAX_STDERR = 64 * 1024
"""How much of tar's stderr is passed on (its complaints; the rest is dropped)."""
STDIN_STALL_SECONDS = 60.0
"""How long tar may leave the stream to write unread before the copy fails."""
CONNECT_SECONDS = 10.0
TAR_EXIT_SECONDS = 10.0
"""How long a killed tar is waited for before an upload's staged files are removed."""


def container_path(text: str | None) -> tuple[str, str]:
    """``(parent, name)`` of a path in the container; ApiError 400 when it names nothing.

    Relative paths are the container's working directory's, as ``kubectl cp`` has them.
    ``..`` is resolved as written: the path is the container's, read and written by a
    process in the container, never by kukeond on the host.
    """
    if not text:
        raise ApiError(400, "path: required (the file or directory in the container)")
    if "\x00" in text or len(text) > MAX_PATH:
        raise ApiError(400, f"path: {text[:200]!r} is not a usable path")
    normal = posixpath.normpath(text)
    parent, name = posixpath.split(normal)
    if name in {"", ".", ".."}:
        raise ApiError(400, f"path: {text[:200]!r} names no file or directory below a directory")
    return parent or ".", name


def copy_name(text: str | None, mode: str) -> str | None:
    """``name``, the copied file's or directory's own name (ApiError 400 unless it is one
    name, and only with ``mode=write``)."""
    if text is None:
        return None
    if mode != "write":
        raise ApiError(400, "name: only a copy into the container (mode=write) takes one")
    too_long = len(text.encode(errors="surrogatepass")) > NAME_MAX
    if text in {"", ".", ".."} or "/" in text or "\x00" in text or too_long:
        raise ApiError(400, f"name: {text[:200]!r} is not the name of a file or directory")
    return text


def forward_address(cell: Cell) -> str:
    """The cell's own address, the only one ``portforward`` connects to (409 without).

    Only as the cell's node (``spec.nodeName``, which serves this route) reported it: a
    cell whose ``nodeName`` its editor changed keeps the old node's address in its status
    until the new node reports, and that address, on this node's network, may be another
    realm's cell (every node's spaces take their subnets from the same pool), reached from
    the host where no realm's network rules apply.
    """
    reporter, node = cell.status.node_name, cell.spec.node_name
    if reporter is None or reporter != node:
        said = f"node {reporter}'s" if reporter else "no node's yet"
        raise ApiError(
            409,
            f"cell {cell.metadata.name} has no address on node {node} yet: its status is "
            f"{said} (state {cell.status.state})",
        )
    ip = cell.status.network.ip
    if ip:
        return ip
    if cell.spec.containers and all(c.host_network for c in cell.spec.containers):
        return "127.0.0.1"
    raise ApiError(
        409,
        f"cell {cell.metadata.name} has no address yet (state {cell.status.state}): "
        "it is not attached to its space's network",
    )


def _port(text: str | None) -> int:
    # isascii: str.isdigit is also true of '²', which int() refuses.
    digits = text is not None and text.isascii() and text.isdigit() and len(text) <= 5
    if digits and text is not None and 1 <= (port := int(text)) <= 65535:
        return port
    raise ApiError(400, f"port: {str(text)[:40]!r} is not a port number (1-65535)")


def _cp_container(cell: Cell, wanted: str | None) -> str:
    """The container to copy in: ``wanted``, else the cell's first (400/404 otherwise)."""
    ids = [c.id for c in ordered_containers(cell)]
    if not ids:
        raise ApiError(400, f"cell {cell.metadata.name} has no containers")
    container = wanted or ids[0]
    if container not in ids:
        raise no_such_container(cell, container, ids)
    return container


class TransferRoutes:
    """The ``cp`` and ``portforward`` routes of a cell (see the module's text)."""

    def __init__(self, *, controllers: Controllers, registry: Registry) -> None:
        self.controllers = controllers
        self.registry = registry

    def add_routes(self, app: web.Application) -> None:
        _, cell_path = route_patterns(Kind.CELL)
        app.router.add_get(f"{cell_path}/{CP}", self.cp)
        app.router.add_get(f"{cell_path}/{PORTFORWARD}", self.portforward)

    async def _cell(self, request: web.Request, subresource: str) -> Cell:
        return await cell_of(self.registry, request, subresource)

    async def _realm(self, name: str) -> Realm:
        return await realm_of(self.registry, name)

    @staticmethod
    def _require_upgrade(request: web.Request, what: str) -> None:
        if not web.WebSocketResponse().can_prepare(request).ok:
            raise ApiError(400, f"{what} is a WebSocket: send an Upgrade request")

    # --- cp -------------------------------------------------------------------------------

    async def cp(self, request: web.Request) -> web.StreamResponse:
        cell = await self._cell(request, CP)
        container = _cp_container(cell, request.query.get("container"))
        mode = request.query.get("mode", "")
        if mode not in {"read", "write"}:
            raise ApiError(400, f"mode: {mode[:40]!r} is not read or write")
        parent, base = container_path(request.query.get("path"))
        name_in = copy_name(request.query.get("name"), mode)
        if mode == "read":
            command = ["tar", "-c", "-f", "-", "-C", parent, "--", base]
        else:
            command = ["tar", "-x", "-o", "-f", "-", "-C", parent]

        name = cell.metadata.name
        realm = await self._realm(cell.spec.realm_id)
        namespace = self.controllers.host.namespace_of(realm)
        _, space, stack, _ = cell_key(cell)
        cid = containerd_container_id(space=space, stack=stack, cell=name, container=container)
        containerd = self.controllers.host.containerd
        tasks = containerd.tasks(namespace)
        not_running = f"container {container} of cell {name} is not running"
        try:
            task = await tasks.get(cid)
            spec = (await containerd.containers(namespace).get(cid)).spec
        except ContainerdError:
            raise ApiError(409, not_running) from None
        if task.status != TaskStatus.RUNNING:
            raise ApiError(409, not_running)
        self._require_upgrade(request, "cp")

        process = dict(spec.get("process", {}))
        process.update(args=command, terminal=False)
        process.pop("consoleSize", None)
        # Where tar unpacks, as the container sees it (a relative path is its cwd's).
        unpack_in = posixpath.normpath(posixpath.join(str(process.get("cwd") or "/"), parent))
        socket = web.WebSocketResponse(max_msg_size=1 << 20, heartbeat=30.0)
        await socket.prepare(request)
        try:
            await self._run_tar(
                socket,
                tasks,
                cid,
                process,
                unpack_in=unpack_in if mode == "write" else None,
                copy=(base, name_in) if name_in is not None else None,
                where=(container, name),
            )
        finally:
            await socket.close()
        return socket

    async def _run_tar(
        self,
        socket: web.WebSocketResponse,
        tasks: TaskService,
        cid: str,
        process: dict[str, Any],
        *,
        unpack_in: str | None,
        copy: tuple[str, str] | None,
        where: tuple[str, str],
    ) -> None:
        """Exec tar (``process``) in container ``cid`` and carry its streams over ``socket``
        until it exits; the exit status, or what went wrong, as the last frame. An upload
        (``unpack_in``: the directory tar unpacks in; ``copy``: see :class:`Upload`) is
        staged, and committed only once tar has succeeded (:mod:`kukeon.daemon.cpstage`)."""
        container, name = where
        exec_id = f"cp-{secrets.token_hex(6)}"
        state = Path(self.controllers.host.settings.state_dir)
        fifo_dir = state / "exec" / exec_id
        if not await session_directory(socket, fifo_dir):
            return
        fifos = FifoIO(fifo_dir, terminal=False, stdin=unpack_in is not None)
        upload = None
        if unpack_in is not None:
            journal = state / JOURNALS / f"{exec_id}.jsonl"
            upload = Upload(unpack_in, UploadJournal(journal, tasks.namespace, cid), copy=copy)
        waiting: asyncio.Future[ExitStatus] | None = None
        try:
            io = await fifos.open()
            await tasks.exec(cid, exec_id, process=process, io=io)
            waiting = asyncio.ensure_future(tasks.wait(cid, exec_id=exec_id))
            pid = await tasks.start(cid, exec_id=exec_id)
            if upload is not None and fifos.stdin_fd is not None:
                await upload.start(pid, fifos.stdin_fd, within=STDIN_STALL_SECONDS, chunk=CHUNK)
            status = await _carry(
                socket,
                fifos,
                waiting,
                close_stdin=lambda: tasks.close_stdin(cid, exec_id=exec_id),
                upload=upload,
            )
            if status is not None:
                if upload is not None and status.code == 0:
                    await upload.commit()
                await socket.send_bytes(b"\x03" + json.dumps({"exitCode": status.code}).encode())
        except ProcessNotStartableError as error:
            await _send_last(socket, _not_startable(error, container, name))
        except CommitError as error:
            failed = f"copying into {container}: not every file could be put in place: {error}"
            await _send_last(socket, {"error": failed, "exitCode": 1})
        except (ContainerdError, InputStalledError, UploadRefusedError) as error:
            await _send_last(socket, {"error": f"copying in {container}: {error}"})
        except ConnectionError:
            # The client went away (a send waiting on it fails with a bare "Connection
            # lost", not a reset): the process is killed below.
            pass
        finally:
            await _end_tar(tasks, cid, exec_id, waiting, upload)
            fifos.close()
            await asyncio.to_thread(shutil.rmtree, fifo_dir, True)

    # --- portforward ----------------------------------------------------------------------

    async def portforward(self, request: web.Request) -> web.StreamResponse:
        cell = await self._cell(request, PORTFORWARD)
        port = _port(request.query.get("port"))
        host = forward_address(cell)
        self._require_upgrade(request, "portforward")
        socket = web.WebSocketResponse(max_msg_size=1 << 20, heartbeat=30.0)
        await socket.prepare(request)
        where = f"port {port} of cell {cell.metadata.name} ({host})"
        try:
            try:
                async with asyncio.timeout(CONNECT_SECONDS):
                    reader, writer = await asyncio.open_connection(host, port, limit=CHUNK)
            except (OSError, TimeoutError) as error:
                why = (
                    os.strerror(error.errno)
                    if isinstance(error, OSError) and error.errno
                    else str(error) or "timed out"
                )
                await _send_last(socket, {"error": f"cannot connect to {where}: {why}"})
                return socket
            try:
                problem = await _splice(socket, reader, writer)
                if problem:
                    broke = f"the connection to {where} broke: {problem}"
                    await _send_last(socket, {"error": broke})
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        except ConnectionError:
            pass  # the client went away
        finally:
            await socket.close()
        return socket


async def _send_last(socket: web.WebSocketResponse, status: dict[str, object]) -> None:
    with contextlib.suppress(ConnectionError):
        await socket.send_bytes(b"\x03" + json.dumps(status).encode())


def _not_startable(error: ProcessNotStartableError, container: str, name: str) -> dict[str, object]:
    code = 127 if error.reason == "CommandNotFound" else 126
    message = (
        f"container {container} of cell {name} has no tar: copying runs tar in the "
        "container, so the image needs one (on its PATH)"
        if code == 127
        else f"tar cannot run in container {container} of cell {name}: {error.detail}"
    )
    return {"error": message, "exitCode": code}


async def _end_tar(
    tasks: TaskService,
    cid: str,
    exec_id: str,
    waiting: asyncio.Future[ExitStatus] | None,
    upload: Upload | None,
) -> None:
    """Kill tar if it still runs and delete its process; an upload's staged files are
    removed once tar is seen gone (it writes no more), unless they were committed."""
    try:
        if waiting is not None and not waiting.done():
            with contextlib.suppress(ContainerdError):
                await tasks.kill(cid, signal.SIGKILL, exec_id=exec_id)
            if upload is not None:
                with contextlib.suppress(ContainerdError, TimeoutError):
                    async with asyncio.timeout(TAR_EXIT_SECONDS):
                        await asyncio.shield(waiting)
            waiting.cancel()
        if upload is not None:
            await upload.close()
    finally:
        with contextlib.suppress(ContainerdError):
            await tasks.delete_process(cid, exec_id)


async def session_directory(socket: web.WebSocketResponse, directory: Path) -> bool:
    """Make an exec or cp session's FIFO directory; whether it was made. A full state
    directory's refusal is the session's last frame, which kukectl prints: the upgrade was
    answered already, so a Status can no longer be (before, the error ended the socket
    without a word: "the stream ended before tar...", or for exec the 400 "exec is a
    WebSocket" kukectl got when it asked again why its upgrade had failed)."""
    try:
        await asyncio.to_thread(make_dirs, directory)
    except OSError as error:
        refused = host_disk_refused(error)
        if refused is None:
            raise
        await _send_last(socket, {"error": refused.message})
        return False
    return True


async def _carry(
    socket: web.WebSocketResponse,
    fifos: FifoIO,
    waiting: asyncio.Future[ExitStatus],
    *,
    close_stdin: Callable[[], Awaitable[None]],
    upload: Upload | None = None,
) -> ExitStatus | None:
    """Carry tar's streams until it exits; its exit status (None: the client went away).
    An ``upload``'s frames go to tar through its staging."""

    async def output(fd: int, channel: bytes, limit: int | None) -> None:
        sent = 0
        while data := await read_output(fd, waiting):
            if limit is not None:
                if sent >= limit:
                    continue  # keep reading (tar must not block), pass nothing on
                data = data[: limit - sent]
            sent += len(data)
            await socket.send_bytes(channel + data)  # waits while the client is behind

    async def from_client() -> None:
        async for message in socket:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, payload = message.data[:1], message.data[1:]
            if channel != b"\x00" or fifos.stdin_fd is None:
                continue
            if upload is not None:
                await upload.feed(payload)  # its end: once all of it reached tar
            elif payload:
                with contextlib.suppress(OSError):  # tar stopped reading: its status says why
                    await write_all(fifos.stdin_fd, payload, within=STDIN_STALL_SECONDS)
            if not payload:
                os.close(fifos.stdin_fd)
                fifos.stdin_fd = None
                with contextlib.suppress(ContainerdError):
                    await close_stdin()

    readers = [
        asyncio.ensure_future(output(fd, channel, limit))
        for fd, channel, limit in (
            (fifos.stdout_fd, b"\x01", None),
            (fifos.stderr_fd, b"\x02", MAX_STDERR),
        )
        if fd is not None
    ]
    receiver: asyncio.Future[Any] = asyncio.ensure_future(from_client())
    finished: asyncio.Future[Any] = asyncio.gather(*readers, asyncio.shield(waiting))
    try:
        done, _ = await asyncio.wait(
            [finished, receiver],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if finished not in done:
            if isinstance(stopped := receiver.exception(), InputStalledError | UploadRefusedError):
                raise stopped  # tar left the stream unread too long, or it was refused
            return None  # the client closed the socket before tar was done
        await finished
        return waiting.result()
    finally:
        # The gather too: cancelled, it ends with an error someone must retrieve, or asyncio
        # logs 'exception was never retrieved' at ERROR for a client that just went away.
        await cancel_and_wait(finished, *readers, receiver)


async def _splice(
    socket: web.WebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> str | None:
    """Copy both ways until both sides ended; what broke, if anything did."""
    problem: list[str] = []

    async def to_client() -> None:
        try:
            while data := await reader.read(CHUNK):
                await socket.send_bytes(b"\x01" + data)  # waits while the client is behind
        except OSError as error:
            problem.append(error.strerror or type(error).__name__)
            return
        await socket.send_bytes(b"\x01")  # the other side ended

    async def to_target() -> None:
        async for message in socket:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, payload = message.data[:1], message.data[1:]
            if channel != b"\x00":
                continue
            try:
                if not payload:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(payload)
                await writer.drain()  # the client's next frame waits for the target
            except OSError as error:
                problem.append(error.strerror or type(error).__name__)
                return
        raise ConnectionResetError  # the client closed the socket: end everything

    sending = asyncio.ensure_future(to_client())
    receiving = asyncio.ensure_future(to_target())
    pending: set[asyncio.Future[None]] = {sending, receiving}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None or problem:
                    return problem[0] if problem else None
        return None
    finally:
        await cancel_and_wait(sending, receiving)
