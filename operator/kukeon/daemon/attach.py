"""Attach sessions: a WebSocket onto an attachable container's terminal.

The container's terminal I/O is owned by the containerd shim and its logger, never by
kukeond (see :mod:`kukeon.runtime.containerd.ttyio`): the terminal's output is appended to
the container's log file, its input is a FIFO. A session therefore

- follows the log file from where it ended when the session began (output produced
  before, or while nobody was attached, is in ``kukectl logs``), or from its start with
  ``?logs=true``, sending it as channel 1; across the logger's rotations, by the files'
  identity (``logfollow.ByteFollower``): the file held to its end, the files rotated
  since, the new one; where files were removed before the session read them (it lagged
  by more than the kept files), a notice on channel 2 (stderr), not in the output;
- writes channel 0 payloads into the stdin FIFO. Every attached client may type (input is
  multiplexed, as ``docker attach`` does); an empty payload is ignored: detaching must
  never close the container's stdin;
- resizes the terminal on channel 4 (``{"width": W, "height": H}``), via containerd;
- ends when the client goes (a detach: the container runs on), or when the task exits:
  the last output, then channel 3 ``{"exitCode": N}``, then the close.

Same framing as exec (``noderoutes``). Nothing is kept between sessions, so sessions
work the same before and after a kukeond restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
from functools import partial
from pathlib import Path

from aiohttp import WSMsgType, web

from kukeon.api import Cell, ContainerSpec
from kukeon.apiserver.status import ApiError
from kukeon.cancelling import cancel_and_wait
from kukeon.controllers.cell import ordered_containers
from kukeon.daemon.logclose import WriterClosed
from kukeon.daemon.logfollow import ByteFollower, Gap
from kukeon.daemon.lookups import no_such_container
from kukeon.daemon.terminalsize import resize_of
from kukeon.processes import ProcessId
from kukeon.runtime.containerd.errors import ContainerdError
from kukeon.runtime.containerd.logcopier import alive, find_copier
from kukeon.runtime.containerd.pipes import InputStalledError, write_all
from kukeon.runtime.containerd.tasks import ExitStatus, TaskService

POLL_MIN_SECONDS = 0.02
POLL_MAX_SECONDS = 0.2
CHUNK = 256 * 1024
STDIN_WRITE_SECONDS = 10.0
AFTER_EXIT_QUIET_SECONDS = 0.3
AFTER_EXIT_MAX_SECONDS = 5.0


def attach_target(cell: Cell, wanted: str | None) -> ContainerSpec:
    """The container to attach to: ``wanted``, else ``spec.tty.default``, else the only
    attachable one. ApiError 404/400 names the cell and the container."""
    name = cell.metadata.name
    containers = ordered_containers(cell)
    attachable = [c for c in containers if c.attachable]
    if wanted:
        found = next((c for c in containers if c.id == wanted), None)
        if found is None:
            raise no_such_container(cell, wanted, [c.id for c in containers])
        if not found.attachable:
            raise ApiError(
                400,
                f"container {wanted!r} of cell {name} is not attachable "
                "(set attachable: true in its spec)",
            )
        return found
    default = cell.spec.tty.default if cell.spec.tty is not None else None
    if default:
        found = next((c for c in attachable if c.id == default), None)
        if found is not None:
            return found
    if len(attachable) == 1:
        return attachable[0]
    if not attachable:
        raise ApiError(400, f"cell {name} has no attachable container")
    ids = ", ".join(c.id for c in attachable)
    raise ApiError(
        400,
        f"cell {name} has several attachable containers ({ids}) and no spec.tty.default: "
        "choose one with container=",
    )


def _open_stdin(path: Path) -> int | None:
    """A writer of the stdin FIFO; None when no terminal reads it (no running task)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ENXIO, errno.ENOENT):
            return None
        raise


async def _exited(pidfd: int, *, within: float) -> None:
    """Until the process of ``pidfd`` exits (it becomes readable), ``within`` seconds at most."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(pidfd, wake)
    try:
        await asyncio.wait([ended], timeout=within)
    finally:
        loop.remove_reader(pidfd)
        ended.cancel()


def _writer_of(log_file: Path, task_pid: int) -> ProcessId | None:
    """A process that may still append the task's output to ``log_file``: its copier (the
    shim's logger, a replacement, a keeper logging what a killed logger left), else the
    keeper of its pipes. While a keeper runs, its pipes may hold output that nobody logged
    yet: the task's last, waiting for a killed logger's replacement that kukeond has not
    started yet (or that is still in its exec, when ``/proc`` shows no argv of it). A keeper
    ends only once its pipes have no writer left and nothing unread (or it logged that
    itself): everything the task wrote is in the log by then."""
    return find_copier(task_pid, log_file) or find_copier(task_pid, log_file, keeper=True)


async def _loggers_gone(log_file: Path, task_pid: int, *, until: float) -> None:
    """Until no logger or keeper of ``log_file`` runs any more (loop time ``until`` at the
    latest).

    A logger killed during the session closed the file as the last one does, and inotify
    cannot tell the two closes apart: the replacement kukeond starts (``logcopier``), which
    goes on appending the terminal's output, is waited for by its pid, and so is the keeper
    that holds the output for it (:func:`_writer_of`)."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        writer = await asyncio.to_thread(_writer_of, log_file, task_pid)
        if writer is None:
            return
        try:
            pidfd = os.pidfd_open(writer.pid)
        except ProcessLookupError:
            continue
        try:
            if not alive(writer):  # gone, or its pid another's, before it was opened
                continue
            await _exited(pidfd, within=max(until - loop.time(), 0))
        finally:
            os.close(pidfd)


