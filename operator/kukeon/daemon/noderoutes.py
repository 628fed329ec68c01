"""API routes that need this node's host: container logs, signals, exec, attach, images.

The API server itself only knows the registry (`kukeon.apiserver` imports api and store);
what touches containerd or the state directory is added here, by the daemon that owns
those, onto the same aiohttp application, so the same authentication and authorization
middleware guards them:

```
GET  .../cells/{cell}/log?container=&tailLines=N&follow=&timestamps=&sinceSeconds=|sinceTime=
     &previous=&limitBytes=N&stream=All|Stdout|Stderr              text/plain stream
POST .../cells/{cell}/kill?signal=TERM&container=              signal running tasks
GET|POST|DELETE .../realms/{realm}/images[/...]                 a realm's images (imageroutes)
GET  .../cells/{cell}/exec?container=&command=..&command=..&tty=&stdin=   WebSocket
GET  .../cells/{cell}/attach?container=                        WebSocket (see attach.py)
GET  .../cells/{cell}/cp?path=&mode=read|write, /portforward?port=   WebSocket (transfer.py)
```

The exec stream frames every binary message with a channel byte, as Kubernetes' channel
protocol does: client -> server `0` stdin (an empty payload closes stdin), `4` a JSON
`{"width": W, "height": H}` terminal resize; server ->
client `1` stdout, `2` stderr, `3` a JSON `{"exitCode": N}` sent once before the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import WSMsgType, web

from kukeon.api import Cell, Kind, Realm
from kukeon.api.signals import parse_signal, signal_name
from kukeon.apiserver.handlers import route_patterns
from kukeon.apiserver.request import refuse_body
from kukeon.apiserver.status import ApiError
from kukeon.apiserver.watchstream import client_gone
from kukeon.cancelling import cancel_and_wait
from kukeon.client.paths import LOG_STREAM_HEADER
from kukeon.controllers import Controllers
from kukeon.controllers.cell import cell_key, ordered_containers
from kukeon.controllers.cellfiles import CellFiles
from kukeon.controllers.cellstate import containerd_container_id
from kukeon.daemon.lookups import cell_of, no_such_container, realm_of
from kukeon.daemon.terminalsize import TERMINAL_MAX, resize_of
from kukeon.daemon.transfer import session_directory
from kukeon.runtime.containerd.archivesize import IMAGE_IMPORT_MAX_BYTES
from kukeon.runtime.containerd.errors import (
    ContainerdError,
    ProcessNotStartableError,
    TaskNotFoundError,
)
from kukeon.runtime.containerd.logrecords import (
    LogRecord,
    RenderOptions,
    ends_open,
    render,
)
from kukeon.runtime.containerd.pipes import InputStalledError, read_output, write_all
from kukeon.runtime.containerd.tasks import ExitStatus, FifoIO, TaskStatus
from kukeon.store import Registry

from .attach import attach_target, serve_attach
from .imageroutes import ImageRoutes
from .logend import FollowEnd, follow_end
from .logfollow import LogFollower
from .transfer import TransferRoutes

log = logging.getLogger(__name__)

FOLLOW_POLL_SECONDS = 0.2
"""How often a followed log is read for new lines."""
CELL_CHECK_SECONDS = 1.0
"""How often a followed log's route asks the registry whether its cell still exists."""
WRITE_DEADLINE_SECONDS = 30.0
"""How long one write of a log stream may wait on a client that reads nothing; then the
stream ends (a client that stopped reading does not hold kukeond's task for ever)."""
STDIN_STALL_SECONDS = 60.0
"""How long an exec'd process may leave a client's input unread before the session ends."""
OUTPUT_QUEUE_FRAMES = 16
"""Output frames (of at most 64 KiB) read ahead of a client that takes them slowly."""
MAX_TAIL_LINES = 100_000
MAX_SINCE_SECONDS = 10 * 365 * 24 * 3600
MAX_LIMIT_BYTES = 2**63 - 1
"""kube-apiserver's limitBytes is an int64: a larger one is no limit a log reaches."""


