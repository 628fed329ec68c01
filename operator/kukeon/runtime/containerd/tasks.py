"""Tasks: the running side of a container (its init process) and processes exec'd into it.

What the cell controller needs to run a container and observe it: create with stdio going
to a log file (``file://``) or to FIFOs for an attachable TTY, start, pid, kill, wait for
the exit status and time, delete, and exec an extra process.

Two containerd 1.6 behaviours shape :class:`TaskIO`: a ``file://`` URI makes the shim write
stdout *and* stderr into the stdout URI's file, and a ``file://`` stdout with an empty
stderr crashes the shim; so a log file is always given as both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal as signal_module
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlparse

from google.protobuf import any_pb2

from kukeon.runtime.containerd._gen.services.tasks.v1 import tasks_pb2
from kukeon.runtime.containerd._gen.types.task import task_pb2
from kukeon.runtime.containerd._util import to_datetime
from kukeon.runtime.containerd.bundles import (
    LeftoverBundleError,
    clear_leftover_bundle,
    leftover_bundle,
)
from kukeon.runtime.containerd.client import Subject
from kukeon.runtime.containerd.crilog import LogRotation, logger_uri
from kukeon.runtime.containerd.errors import (
    ContainerdCallError,
    ContainerdError,
    ProcessNotStartableError,
    RootfsUnreachableError,
    TaskNotFoundError,
    closed_rootfs_ancestor,
    not_startable_reason,
    spec_refusal,
)
from kukeon.runtime.containerd.sessionkill import kill_session

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient
    from kukeon.runtime.containerd.snapshots import Mount

log = logging.getLogger(__name__)

PROCESS_TYPE_URL: Final = "types.containerd.io/opencontainers/runtime-spec/1/Process"
PROCESS_DETAILS_TYPE: Final = "containerd.runc.v1.ProcessDetails"
"""What runc's shim says of each process of a task (ListPids): its exec id."""


class TaskStatus(IntEnum):
    UNKNOWN = task_pb2.UNKNOWN
    CREATED = task_pb2.CREATED
    RUNNING = task_pb2.RUNNING
    STOPPED = task_pb2.STOPPED
    PAUSED = task_pb2.PAUSED
    PAUSING = task_pb2.PAUSING


@dataclass(frozen=True, slots=True)
class TaskIO:
    """Where a task's stdio goes, as containerd takes it (FIFO paths or URIs)."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    log_directory: str = ""
    """A directory the task's output is written into, created before the task."""

    @classmethod
    def log_file(
        cls,
        path: str | Path,
        *,
        rotation: LogRotation | None = None,
        cgroup_procs: Sequence[Path] = (),
    ) -> TaskIO:
        """Log stdout and stderr line by line in the CRI format (see :mod:`crilog`) to one
        file, created with its directory if missing, by a logger the shim owns (which
        rotates it by ``rotation``; None: never; and joins the cgroups whose
        ``cgroup_procs`` are given)."""
        absolute = Path(path).absolute()
        uri = logger_uri(absolute, rotation=rotation, cgroup_procs=cgroup_procs)
        return cls(stdout=uri, stderr=uri, log_directory=str(absolute.parent))

    @classmethod
    def discard(cls) -> TaskIO:
        return cls()


