"""An upload's journal (kukeon.daemon.cpstage.UploadJournal) and how the next kukeond reads
it (kukeon.daemon.cpleftovers): every destination noted before tar is given it, read back
whatever its names hold; a file that is not such a journal is not trusted; a journal whose
container is gone is removed, one whose container runs no task kept for a later start."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kukeon.daemon.cpleftovers import discard_dead_uploads, read_journal
from kukeon.daemon.cpstage import JOURNALS, StagedUpload, UploadJournal, UploadRefusedError
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.errors import NotFoundError
from kukeon.runtime.containerd.events import ContainerDeleted, Subscribed, TaskStarted
from kukeon.runtime.containerd.tasks import TaskStatus

CHUNK = 64 * 1024
NAMES = ["f", "d/g", "line\nbreak", "bad-\udcff-byte"]


def _archive(*names: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 4
            archive.addfile(info, io.BytesIO(b"data"))
    return buffer.getvalue()


def _journaled(path: Path, *names: str) -> StagedUpload:
    upload = StagedUpload()
    upload.journal = UploadJournal(path, "ns", "cid").open("/srv", upload.token)
    try:
        upload.rewrite(io.BytesIO(_archive(*names)), io.BytesIO(), CHUNK)
    finally:
        upload.journal.close()
    return upload


def test_every_staged_name_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / JOURNALS / "cp-1.jsonl"
    upload = _journaled(path, *NAMES, "f")  # a member twice: noted once
    with path.open("a") as journal:
        journal.write('"cut-by-a-ki')  # a kill mid-write: the last line is not whole
    found = read_journal(path)
    assert found is not None
    assert (found.namespace, found.container, found.unpack_in) == ("ns", "cid", "/srv")
    assert found.staged == upload.staged
    assert list(found.staged) == NAMES


def test_a_journal_that_cannot_be_written_refuses_the_upload() -> None:
    upload = StagedUpload(journal=cast(Any, _Failing()))  # as on a full disk
    with pytest.raises(UploadRefusedError, match="cannot note the upload"):
        upload.rewrite(io.BytesIO(_archive("f")), io.BytesIO(), CHUNK)
    assert upload.staged == {}  # tar was given nothing the journal does not name


class _Failing:
    def write(self, _: str) -> int:
        raise OSError(28, "No space left on device")


HEAD = {"namespace": "ns", "container": "cid", "unpackIn": "/", "token": "ab12"}


@pytest.mark.parametrize(
    "lines",
    [
        ["not json"],
        [json.dumps({**HEAD, "token": "../x"}), '"f"'],
        [json.dumps({**HEAD, "token": 5}), '"f"'],
        [json.dumps({k: v for k, v in HEAD.items() if k != "container"}), '"f"'],
        [json.dumps(HEAD), '"../etc/passwd"'],
        [json.dumps(HEAD), '"/etc/passwd"'],
        [json.dumps(HEAD), '"a/./b"'],
        [json.dumps(HEAD), '"."'],
        [json.dumps(HEAD), "7"],
    ],
)
def test_what_is_not_an_uploads_journal_is_not_trusted(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert read_journal(path) is None


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target.jsonl"
    target.write_text(json.dumps(HEAD) + '\n"f"\n')
    (tmp_path / "link.jsonl").symlink_to(target)
    with pytest.raises(OSError, match="symbolic links"):  # ELOOP: O_NOFOLLOW
        read_journal(tmp_path / "link.jsonl")


class _Containerd:
    """No task anywhere; the containers in ``existing`` exist."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing

    def tasks(self, namespace: str) -> Any:
        async def get(container: str) -> None:
            raise NotFoundError(container, namespace=namespace)

        return type("Tasks", (), {"get": staticmethod(get)})()

    def containers(self, namespace: str) -> Any:
        async def get(container: str) -> str:
            if container not in self.existing:
                raise NotFoundError(container, namespace=namespace)
            return container

        return type("Containers", (), {"get": staticmethod(get)})()


async def test_a_journal_goes_with_its_container_and_stays_while_it_runs_nothing(
    tmp_path: Path,
) -> None:
    journals = tmp_path / JOURNALS
    journals.mkdir()
    for container in ("gone", "stopped"):
        head = {**HEAD, "container": container}
        (journals / f"cp-{container}.jsonl").write_text(json.dumps(head) + '\n"f"\n')
    (journals / "cp-junk.jsonl").write_text("junk\n")
    (journals / "cp-link.jsonl").symlink_to(journals / "cp-gone.jsonl")
    await discard_dead_uploads(tmp_path, cast(ContainerdClient, _Containerd({"stopped"})))
    assert sorted(p.name for p in journals.iterdir()) == ["cp-link.jsonl", "cp-stopped.jsonl"]


