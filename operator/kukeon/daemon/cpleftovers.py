"""What the uploads of a kukeond stopped or killed mid-way left in containers: staged files.

An upload (``kukectl cp`` into a container) has tar write each file under a hidden name
beside its destination, ``DIR/.NAME.kukeon-cp-TOKEN`` (:mod:`kukeon.daemon.cpstage`), and
removes those it did not rename into place when it ends. A kukeond killed (``kill -9``, the
OOM killer) or stopped before that left them in the container for good, each as large as a
realm user made it, and a new upload cut the same way left more.

Every upload notes, before tar is given a member, the member's destination in a journal under
the state directory (``cp-staged/<exec id>.jsonl``, removed with the upload's end). At start,
once the processes of dead sessions are ended (their tar writes no more) and before the API
listens (no upload of this process runs), each journal left is an upload cut short: its hidden
names are removed the way the upload itself removes them, through the root of the
container's running task, every directory resolved inside that root (``RESOLVE_IN_ROOT``),
the last component never followed, and only names bearing the upload's own random token.
A journal whose container no longer exists goes (its files went with it). One whose
container exists but runs no task (no process: no root to reach its files through) is kept
and followed (:class:`KeptUploads`): containerd's events say when a task of that container
starts (its names are removed then, through the new task's root: a task's restart keeps
the container's file system) and when the container is deleted (its journal goes); each
(re)subscription tries every kept journal again, for what happened while none was heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from kukeon.daemon.cpstage import (
    JOURNALS,
    ContainerDirectory,
    UploadRefusedError,
    member_path,
    staged_name,
)
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdError, NotFoundError
from kukeon.runtime.containerd.events import (
    TOPIC_CONTAINER_DELETE,
    TOPIC_TASK_START,
    ContainerDeleted,
    Subscribed,
    TaskStarted,
    topic_filter,
)
from kukeon.runtime.containerd.tasks import TaskStatus
from kukeon.runtime.inroot import open_root

log = logging.getLogger(__name__)

MAX_JOURNAL_BYTES = 64 * 1024 * 1024
"""A journal larger than this was not written by an upload (a name is at most a few KiB and
an upload's members are as many as its stream had): it is removed unread."""


@dataclass(frozen=True)
class DeadUpload:
    """A journal's content: the container, where tar unpacked, what it staged."""

    namespace: str
    container: str
    unpack_in: str
    staged: dict[str, str]


async def discard_dead_uploads(state_dir: Path, containerd: ContainerdClient) -> KeptUploads:
    """Remove what the uploads of an earlier kukeond staged and did not end; say what went.
    Only at start (an upload of this process would lose its staged files). A failure is
    logged: it must not keep the node down. The journals kept (their containers run no
    task) are returned, for `KeptUploads.follow`."""
    kept = KeptUploads(containerd)
    for journal in await asyncio.to_thread(_journals, state_dir / JOURNALS):
        await kept.settle(journal)
    return kept


@dataclass
class KeptUploads:
    """The journals found at start whose containers ran no task, each with its container's
    namespace and id: tried again when a task of that container starts, dropped when the
    container is deleted (``follow``)."""

    containerd: ContainerdClient
    journals: dict[Path, tuple[str, str]] = field(default_factory=dict)

    async def settle(self, journal: Path) -> None:
        """Remove what ``journal`` names through its container's running task, or drop it
        when the container is gone; else keep it (in ``journals``). A failure is logged and
        changes nothing."""
        try:
            outcome = await _discard(journal, self.containerd)
        except (ContainerdError, OSError) as error:
            log.warning("cp: the files staged by %s are not removed: %s", journal.name, error)
            return
        except Exception:
            log.exception("cp: the files staged by %s are not removed", journal.name)
            return
        upload = outcome.upload
        if outcome.kept and upload is not None:
            self.journals[journal] = (upload.namespace, upload.container)
            return
        self.journals.pop(journal, None)
        if upload is not None and upload.staged:
            log.warning(
                "cp: removed what an upload cut short by a stop or crash staged in %s/%s",
                upload.container,
                upload.unpack_in,
            )

    async def follow(self) -> None:
        """Until no journal is kept: containerd's task starts and container deletions,
        each settling the journals of its container; every kept journal at each
        (re)subscription. For a supervisor (``finishable``)."""
        filters = (topic_filter(TOPIC_TASK_START), topic_filter(TOPIC_CONTAINER_DELETE))
        async for event in self.containerd.events.subscribe(*filters):
            if isinstance(event, Subscribed):
                chosen = list(self.journals)
            elif isinstance(event, TaskStarted | ContainerDeleted):
                where = (event.namespace, event.container_id)
                chosen = [journal for journal, its in self.journals.items() if its == where]
            else:
                continue
            for journal in chosen:
                await self.settle(journal)
            if not self.journals:
                return


def _journals(directory: Path) -> list[Path]:
    """The regular files of ``directory`` (none: nothing was ever uploaded). Blocking."""
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    return sorted(
        entry
        for entry in entries
        if entry.suffix == ".jsonl" and stat.S_ISREG(entry.lstat().st_mode)
    )


@dataclass(frozen=True)
class _Outcome:
    upload: DeadUpload | None
    """None: the file was not an upload's journal (removed)."""
    kept: bool = False
    """The container exists and runs no task: the journal stays."""


async def _discard(journal: Path, containerd: ContainerdClient) -> _Outcome:
    """Remove what ``journal`` names, then the journal. The journal is kept while its
    container exists without a running task."""
    upload = await asyncio.to_thread(read_journal, journal)
    if upload is None:
        log.warning("cp: %s is not an upload's journal: removed", journal)
    elif upload.staged:
        root = await _task_root(containerd, upload)
        if root is None:
            if await _exists(containerd, upload):
                log.info(
                    "cp: %s runs no task: what its upload staged goes once it runs one",
                    upload.container,
                )
                return _Outcome(upload, kept=True)
        else:
            try:
                where = ContainerDirectory(root, upload.unpack_in)
                await asyncio.to_thread(where.discard, upload.staged)
            finally:
                os.close(root)
    await asyncio.to_thread(partial(journal.unlink, missing_ok=True))
    return _Outcome(upload)


async def _task_root(containerd: ContainerdClient, upload: DeadUpload) -> int | None:
    """The root of the container's running task (``open_root``); None without one."""
    try:
        task = await containerd.tasks(upload.namespace).get(upload.container)
    except NotFoundError:
        return None
    if task.status != TaskStatus.RUNNING:
        return None  # a stopped task's pid may be another process's by now
    try:
        return await asyncio.to_thread(open_root, task.pid)
    except OSError:
        return None  # it exited meanwhile


async def _exists(containerd: ContainerdClient, upload: DeadUpload) -> bool:
    try:
        await containerd.containers(upload.namespace).get(upload.container)
    except NotFoundError:
        return False
    return True


def read_journal(path: Path) -> DeadUpload | None:
    """A journal's upload; None for a file that is not one (unreadable lines, a destination
    that is not a member's normalised path). The last line may be cut: a kill mid-write.
    Blocking."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as file:
        if os.fstat(file.fileno()).st_size > MAX_JOURNAL_BYTES:
            return None
        lines = file.read().split(b"\n")
    try:
        head = json.loads(lines[0])
        namespace, container = head["namespace"], head["container"]
        unpack_in, token = head["unpackIn"], head["token"]
        destinations = [json.loads(line) for line in lines[1:-1]]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(text, str) for text in (namespace, container, unpack_in, token)):
        return None
    if not token.isalnum() or not all(_normal(name) for name in destinations):
        return None
    staged = {name: staged_name(name, token) for name in destinations}
    return DeadUpload(namespace, container, unpack_in, staged)


def _normal(name: object) -> bool:
    if not isinstance(name, str):
        return False
    with contextlib.suppress(UploadRefusedError):
        return member_path(name) == name and name != "."
    return False