def _decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` is also true of '²', which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _at_most(digits: str, limit: int) -> int:
    """The decimal ``digits`` as a number, ``limit`` when over it (``int`` refuses over
    4,300 digits: their length decides first)."""
    significant = digits.lstrip("0")
    return limit if len(significant) > len(str(limit)) else min(int(significant or "0"), limit)


def _parse_signal(text: str) -> int:
    # docker's names (kill -s SIGRTMIN+3 stops a systemd container) and numbers 1 to 64.
    found = parse_signal(text)
    if found is not None:
        return found
    if _decimal(text.strip()):
        raise ApiError(400, f"signal: {text[:40]!r} is not a signal number")
    raise ApiError(400, f"signal: unknown signal {text[:40]!r}")


LOG_STREAMS: dict[str, str | None] = {"All": None, "Stdout": "stdout", "Stderr": "stderr"}
"""``stream``'s values, as kube-apiserver's (``PodLogOptions.stream``), and the records each
keeps."""


@dataclass(frozen=True)
class LogQuery:
    """The log route's parameters, as ``kubectl logs`` names them, each checked (400)."""

    tail: int | None
    follow: bool
    previous: bool
    render: RenderOptions
    limit: int | None = None
    """``limitBytes``: the stream ends after that many bytes, cut where they end (mid-line,
    as kube-apiserver cuts), followed or not; None: no limit."""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> LogQuery:
        tail: int | None = None
        if (text := query.get("tailLines")) is not None:
            if not _decimal(text):
                raise ApiError(400, f"tailLines: {text[:40]!r} is not a whole number >= 0")
            # Any larger count is "all we keep", as a larger sinceSeconds is "all".
            tail = _at_most(text, MAX_TAIL_LINES)
        since: datetime | None = None
        if (text := query.get("sinceSeconds")) is not None:
            if not _decimal(text) or not text.strip("0"):
                raise ApiError(
                    400, f"sinceSeconds: {text[:40]!r} is not a whole number of seconds > 0"
                )
            since = datetime.now(UTC) - timedelta(seconds=_at_most(text, MAX_SINCE_SECONDS))
        if (text := query.get("sinceTime")) is not None:
            if since is not None:
                raise ApiError(400, "sinceSeconds and sinceTime: give at most one")
            try:
                since = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ApiError(400, f"sinceTime: {text[:40]!r} is not an RFC 3339 time") from None
            if since.tzinfo is None:
                raise ApiError(400, f"sinceTime: {text[:40]!r} has no time zone")
        stream = query.get("stream", "All")
        if stream not in LOG_STREAMS:
            raise ApiError(400, f"stream: {stream[:40]!r} is not one of All, Stdout, Stderr")
        if tail is not None and stream != "All":
            # kube-apiserver's rule: a tail is counted over both streams as they were written.
            raise ApiError(400, "tailLines and stream: a tail is of both streams, stream All")
        limit: int | None = None
        if (text := query.get("limitBytes")) is not None:
            if not _decimal(text) or not text.strip("0"):
                raise ApiError(400, f"limitBytes: {text[:40]!r} is not a whole number of bytes > 0")
            limit = _at_most(text, MAX_LIMIT_BYTES)
        return cls(
            tail=tail,
            follow=_flag(query, "follow"),
            previous=_flag(query, "previous"),
            render=RenderOptions(
                timestamps=_flag(query, "timestamps"), since=since, stream=LOG_STREAMS[stream]
            ),
            limit=limit,
        )


def _console_size(query: Mapping[str, str]) -> dict[str, int] | None:
    """``width``/``height`` of an exec's terminal (both or neither, 1..10000), or None."""
    width, height = query.get("width"), query.get("height")
    if width is None and height is None:
        return None
    try:
        size = {"width": int(width or ""), "height": int(height or "")}
    except ValueError:
        raise ApiError(400, "width and height: whole numbers, both or neither") from None
    if not all(1 <= value <= TERMINAL_MAX for value in size.values()):
        raise ApiError(400, f"width and height: between 1 and {TERMINAL_MAX}")
    return size


class ClientStalledError(Exception):
    """A log stream's client took nothing for `WRITE_DEADLINE_SECONDS`."""


async def _write_within(response: web.StreamResponse, data: bytes) -> None:
    """Write `data`; ClientStalledError when the client has not taken it within the deadline."""
    try:
        async with asyncio.timeout(WRITE_DEADLINE_SECONDS):
            await response.write(data)
    except TimeoutError:
        raise ClientStalledError from None


class _LogSink:
    """Where a log stream's bytes go: the response, within the client's ``limitBytes``."""

    def __init__(self, response: web.StreamResponse, limit: int | None) -> None:
        self.response = response
        self.left = limit

    @property
    def full(self) -> bool:
        """The limit is reached: the stream ends (a followed one too)."""
        return self.left == 0

    async def write(self, data: bytes) -> None:
        if self.left is not None:
            data = data[: self.left]
            self.left -= len(data)
        await _write_within(self.response, data)


def _next_rendered(
    history: Iterator[list[LogRecord]], options: RenderOptions, open_line: bool
) -> tuple[bytes, bool] | None:
    """The next chunk of a log's history as its text and whether it ends inside a line;
    None at the end. Blocking: for a thread."""
    chunk = next(history, None)
    if chunk is None:
        return None
    kept = options.keep(chunk)
    return render(kept, options, open_line=open_line), ends_open(kept) if kept else open_line


async def _send_chunks(
    sink: _LogSink,
    chunks: Iterator[list[LogRecord]],
    options: RenderOptions,
    open_line: bool,
) -> bool:
    """Read, render (each chunk in a thread) and send ``chunks`` one after the other, until
    they end or the client's ``limitBytes`` are sent; whether the text ends inside a line."""
    while (
        not sink.full
        and (rendered := await asyncio.to_thread(_next_rendered, chunks, options, open_line))
        is not None
    ):
        data, open_line = rendered
        if data:
            await sink.write(data)
    return open_line


def _close_chunks(chunks: Generator[list[LogRecord]]) -> None:
    """Close a log's chunks (the file it holds open), unless a thread still reads the next
    one (its request was cancelled meanwhile): that thread's generator ends unreferenced."""
    with contextlib.suppress(ValueError):  # "generator already executing"
        chunks.close()


def _flag(query: Mapping[str, str], name: str) -> bool:
    text = query.get(name, "false").lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"", "0", "false", "no"}:
        return False
    raise ApiError(400, f"{name}: {text[:40]!r} is not true or false")


def _never_started(cell: Cell, container: str) -> str:
    """Why a container has no log on its node: it has not started there (yet), as the
    cell's status says (kube-apiserver's 400 'container ... is waiting to start')."""
    status = cell.status
    said = next((c for c in status.containers if c.id == container), None)
    reason = (said.reason if said is not None else None) or status.reason
    message = (said.message if said is not None else None) or status.message
    why = f" ({status.state}: {reason}: {message})" if reason and message else ""
    return (
        f"container {container} of cell {cell.metadata.name} has not started on its node "
        f"yet, so it has no log{why}; `logs -f` waits for it"
    )


def _no_room_for(directory: Path) -> str | None:
    """Why a log file is missing when its disk is full: the container's logger makes it once
    there is room (until then its output is dropped, and said in the log once made).
    Blocking."""
    try:
        facts = os.statvfs(directory)
    except OSError:
        return None
    if facts.f_bavail and facts.f_favail:
        return None
    return (
        f"no log file yet: the node's disk has no room for it ({facts.f_bavail * facts.f_frsize}"
        f" bytes and {facts.f_favail} inodes free in {directory}); the container's output is "
        "dropped until there is, then said in its log"
    )


class ClientLeftError(Exception):
    """An exec's client closed its socket before the process ended."""


async def _carry_input(
    socket: web.WebSocketResponse,
    fifos: FifoIO,
    *,
    close_stdin: Callable[[], Awaitable[None]],
    resize: Callable[[int, int], Awaitable[None]],
) -> None:
    """Write the socket's stdin frames to the process and pass its resizes on."""
    async for message in socket:
        if message.type != WSMsgType.BINARY or not message.data:
            continue
        channel, payload = message.data[:1], message.data[1:]
        # Input or a resize racing the process's exit is not an error: the exit code is
        # the answer the client waits for.
        if channel == b"\x00" and fifos.stdin_fd is not None:
            if payload:
                with contextlib.suppress(OSError):  # InputStalledError ends the session
                    await write_all(fifos.stdin_fd, payload, within=STDIN_STALL_SECONDS)
            else:
                os.close(fifos.stdin_fd)
                fifos.stdin_fd = None
                with contextlib.suppress(ContainerdError):
                    await close_stdin()  # EOF for the process
        elif channel == b"\x04" and (size := resize_of(payload)) is not None:
            with contextlib.suppress(ContainerdError):
                await resize(*size)


async def _carry_output(
    socket: web.WebSocketResponse, fifos: FifoIO, exited: asyncio.Future[ExitStatus]
) -> None:
    """Send the process's output, in the order it is read, until every stream has ended.

    Through a bounded queue: a client that takes the output slowly stops the reading (the
    process then waits on its pipe), so nothing piles up in kukeond; and every stream is
    read to its end of file, so the last bytes written before the exit are sent.
    """
    frames: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=OUTPUT_QUEUE_FRAMES)
    streams = [
        (fd, channel)
        for fd, channel in ((fifos.stdout_fd, b"\x01"), (fifos.stderr_fd, b"\x02"))
        if fd is not None
    ]

    async def read(fd: int, channel: bytes) -> None:
        while data := await read_output(fd, exited):
            await frames.put(channel + data)  # waits while the queue is full

    async def read_all() -> None:
        await asyncio.gather(*(read(fd, channel) for fd, channel in streams))
        await frames.put(None)

    reading = asyncio.ensure_future(read_all())
    try:
        while (frame := await frames.get()) is not None:
            await socket.send_bytes(frame)  # waits while the client is behind
    finally:
        await cancel_and_wait(reading)


async def _pump(
    socket: web.WebSocketResponse,
    fifos: FifoIO,
    waiting: asyncio.Future[ExitStatus],
    *,
    close_stdin: Callable[[], Awaitable[None]],
    resize: Callable[[int, int], Awaitable[None]],
) -> ExitStatus:
    """Carry the process's output to the socket and the socket's stdin to it, until the
    process has exited and its output ended; its exit status. InputStalledError when it left
    the client's input unread too long; ClientLeftError when the client closed the socket
    first (nobody reads the output any more: the caller ends the process, as cp's does)."""
    sender = asyncio.ensure_future(_carry_output(socket, fifos, waiting))
    receiver = asyncio.ensure_future(
        _carry_input(socket, fifos, close_stdin=close_stdin, resize=resize)
    )
    try:
        await asyncio.wait([sender, receiver], return_when=asyncio.FIRST_COMPLETED)
        if receiver.done():
            if (failed := receiver.exception()) is not None:
                raise failed
            if not sender.done():
                raise ClientLeftError
        await sender
        return await waiting
    finally:
        await cancel_and_wait(sender, receiver)


class NodeRoutes:
    def __init__(
        self,
        *,
        controllers: Controllers,
        registry: Registry,
        image_import_max_bytes: int = IMAGE_IMPORT_MAX_BYTES,
    ) -> None:
        self.controllers = controllers
        self.registry = registry
        self.image_import_max_bytes = image_import_max_bytes

    def add_routes(self, app: web.Application) -> None:
        _, cell_path = route_patterns(Kind.CELL)
        app.router.add_get(f"{cell_path}/log", self.log)
        app.router.add_post(f"{cell_path}/kill", self.kill)
        app.router.add_get(f"{cell_path}/exec", self.exec)
        app.router.add_get(f"{cell_path}/attach", self.attach)
        ImageRoutes(
            controllers=self.controllers,
            registry=self.registry,
            max_archive_bytes=self.image_import_max_bytes,
        ).add_routes(app)
        TransferRoutes(controllers=self.controllers, registry=self.registry).add_routes(app)

    # --- helpers --------------------------------------------------------------------------

    async def _cell(self, request: web.Request, subresource: str) -> Cell:
        return await cell_of(self.registry, request, subresource)

    async def _realm(self, name: str) -> Realm:
        return await realm_of(self.registry, name)

    @staticmethod
    def _container_of(cell: Cell, request: web.Request) -> str:
        wanted = request.query.get("container")
        ids = [c.id for c in ordered_containers(cell)]
        if wanted:
            if wanted not in ids:
                raise no_such_container(cell, wanted, ids)
            return wanted
        if not ids:
            raise ApiError(400, f"cell {cell.metadata.name} has no containers")
        return ids[0]  # the root container, as `kubectl logs` picks the first

    # --- logs -----------------------------------------------------------------------------

    async def log(self, request: web.Request) -> web.StreamResponse:
        cell = await self._cell(request, "log")
        container = self._container_of(cell, request)
        query = LogQuery.parse(request.query)
        files = CellFiles(self.controllers.host.settings.state_dir, cell_key(cell))
        path = files.previous_log(container) if query.previous else files.log(container)
        if query.previous and not await asyncio.to_thread(path.exists):
            raise ApiError(
                404,
                f"container {container} of cell {cell.metadata.name} has no previous "
                "instance (it has not been restarted or re-created on this node)",
            )
        if not query.follow and not await asyncio.to_thread(path.exists):
            if (full := await asyncio.to_thread(_no_room_for, path.parent)) is not None:
                raise ApiError(
                    400, f"container {container} of cell {cell.metadata.name} has {full}"
                )
            raise ApiError(400, _never_started(cell, container))
        follower = await asyncio.to_thread(LogFollower, path)
        # The kept (rotated) files too: a whole log is up to containerLogMaxFiles x
        # containerLogMaxSize. A chunk (at most logchunks.CHUNK_BYTES of a file) is read,
        # kept and rendered in a thread, then sent before the next is read: a whole file
        # at once held the event loop up to a second and its text in memory per reader.
        history = follower.history(query.tail, query.render.since)
        try:
            first = await asyncio.to_thread(_next_rendered, history, query.render, False)
            response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            if query.render.stream is not None:
                response.headers[LOG_STREAM_HEADER] = query.render.stream.capitalize()
            await response.prepare(request)
            sink = _LogSink(response, query.limit)
            try:
                data, open_line = first or (b"", False)
                await sink.write(data)
                open_line = await _send_chunks(sink, history, query.render, open_line)
                if query.follow and not query.previous and not sink.full:
                    await self._follow(
                        request, sink, follower, (cell, container), query.render, open_line
                    )
                await response.write_eof()
            except ConnectionError:
                # The client went away (Ctrl-C on `logs -f`): a normal end of a stream; a
                # write that was waiting on it fails with a bare "Connection lost".
                pass
            except ClientStalledError:
                log.info(
                    "log stream of cell %s ended: its client read nothing for %gs",
                    cell.metadata.name,
                    WRITE_DEADLINE_SECONDS,
                )
                if request.transport is not None:
                    request.transport.abort()
            return response
        finally:
            _close_chunks(history)  # the rotated file it holds open (a client gone mid-way)
            follower.close()  # a close of a regular file does not wait

    async def _follow(
        self,
        request: web.Request,
        sink: _LogSink,
        follower: LogFollower,
        of: tuple[Cell, str],
        options: RenderOptions,
        open_line: bool,
    ) -> None:
        """Write what the log of container ``of`` gets until the cell is gone or the
        container's run is over (``logend``),
        then what it got before that; or until the client is gone, or its ``limitBytes``
        are sent.

        The registry is asked whether the cell still exists every `CELL_CHECK_SECONDS`, not
        at each poll of the file; the file is read after that question, so every line
        written before the cell went is sent (the follower holds the file open). A client
        that left is seen at the next poll, not only at the next write: the log of a quiet
        container may get no line for hours, and until the stream ends it holds one of its
        token holder's long-running places (``apiMaxLongRunningPerUser``).
        """
        cell, container = of
        key = cell_key(cell)
        loop = asyncio.get_running_loop()
        next_check = loop.time() + CELL_CHECK_SECONDS
        over = 0  # checks in a row that found the cell's run over (logend)
        while True:
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            if client_gone(request):
                return
            end = None
            if loop.time() >= next_check:
                next_check = loop.time() + CELL_CHECK_SECONDS
                end = await follow_end(self.registry, key, container)
                over = over + 1 if end is FollowEnd.OVER else 0
            chunks = follower.read_chunks()
            try:
                open_line = await _send_chunks(sink, chunks, options, open_line)
            finally:
                _close_chunks(chunks)
            # A run over ends at the second check: a check's time for its logger's last line.
            if end is FollowEnd.GONE or over > 1 or sink.full:
                return  # the stream ends as kubectl's does

    # --- kill -----------------------------------------------------------------------------

    async def kill(self, request: web.Request) -> web.StreamResponse:
        refuse_body(request, "?signal=NAME&container=ID")
        cell = await self._cell(request, "kill")
        signum = _parse_signal(request.query.get("signal", "SIGTERM"))
        wanted = request.query.get("container")
        if wanted is not None:
            self._container_of(cell, request)  # a container the cell does not have: 404
        realm = await self._realm(cell.spec.realm_id)
        namespace = self.controllers.host.namespace_of(realm)
        tasks = self.controllers.host.containerd.tasks(namespace)
        _, space, stack, name = cell_key(cell)
        signalled: list[str] = []
        for container in ordered_containers(cell):
            if wanted and container.id != wanted:
                continue
            cid = containerd_container_id(
                space=space, stack=stack, cell=name, container=container.id
            )
            try:
                task = await tasks.get(cid)
                if task.status != TaskStatus.RUNNING:
                    continue
                await tasks.kill(cid, signum, all=signum == signal.SIGKILL)
            except TaskNotFoundError:
                continue
            except ContainerdError as error:
                raise ApiError(503, f"signalling {container.id}: {error}") from error
            signalled.append(container.id)
        return web.json_response({"signal": signal_name(signum), "containers": signalled})

    # --- exec -----------------------------------------------------------------------------

    async def exec(self, request: web.Request) -> web.StreamResponse:
        cell = await self._cell(request, "exec")
        container = self._container_of(cell, request)
        command = request.query.getall("command", [])
        if not command:
            raise ApiError(400, "command: at least one command= parameter is required")
        tty, with_stdin = _flag(request.query, "tty"), _flag(request.query, "stdin")
        realm = await self._realm(cell.spec.realm_id)
        namespace = self.controllers.host.namespace_of(realm)
        _, space, stack, name = cell_key(cell)
        cid = containerd_container_id(space=space, stack=stack, cell=name, container=container)
        containerd = self.controllers.host.containerd
        tasks = containerd.tasks(namespace)
        try:
            task = await tasks.get(cid)
            spec = (await containerd.containers(namespace).get(cid)).spec
        except ContainerdError:
            raise ApiError(409, f"container {container} of cell {name} is not running") from None
        if task.status != TaskStatus.RUNNING:
            raise ApiError(409, f"container {container} of cell {name} is not running")
        if not web.WebSocketResponse().can_prepare(request).ok:
            # Checked last, as the upgrade itself is: kukectl asks a refused upgrade's reason
            # with the same request as a plain GET. Before the session's FIFO directory is
            # made, since nothing would remove it.
            raise ApiError(400, "exec is a WebSocket: send an Upgrade request")

        process = dict(spec.get("process", {}))
        process.update(args=list(command), terminal=tty)
        process.pop("consoleSize", None)
        if tty and (size := _console_size(request.query)) is not None:
            process["consoleSize"] = size  # the terminal's size before the first byte
        exec_id = f"exec-{secrets.token_hex(6)}"
        fifo_dir = Path(self.controllers.host.settings.state_dir) / "exec" / exec_id
        # The heartbeat ends a session whose client vanished (no pong), as attach's and cp's.
        socket = web.WebSocketResponse(max_msg_size=1 << 20, heartbeat=30.0)
        await socket.prepare(request)
        if not await session_directory(socket, fifo_dir):
            await socket.close()
            return socket
        fifos = FifoIO(fifo_dir, terminal=tty, stdin=with_stdin)
        try:
            io = await fifos.open()
            waiting: asyncio.Future[ExitStatus] | None = None
            try:
                await tasks.exec(cid, exec_id, process=process, io=io)
                waiting = asyncio.ensure_future(tasks.wait(cid, exec_id=exec_id))
                await tasks.start(cid, exec_id=exec_id)
                status = await _pump(
                    socket,
                    fifos,
                    waiting,
                    close_stdin=lambda: tasks.close_stdin(cid, exec_id=exec_id),
                    resize=lambda w, h: tasks.resize(cid, exec_id=exec_id, width=w, height=h),
                )
                await socket.send_bytes(b"\x03" + json.dumps({"exitCode": status.code}).encode())
            except ProcessNotStartableError as error:
                # docker's and kubectl's exit codes: 127 not found, 126 not executable.
                code = 127 if error.reason == "CommandNotFound" else 126
                message = f"{error.reason}: {command[0][:200]!r}: {error.detail}"
                await socket.send_bytes(
                    b"\x03" + json.dumps({"error": message, "exitCode": code}).encode()
                )
            except (ContainerdError, InputStalledError) as error:
                await socket.send_bytes(b"\x03" + json.dumps({"error": str(error)}).encode())
            except (ConnectionError, ClientLeftError):
                pass  # the client left first (its terminal closed): the process is killed below
            finally:
                await tasks.end_process(cid, exec_id, waiting)
        finally:
            fifos.close()
            await asyncio.to_thread(shutil.rmtree, fifo_dir, True)
            await socket.close()
        return socket

    # --- attach ---------------------------------------------------------------------------

    async def attach(self, request: web.Request) -> web.StreamResponse:
        cell = await self._cell(request, "attach")
        container = attach_target(cell, request.query.get("container"))
        replay = _flag(request.query, "logs")
        realm = await self._realm(cell.spec.realm_id)
        namespace = self.controllers.host.namespace_of(realm)
        key = cell_key(cell)
        cid = containerd_container_id(
            space=key[1], stack=key[2], cell=key[3], container=container.id
        )
        tasks = self.controllers.host.containerd.tasks(namespace)
        not_running = f"container {container.id} of cell {key[3]} is not running"
        try:
            task = await tasks.get(cid)
        except ContainerdError:
            raise ApiError(409, not_running) from None
        if task.status != TaskStatus.RUNNING:
            raise ApiError(409, not_running)
        if not task.terminal:
            raise ApiError(
                409,
                f"container {container.id} of cell {key[3]} was started without a terminal; "
                "it gets one when it is next created (kukectl restart)",
            )
        if not web.WebSocketResponse().can_prepare(request).ok:
            raise ApiError(400, "attach is a WebSocket: send an Upgrade request")
        files = CellFiles(self.controllers.host.settings.state_dir, key)
        return await serve_attach(
            request,
            tasks=tasks,
            containerd_id=cid,
            log=files.log(container.id),
            stdin=files.tty_stdin(container.id),
            task_pid=task.pid,
            replay=replay,
        )
