"""Shared pieces of the controller tests: cell documents, exec in a task, host listings, every
version of a cell as written."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import select
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from kukeon.api import AnyResource, Cell, Kind
from kukeon.runtime.containerd.tasks import FifoIO
from kukeon.store import Conflict, WatchEvent
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukeond import Kukeond

SLEEPER = ["-c", SLEEPER_SCRIPT]
_exec_ids = itertools.count()


def container(k: Kukeond, cid: str, *, script: str | None = None, **fields: Any) -> dict[str, Any]:
    """A busybox container running `script` (a SIGTERM-friendly sleeper by default)."""
    args = SLEEPER if script is None else ["-c", script]
    return {"id": cid, "image": k.image.name, "command": "sh", "args": args, **fields}


@contextlib.contextmanager
def made_directory(top: Path) -> Iterator[Path]:
    """``top`` made (a test's realms' allowed directories below it), removed with all it
    holds afterwards, whatever happened: links a cell left there are removed, not followed."""
    top.mkdir()
    try:
        yield top
    finally:
        shutil.rmtree(top)


def cell_doc(
    k: Kukeond,
    name: str,
    containers: list[dict[str, Any]],
    *,
    space: str = "s1",
    stack: str = "st1",
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "kind": "Cell",
        "metadata": metadata,
        "spec": {
            "realmId": k.realm,
            "spaceId": space,
            "stackId": stack,
            "containers": containers,
            **spec,
        },
    }


def cell_key(k: Kukeond, name: str, *, space: str = "s1", stack: str = "st1") -> tuple[str, ...]:
    return (k.realm, space, stack, name)


class Followed:
    """How far a ``watching`` watch got: the revision of the last event it delivered."""

    def __init__(self) -> None:
        self.revision = 0

    async def caught_up(self, obj: AnyResource, within: float = 30.0) -> None:
        """Until the watch delivered ``obj``'s version: a read (``wait_for``) may see it
        first, and at load the watch's task runs seconds later."""
        target = int(obj.metadata.resource_version or 0)
        async with asyncio.timeout(within):
            while self.revision < target:  # noqa: ASYNC110 (fed by the watch's task)
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def watching(
    k: Kukeond,
    kind: Kind,
    scope: tuple[str, ...],
    each: Callable[[WatchEvent], None],
    *,
    since: int,
) -> AsyncIterator[Followed]:
    """Calls ``each`` with every change of ``kind`` under ``scope`` from revision ``since``
    on, from a watch in a task beside the block (cancelled after it): every version written,
    which a poll would miss."""
    followed = Followed()

    async def follow() -> None:
        async for event in k.registry.watch(kind, scope, resource_version=since):
            each(event)
            followed.revision = max(followed.revision, event.revision)

    task = asyncio.create_task(follow())
    try:
        yield followed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def cell_versions(
    k: Kukeond, key: tuple[str, ...], note: Callable[[Cell], None], *, since: int
) -> contextlib.AbstractAsyncContextManager[Followed]:
    """``watching`` the cell at ``key``: ``note`` is called with each of its versions."""

    def each(event: WatchEvent) -> None:
        obj = event.object
        if obj.metadata.name == key[3] and isinstance(obj, Cell):
            note(obj)

    return watching(k, Kind.CELL, key[:3], each, since=since)


async def get_cell(k: Kukeond, key: tuple[str, ...]) -> Cell:
    found = await k.registry.get(Kind.CELL, key)
    assert isinstance(found, Cell)
    return found


async def rewrite(
    k: Kukeond, kind: Kind, key: tuple[str, ...], change: Callable[[Any], AnyResource]
) -> AnyResource:
    """Write ``change(latest)`` (spec and metadata), as `kukectl apply` does.

    A controller's status write between the read and the update makes it a Conflict (the
    resourceVersion moved): read again and redo the change, never update a stale read.
    """
    for _attempt in range(20):
        current = await k.registry.get(kind, key)
        try:
            return await k.registry.update(change(current))
        except Conflict:  # a status write raced us: read again
            continue
    raise AssertionError(f"could not update {kind.value} {'/'.join(key)}")


async def update_cell(k: Kukeond, key: tuple[str, ...], **changes: Any) -> AnyResource:
    """Rewrite the cell's spec (and metadata) from the latest version, as `kukectl apply` does."""

    def changed(cell: Cell) -> AnyResource:
        spec = cell.spec.model_copy(update=changes.get("spec", {}))
        metadata = cell.metadata.model_copy(update=changes.get("metadata", {}))
        return cell.model_copy(update={"spec": spec, "metadata": metadata})

    return await rewrite(k, Kind.CELL, key, changed)


async def exec_in(k: Kukeond, cid: str, *argv: str, within: float = 20.0) -> tuple[int, str]:
    """Run a process in a running container's task; returns its exit code and output.

    The output is read from FIFOs until the shim closes them, as kukeond's exec route does:
    a log file (``file://``) may be written after the exit is reported, or not at all when
    the process is deleted first.
    """
    tasks = k.containerd.tasks(k.namespace)
    found = await k.containerd.containers(k.namespace).get(cid)
    process = dict(found.spec["process"])
    process["args"] = list(argv)
    process["terminal"] = False
    number = next(_exec_ids)
    exec_id = f"x{number}"
    fifos = FifoIO(k.config.state_dir / f"exec-{cid}-{number}", terminal=False, stdin=False)
    try:
        io = await fifos.open()
        await tasks.exec(cid, exec_id, process=process, io=io)
        try:
            waiting = asyncio.ensure_future(tasks.wait(cid, exec_id=exec_id))
            await tasks.start(cid, exec_id=exec_id)
            output = await asyncio.wait_for(asyncio.to_thread(_read_to_end, fifos), within)
            status = await asyncio.wait_for(waiting, within)
        finally:
            await tasks.delete_process(cid, exec_id)
    finally:
        fifos.close()
        await asyncio.to_thread(shutil.rmtree, fifos.directory, True)
    return status.code, output


def _read_to_end(fifos: FifoIO) -> str:
    """stdout and stderr, interleaved as they came, until both writers are gone."""
    open_fds = [fd for fd in (fifos.stdout_fd, fifos.stderr_fd) if fd is not None]
    chunks: list[bytes] = []
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [], 1.0)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if chunk:
                chunks.append(chunk)
            else:
                open_fds.remove(fd)
    return b"".join(chunks).decode(errors="replace")


def check_storage_every_second(k: Kukeond) -> None:
    """kukeond's ephemeral-storage check runs every second (10 s by default) from its next
    sleep on, so an eviction is seen within a test's patience."""
    controllers = k.daemon.controllers
    assert controllers is not None
    assert controllers.cells.probes is not None
    storage = controllers.cells.probes.storage
    assert storage is not None
    storage.period = 1.0


def cgroup_dirs(k: Kukeond, *parts: str) -> list[Path]:
    """The cgroup directory of `parts` below the daemon's root, in every mounted hierarchy."""
    relative = "/".join((k.config.cgroup_root.strip("/"), *parts))
    return [
        hierarchy / relative
        for hierarchy in Path("/sys/fs/cgroup").iterdir()
        if (hierarchy / relative).exists()
    ]


async def container_ids(k: Kukeond) -> set[str]:
    return {c.id for c in await k.containerd.containers(k.namespace).list()}


async def task_ids(k: Kukeond) -> set[str]:
    return {t.container_id for t in await k.containerd.tasks(k.namespace).list()}


def netns_names(k: Kukeond) -> set[str]:
    directory = k.config.netns_dir
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()
