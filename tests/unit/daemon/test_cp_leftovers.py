"""An upload's journal (kukeon.daemon.cpstage.UploadJournal) and how the next kukeond reads
it (kukeon.daemon.cpleftovers): every destination noted before tar is given it, read back
whatever its names hold; a file that is not such a journal is not trusted; a journal whose
container is gone is removed, one whose container runs no task kept for a later start."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.daemon.cpleftovers import discard_dead_uploads, read_journal
from kukeon.daemon.cpstage import JOURNALS, StagedUpload, UploadJournal, UploadRefusedError
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.errors import NotFoundError

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