class FifoIO:
    """FIFO-backed stdio for attachable containers (optionally a TTY).

    The FIFOs are created in ``directory`` and opened on this side *before* the task is
    created: read ends non-blocking (the shim then opens the write ends without waiting),
    stdin read-write so that opening never blocks for lack of a reader. Whoever attaches
    reads :attr:`stdout_fd` (and :attr:`stderr_fd` without a TTY) and writes
    :attr:`stdin_fd`. Close after the task is deleted.
    """

    def __init__(self, directory: str | Path, *, terminal: bool = True, stdin: bool = True) -> None:
        self.directory = Path(directory)
        self.terminal = terminal
        self.with_stdin = stdin
        self.stdin_fd: int | None = None
        self.stdout_fd: int | None = None
        self.stderr_fd: int | None = None

    def _paths(self) -> dict[str, Path]:
        paths = {"stdout": self.directory / "stdout"}
        if not self.terminal:
            paths["stderr"] = self.directory / "stderr"
        if self.with_stdin:
            paths["stdin"] = self.directory / "stdin"
        return paths

    def _open_blocking(self) -> TaskIO:
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = self._paths()
        for path in paths.values():
            try:
                if not stat.S_ISFIFO(path.lstat().st_mode):
                    raise FileExistsError(f"{path} exists and is not a FIFO")
            except FileNotFoundError:
                os.mkfifo(path, 0o600)
        self.stdout_fd = os.open(paths["stdout"], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if "stderr" in paths:
            self.stderr_fd = os.open(paths["stderr"], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if "stdin" in paths:
            self.stdin_fd = os.open(paths["stdin"], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        return TaskIO(
            stdin=str(paths["stdin"]) if "stdin" in paths else "",
            stdout=str(paths["stdout"]),
            stderr=str(paths["stderr"]) if "stderr" in paths else "",
            terminal=self.terminal,
        )

    async def open(self) -> TaskIO:
        """Create and open the FIFOs; returns the TaskIO to create the task with."""
        return await asyncio.to_thread(self._open_blocking)

    def close(self) -> None:
        for name in ("stdin_fd", "stdout_fd", "stderr_fd"):
            fd = getattr(self, name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    code: int
    exited_at: datetime | None


@dataclass(frozen=True, slots=True)
class TaskInfo:
    container_id: str
    id: str
    pid: int
    status: TaskStatus
    exit_status: int
    exited_at: datetime | None
    stdout: str
    stderr: str
    terminal: bool


@contextlib.contextmanager
def _refusal_as_not_startable(name: str) -> Iterator[None]:
    """containerd's refusal of a process runc cannot exec, of a resource or tmpfs value
    only the node could judge, or of a rootfs it cannot mount in a user namespace, as its
    typed error."""
    try:
        yield
    except ContainerdCallError as error:
        reason = not_startable_reason(error.detail)
        if reason is None:
            refused = spec_refusal(name, error.detail)
            if refused is not None:
                raise refused from error
            closed = closed_rootfs_ancestor(error.detail)  # a few stats, on a refusal only
            if closed is None:
                raise
            raise RootfsUnreachableError(
                container_id=name, closed=closed[0], mode=closed[1], detail=error.detail
            ) from error
        raise ProcessNotStartableError(
            container_id=name, reason=reason, detail=error.detail
        ) from error


def _retrieve(done: asyncio.Future[Any]) -> None:
    """Mark a finished future's exception as seen (its owner let it go)."""
    if not done.cancelled():
        done.exception()


class TaskService:
    def __init__(self, *, client: ContainerdClient, namespace: str) -> None:
        self._client = client
        self.namespace = namespace

    async def create(
        self,
        container_id: str,
        *,
        io: TaskIO,
        rootfs: Sequence[Mount] | None = None,
    ) -> int:
        """Create the task (the shim and ``runc create``); returns the init pid.

        ``rootfs`` defaults to the mounts of the container's snapshot. The process does not
        run until :meth:`start`; subscribe to exits (:meth:`wait`) before starting it.
        """
        if rootfs is None:
            container = await self._client.containers(self.namespace).get(container_id)
            rootfs = await self._client.snapshots(
                self.namespace, snapshotter=container.snapshotter
            ).mounts(container.snapshot_key)
        await asyncio.to_thread(_make_log_directories, io)
        request = tasks_pb2.CreateTaskRequest(
            container_id=container_id,
            rootfs=[mount.to_proto() for mount in rootfs],
            stdin=io.stdin,
            stdout=io.stdout,
            stderr=io.stderr,
            terminal=io.terminal,
        )
        with _refusal_as_not_startable(container_id):
            try:
                response = await self._create(request)
            except ContainerdCallError as error:
                # A bundle containerd left of a cut create refuses every create of this
                # id until containerd restarts: cleared as that restart would, then again.
                bundle = leftover_bundle(
                    error.detail, namespace=self.namespace, container_id=container_id
                )
                if bundle is None or not await self._clear_bundle(bundle, container_id):
                    raise
                response = await self._create(request)
        return response.pid

    async def _create(self, request: tasks_pb2.CreateTaskRequest) -> tasks_pb2.CreateTaskResponse:
        return await self._client.call(
            "create",
            lambda s, md: s.tasks.Create(request, metadata=md, timeout=self._client.call_timeout),
            namespace=self.namespace,
            subject=Subject("task", request.container_id),
        )

    async def _clear_bundle(self, bundle: Path, container_id: str) -> bool:
        """Whether the leftover bundle was cleared (else why is logged)."""
        container = await self._client.containers(self.namespace).get(container_id)
        try:
            await clear_leftover_bundle(
                bundle,
                address=self._client.address,
                namespace=self.namespace,
                container_id=container_id,
                runtime=container.runtime,
            )
        except LeftoverBundleError as error:
            log.warning(
                "task %s/%s: leftover bundle %s not cleared: %s",
                self.namespace,
                container_id,
                bundle,
                error,
            )
            return False
        return True

    async def start(self, container_id: str, *, exec_id: str = "") -> int:
        """Start the task's (or an exec's) process; a command runc cannot run is a
        :class:`ProcessNotStartableError`."""
        with _refusal_as_not_startable(_process_name(container_id, exec_id)):
            response = await self._client.call(
                "start",
                lambda s, md: s.tasks.Start(
                    tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                subject=Subject("task", _process_name(container_id, exec_id)),
            )
        return response.pid

    async def get(self, container_id: str, *, exec_id: str = "") -> TaskInfo:
        response = await self._client.call(
            "get",
            lambda s, md: s.tasks.Get(
                tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("task", _process_name(container_id, exec_id)),
        )
        return _task_info(response.process, container_id=container_id)

    async def pid(self, container_id: str) -> int:
        return (await self.get(container_id)).pid

    async def list(self, filter: str = "") -> list[TaskInfo]:
        response = await self._client.call(
            "list tasks",
            lambda s, md: s.tasks.List(
                tasks_pb2.ListTasksRequest(filter=filter),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
        )
        # containerd fills only `id` here: for the init processes listed it is the container's.
        return [
            _task_info(task, container_id=task.container_id or task.id) for task in response.tasks
        ]

    async def kill(
        self,
        container_id: str,
        signal: int = signal_module.SIGTERM,
        *,
        exec_id: str = "",
        all: bool = False,
    ) -> None:
        """Signal the init process (or ``exec_id``; ``all``: every process of the task)."""
        await self._client.call(
            "kill",
            lambda s, md: s.tasks.Kill(
                tasks_pb2.KillRequest(
                    container_id=container_id, exec_id=exec_id, signal=int(signal), all=all
                ),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("task", _process_name(container_id, exec_id)),
        )

    async def wait(self, container_id: str, *, exec_id: str = "") -> ExitStatus:
        """Wait for the process to exit. Survives a containerd restart (the call is re-made).

        To never miss a quick exit, start waiting before :meth:`start`:
        ``waiting = asyncio.ensure_future(tasks.wait(id)); await tasks.start(id)``.
        """
        response = await self._client.call(
            "wait",
            lambda s, md: s.tasks.Wait(
                tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id),
                metadata=md,
            ),
            namespace=self.namespace,
            subject=Subject("task", _process_name(container_id, exec_id)),
        )
        return ExitStatus(code=response.exit_status, exited_at=to_datetime(response.exited_at))

    async def delete(self, container_id: str) -> ExitStatus | None:
        """Delete a stopped task (shim and runc state); None when there was no task.

        A running task is refused (FAILED_PRECONDITION): stop it first.
        """
        try:
            response = await self._client.call(
                "delete",
                lambda s, md: s.tasks.Delete(
                    tasks_pb2.DeleteTaskRequest(container_id=container_id),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                subject=Subject("task", container_id),
            )
        except TaskNotFoundError:
            return None
        return ExitStatus(code=response.exit_status, exited_at=to_datetime(response.exited_at))

    async def stop(
        self,
        container_id: str,
        *,
        grace_period: float = 10.0,
        signal: int = signal_module.SIGTERM,
    ) -> ExitStatus:
        """Signal the task, and SIGKILL every process if it is still there after the grace.

        Escalation matters: ``sh`` as PID 1 ignores SIGTERM.
        """
        waiting = asyncio.ensure_future(self.wait(container_id))
        try:
            with contextlib.suppress(TaskNotFoundError):
                # Already stopped ("process already finished"): wait answers at once.
                await self.kill(container_id, signal)
            await asyncio.wait({waiting}, timeout=max(0.0, grace_period))
            if waiting.done():
                return waiting.result()
            await self.kill(container_id, signal_module.SIGKILL, all=True)
            return await waiting
        finally:
            if not waiting.done():
                waiting.cancel()

    async def exec(
        self,
        container_id: str,
        exec_id: str,
        *,
        process: Mapping[str, Any],
        io: TaskIO,
    ) -> None:
        """Add a process (an OCI runtime-spec ``process`` dict) to a running task.

        Start it with ``start(container_id, exec_id=...)``, wait with ``wait(..., exec_id=)``
        and remove it with :meth:`delete_process`.
        """
        await asyncio.to_thread(_make_log_directories, io)
        spec = any_pb2.Any(type_url=PROCESS_TYPE_URL, value=_json_bytes(process))
        request = tasks_pb2.ExecProcessRequest(
            container_id=container_id,
            exec_id=exec_id,
            stdin=io.stdin,
            stdout=io.stdout,
            stderr=io.stderr,
            terminal=io.terminal,
            spec=spec,
        )
        await self._client.call(
            "exec",
            lambda s, md: s.tasks.Exec(request, metadata=md, timeout=self._client.call_timeout),
            namespace=self.namespace,
            subject=Subject("task", _process_name(container_id, exec_id)),
        )

    async def exec_ids(self, container_id: str) -> tuple[str, ...]:
        """The exec ids of the processes exec'd into the container's task that still run
        (the shim's process list: runc's ``ProcessDetails`` of each; the init process and
        what its children started have none)."""
        response = await self._client.call(
            "list pids",
            lambda s, md: s.tasks.ListPids(
                tasks_pb2.ListPidsRequest(container_id=container_id),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("task", container_id),
        )
        found = []
        for process in response.processes:
            if not process.info.type_url.endswith(PROCESS_DETAILS_TYPE):
                continue
            try:
                exec_id = process_details_exec_id(process.info.value)
            except ValueError as error:
                log.warning("task %s: pid %d: %s", container_id, process.pid, error)
                continue
            if exec_id:
                found.append(exec_id)
        return tuple(found)

    async def close_stdin(self, container_id: str, *, exec_id: str = "") -> None:
        """Signal end of input: the shim closes the process's stdin (as `ctr` does on EOF).

        Closing our end of the stdin FIFO is not enough: the shim holds the FIFO open too.
        """
        await self._client.call(
            "close io",
            lambda s, md: s.tasks.CloseIO(
                tasks_pb2.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("task", _process_name(container_id, exec_id)),
        )

    async def resize(
        self, container_id: str, *, exec_id: str = "", width: int, height: int
    ) -> None:
        """Resize the process's terminal (TTY processes only)."""
        await self._client.call(
            "resize pty",
            lambda s, md: s.tasks.ResizePty(
                tasks_pb2.ResizePtyRequest(
                    container_id=container_id, exec_id=exec_id, width=width, height=height
                ),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("task", _process_name(container_id, exec_id)),
        )

    async def end_process(
        self,
        container_id: str,
        exec_id: str,
        waiting: asyncio.Future[ExitStatus] | None,
        *,
        within: float = 5.0,
    ) -> None:
        """Kill an exec'd process, and what it started in its session, unless ``waiting``
        (its wait, None if it never started) saw it exit; wait for its end, and delete it.

        containerd refuses to delete a process that still runs ("cannot delete a running
        process"), so deleting right after the kill would leave it running for ever; and
        a ``waiting`` cancelled by its caller's timeout says nothing about the process.
        """
        if waiting is not None and (not waiting.done() or waiting.cancelled()):
            await self._kill_session(container_id, exec_id)
            with contextlib.suppress(ContainerdError):
                await self.kill(container_id, signal_module.SIGKILL, exec_id=exec_id)
            with contextlib.suppress(ContainerdError, TimeoutError):
                async with asyncio.timeout(within):
                    await self.wait(container_id, exec_id=exec_id)
        if waiting is not None:
            # Its failure (the task gone with its cell: "ttrpc: closed") is the caller's to
            # say, or nobody's: never asyncio's "Task exception was never retrieved".
            waiting.add_done_callback(_retrieve)
            if not waiting.done():
                waiting.cancel()
        with contextlib.suppress(ContainerdError):
            await self.delete_process(container_id, exec_id)

    async def _kill_session(self, container_id: str, exec_id: str) -> None:
        """SIGKILL what the exec'd process started with it (its session: sessionkill);
        containerd's Kill reaches the process alone."""
        try:
            process = await self.get(container_id, exec_id=exec_id)
        except ContainerdError:
            return  # gone, or containerd away: the Kill after this says nothing either
        # An exited process's pid may be another's by now.
        if process.status == TaskStatus.RUNNING:
            await asyncio.to_thread(kill_session, process.pid)

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus | None:
        try:
            response = await self._client.call(
                "delete process",
                lambda s, md: s.tasks.DeleteProcess(
                    tasks_pb2.DeleteProcessRequest(container_id=container_id, exec_id=exec_id),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                subject=Subject("task", _process_name(container_id, exec_id)),
            )
        except TaskNotFoundError:
            return None
        return ExitStatus(code=response.exit_status, exited_at=to_datetime(response.exited_at))


def process_details_exec_id(value: bytes) -> str:
    """The ``exec_id`` of a serialised ``containerd.runc.v1.ProcessDetails`` (its only
    field, number 1, a string; "" when absent). The message is not among the generated
    stubs: it is read from the protobuf wire format, skipping any field a later runc adds."""
    position, exec_id = 0, ""
    while position < len(value):
        key, position = _varint(value, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = _varint(value, position)
        elif wire_type == 2:
            length, position = _varint(value, position)
            if number == 1:
                exec_id = value[position : position + length].decode(errors="replace")
            position += length
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"ProcessDetails: wire type {wire_type} is not read here")
    if position > len(value):
        raise ValueError("ProcessDetails: truncated")
    return exec_id


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """A protobuf varint at ``position``: its value and the position after it."""
    result = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("ProcessDetails: truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _process_name(container_id: str, exec_id: str) -> str:
    return f"{container_id}/{exec_id}" if exec_id else container_id


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _make_log_directories(io: TaskIO) -> None:
    directories = {
        Path(urlparse(u).path).parent for u in (io.stdout, io.stderr) if u[:7] == "file://"
    }
    if io.log_directory:
        directories.add(Path(io.log_directory))
    for directory in directories:
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)


def _task_info(process: task_pb2.Process, *, container_id: str) -> TaskInfo:
    return TaskInfo(
        container_id=container_id,
        id=process.id,
        pid=process.pid,
        status=TaskStatus(process.status),
        exit_status=process.exit_status,
        exited_at=to_datetime(process.exited_at),
        stdout=process.stdout,
        stderr=process.stderr,
        terminal=process.terminal,
    )