async def _send_tail(
    socket: web.WebSocketResponse,
    log: ByteFollower,
    closing: WriterClosed | None,
    *,
    log_file: Path,
    task_pid: int,
) -> None:
    """Send the log's last output after the task's exit.

    The shim's logger copies the terminal's last output after the exit, then closes the
    log: once it has (``closing``) and no logger or keeper of the log runs any more (the
    end of a killed logger's replacement, :func:`_loggers_gone`), all of it is sent; at most
    AFTER_EXIT_MAX_SECONDS are waited for. Without inotify, what the log gains is sent until
    it gained nothing for AFTER_EXIT_QUIET_SECONDS (at most AFTER_EXIT_MAX_SECONDS too).
    """
    loop = asyncio.get_running_loop()
    if closing is not None:
        give_up = loop.time() + AFTER_EXIT_MAX_SECONDS
        await closing.wait(within=AFTER_EXIT_MAX_SECONDS)
        await _loggers_gone(log_file, task_pid, until=give_up)
        while True:
            data = await asyncio.to_thread(log.read_or_gap, CHUNK)
            if not data:
                return
            await _send_output(socket, data)
    give_up = loop.time() + AFTER_EXIT_MAX_SECONDS
    quiet_since = loop.time()
    while loop.time() - quiet_since < AFTER_EXIT_QUIET_SECONDS and loop.time() < give_up:
        data = await asyncio.to_thread(log.read_or_gap, CHUNK)
        if data:
            await _send_output(socket, data)
            quiet_since = loop.time()
        else:
            await asyncio.sleep(POLL_MIN_SECONDS)


async def _send_output(socket: web.WebSocketResponse, data: bytes | Gap) -> None:
    """The terminal's output on channel 1; where the session lost some (it lagged by more
    than the kept files), a notice on channel 2 (stderr), which the terminal's stream does
    not carry (kukectl attach prints it to its stderr, an older client ignores it)."""
    if isinstance(data, Gap):
        await socket.send_bytes(b"\x02" + f"\r\n{data.notice()}\r\n".encode())
    else:
        await socket.send_bytes(b"\x01" + data)


def _watch_close(log: Path) -> WriterClosed | None:
    try:
        return WriterClosed(log)
    except OSError:
        return None  # no inotify (or no log yet): the tail is read until it is quiet


async def _from_client(
    socket: web.WebSocketResponse, tasks: TaskService, containerd_id: str, stdin_fd: int | None
) -> None:
    """Type the client's input into the terminal and pass its resizes on, until it goes."""
    async for message in socket:
        if message.type != WSMsgType.BINARY or not message.data:
            continue
        channel, payload = message.data[:1], message.data[1:]
        if channel == b"\x00" and payload and stdin_fd is not None:
            # A terminal that takes nothing for a while loses the rest of this input.
            with contextlib.suppress(InputStalledError):
                await write_all(stdin_fd, payload, within=STDIN_WRITE_SECONDS)
        elif channel == b"\x04" and (size := resize_of(payload)) is not None:
            with contextlib.suppress(ContainerdError):
                await tasks.resize(containerd_id, width=size[0], height=size[1])


async def serve_attach(
    request: web.Request,
    *,
    tasks: TaskService,
    containerd_id: str,
    log: Path,
    stdin: Path,
    task_pid: int,
    replay: bool = False,
) -> web.WebSocketResponse:
    """Run one attach session on an upgraded WebSocket until detach or exit; ``replay``
    (``?logs=true``, docker's attach parameter) sends the instance's log from its start
    first (its kept rotated files, then the current one), so a client that attaches to a task
    it just started misses none of its output."""
    socket = web.WebSocketResponse(max_msg_size=1 << 20, heartbeat=30.0)
    await socket.prepare(request)
    closing = _watch_close(log)  # before the end is taken: a close from now on is the logger's
    follower: ByteFollower | None = None
    try:
        follower = await asyncio.to_thread(partial(ByteFollower, log, from_start=replay))
        stdin_fd = await asyncio.to_thread(_open_stdin, stdin)
    except BaseException:
        if closing is not None:
            closing.close()
        if follower is not None:
            follower.close()
        raise
    output = follower
    exited: asyncio.Future[ExitStatus] = asyncio.ensure_future(tasks.wait(containerd_id))

    async def to_client() -> None:
        pause = POLL_MIN_SECONDS
        while True:
            data = await asyncio.to_thread(output.read_or_gap, CHUNK)
            if data:
                await _send_output(socket, data)
                pause = POLL_MIN_SECONDS
                continue
            if exited.done():
                break
            await asyncio.wait([exited], timeout=pause)
            pause = min(pause * 2, POLL_MAX_SECONDS)
        # The logger appends the last output just after the exit, then closes the log.
        await _send_tail(socket, output, closing, log_file=log, task_pid=task_pid)
        try:
            status: dict[str, object] = {"exitCode": exited.result().code}
        except ContainerdError as error:
            status = {"error": str(error)}
        await socket.send_bytes(b"\x03" + json.dumps(status).encode())

    sender = asyncio.ensure_future(to_client())
    receiver = asyncio.ensure_future(_from_client(socket, tasks, containerd_id, stdin_fd))
    try:
        await asyncio.wait([sender, receiver], return_when=asyncio.FIRST_COMPLETED)
    finally:
        try:
            await cancel_and_wait(sender, receiver, exited)
        finally:  # also when we are cancelled meanwhile: nothing of the session is left
            if stdin_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(stdin_fd)
            if closing is not None:
                closing.close()
            output.close()
            await socket.close()
    return socket