class _Sink(io.RawIOBase):
    """tar's stdin: notes each write in the shared ``steps``."""

    def __init__(self, steps: list[str]) -> None:
        super().__init__()
        self.steps = steps

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.steps.append("tar")
        return len(data)


def test_the_journal_is_on_disk_before_tar_gets_what_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created as every state file (0600, the file then its directory flushed, and the
    state directory for the journals' new directory), then flushed (fdatasync) before each
    chunk of the stream whose members it names reaches tar: once per chunk, not per member.
    Before, nothing was flushed: a power loss could keep a staged file and lose its name."""
    steps: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def named(fd: int) -> str:  # a temporary file (.cp-1.jsonl.XYZ.tmp) by its name's
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        return name.split(".")[1] if name.startswith(".") else name.removesuffix(".jsonl")

    def fsync(fd: int) -> None:
        steps.append(f"fsync {named(fd)}")
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        steps.append(f"fdatasync {named(fd)}")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    for base in ("state", "more"):
        (tmp_path / base).mkdir()
    path = tmp_path / "state" / JOURNALS / "cp-1.jsonl"
    upload = StagedUpload()
    upload.journal = UploadJournal(path, "ns", "cid").open("/srv", upload.token)
    assert steps == ["fsync state", "fsync cp-1", "fsync cp-staged"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    steps.clear()
    members = [f"m{index}" for index in range(40)]  # 40 x 1.5 KiB: one 64 KiB chunk
    try:
        upload.rewrite(io.BytesIO(_archive(*members)), _Sink(steps), CHUNK)
    finally:
        upload.journal.close()
    assert steps[0] == "fdatasync cp-1"
    assert steps.count("fdatasync cp-1") == 1
    assert "tar" in steps
    found = read_journal(path)
    assert found is not None
    assert list(found.staged) == members


class _Following(_Containerd):
    """``_Containerd`` whose containers in ``running`` run a task (this process: its root
    is the host's), and whose event stream is ``events``."""

    def __init__(self, existing: set[str]) -> None:
        super().__init__(existing)
        self.running: set[str] = set()
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.events = SimpleNamespace(subscribe=self._subscribe)

    def tasks(self, namespace: str) -> Any:
        async def get(container: str) -> Any:
            if container not in self.running:
                raise NotFoundError(container, namespace=namespace)
            return SimpleNamespace(status=TaskStatus.RUNNING, pid=os.getpid())

        return type("Tasks", (), {"get": staticmethod(get)})()

    async def _subscribe(self, *filters: str) -> AsyncIterator[object]:
        assert filters == ('topic=="/tasks/start"', 'topic=="/containers/delete"')
        while True:
            yield await self.queue.get()


def _event(kind: type, container: str) -> Any:
    pid = {"pid": 1} if kind is TaskStarted else {}
    return kind(namespace="ns", topic="", timestamp=None, container_id=container, **pid)


async def test_a_kept_journal_goes_once_its_container_runs_a_task_or_is_deleted(
    tmp_path: Path,
) -> None:
    """Kept at start (no task), a journal is not left for the next start: its names go
    through the task that starts (containerd's /tasks/start), it goes with its container
    (/containers/delete); a start of another container changes nothing. The follower ends
    once no journal is kept. Before, both waited for kukeond's next start."""
    unpack = tmp_path / "in-container"
    unpack.mkdir()
    journals = tmp_path / JOURNALS
    journals.mkdir()
    for container in ("restarted", "deleted"):
        head = {**HEAD, "container": container, "unpackIn": str(unpack), "token": container}
        (journals / f"cp-{container}.jsonl").write_text(json.dumps(head) + '\n"f"\n')
        (unpack / f".f.kukeon-cp-{container}").write_text("half")
    containerd = _Following({"restarted", "deleted", "other"})
    client = cast(ContainerdClient, containerd)
    kept = await discard_dead_uploads(tmp_path, client)
    assert sorted(p.name for p in kept.journals) == ["cp-deleted.jsonl", "cp-restarted.jsonl"]
    following = asyncio.ensure_future(kept.follow())
    containerd.queue.put_nowait(Subscribed(reconnected=False))  # nothing runs yet
    containerd.running.add("other")
    containerd.queue.put_nowait(_event(TaskStarted, "other"))
    containerd.running.add("restarted")
    containerd.queue.put_nowait(_event(TaskStarted, "restarted"))
    await _settled(lambda: "cp-restarted.jsonl" not in {p.name for p in kept.journals})
    assert sorted(p.name for p in unpack.iterdir()) == [".f.kukeon-cp-deleted"]
    assert not following.done()
    containerd.existing.discard("deleted")
    containerd.queue.put_nowait(_event(ContainerDeleted, "deleted"))
    async with asyncio.timeout(10):
        await following  # no journal kept: the follower ends
    assert list(journals.iterdir()) == []


async def _settled(done: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not done():  # noqa: ASYNC110 (a fake's queue has no event to wait on)
            await asyncio.sleep(0.01)
