"""A reader that lags by more than the kept files is told what it lost: the logger numbers
its files one by one, so the numbers missing between the file followed and the oldest one
kept are files removed before the reader got to them. `logs` gets a `[kukeon]` record
where they are missing, attach a notice on its stderr channel, kukeond's log a warning.
Before, those lines were missing without a sign."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from kukeon.controllers.cellfiles import keep_as_previous
from kukeon.daemon import attach
from kukeon.daemon.logfollow import ByteFollower, Gap, LogFollower
from kukeon.runtime.containerd.crilog import LogRecord


def _record(text: str) -> bytes:
    return f"2026-12-05T10:00:00.000000000Z stdout F {text}\n".encode()


def _texts(records: list[LogRecord]) -> list[str]:
    return [record.text.decode() for record in records]


def _rotate(log: Path, number: int, text: str, *, keep: int) -> None:
    """What the logger does: the current file becomes ``<log>.<number>``, a new one gets
    ``text``, the oldest beyond ``keep`` files (the current one included) are removed."""
    log.rename(log.with_name(f"{log.name}.{number}"))
    log.write_bytes(_record(text))
    kept = sorted(log.parent.glob(log.name + ".*"), key=lambda path: int(path.suffix[1:]))
    for old in kept[: len(kept) - (keep - 1)]:
        old.unlink()


def _start(log: Path) -> None:
    for number in (1, 2):
        log.with_name(f"{log.name}.{number}").write_bytes(_record(f"kept-{number}"))
    log.write_bytes(_record("current"))


def test_a_follower_that_lagged_gets_a_record_where_the_files_are_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "c.log"
    _start(log)
    follower = LogFollower(log)
    assert _texts(follower.tail(None)) == ["kept-1", "kept-2", "current"]
    with log.open("ab") as current:
        current.write(_record("current-more"))
    for number in range(3, 10):  # c.log.3 is the file followed; 4..9 come after it
        _rotate(log, number, f"file-{number + 1}", keep=3)
    # Kept: c.log.8, c.log.9 and the current one: 4, 5, 6 and 7 were removed unread.
    with caplog.at_level(logging.WARNING, logger="kukeon.daemon.logfollow"):
        records = follower.read()
    texts = _texts(records)
    assert texts[0] == "current-more"  # the file held, read to its end
    assert texts[1].startswith("[kukeon] 4 log files of this output were removed")
    assert records[1].stream == "stderr"
    assert texts[2:] == ["file-8", "file-9", "file-10"]
    assert "4 file(s) were removed" in caplog.text

    # Keeping up from there: nothing more is said.
    _rotate(log, 10, "file-11", keep=3)
    assert _texts(follower.read()) == ["file-11"]


def test_a_follower_that_kept_up_is_told_nothing(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _start(log)
    follower = LogFollower(log)
    follower.tail(0)
    texts: list[str] = []
    for number in range(3, 12):
        _rotate(log, number, f"file-{number + 1}", keep=3)
        texts += _texts(follower.read())
    assert texts == [f"file-{n}" for n in range(4, 13)]


def test_a_new_instance_numbering_from_1_again_is_no_loss(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _start(log)
    follower = LogFollower(log)
    follower.tail(0)
    keep_as_previous(log, tmp_path / "c.previous.log")
    log.write_bytes(_record("new-1"))
    _rotate(log, 1, "new-2", keep=3)
    assert not any(text.startswith("[kukeon]") for text in _texts(follower.read()))


def test_a_kept_file_removed_while_the_log_is_read_is_said(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _start(log)
    history = LogFollower(log).history(None)
    assert _texts(next(history)) == ["kept-1"]
    log.with_name("c.log.2").unlink()  # the logger removed it meanwhile
    [notice] = _texts(next(history))
    assert notice.startswith("[kukeon] 1 log file of this output was")
    assert _texts(next(history)) == ["current"]


def test_an_attach_follower_gets_the_gap_in_its_place(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _start(log)
    follower = ByteFollower(log)
    with log.open("ab") as current:
        current.write(b"more\n")
    for number in range(3, 10):
        _rotate(log, number, f"file-{number + 1}", keep=3)
    chunks: list[bytes | Gap] = []
    while chunk := follower.read_or_gap(1 << 16):
        chunks.append(chunk)
    assert chunks[0] == b"more\n"
    assert isinstance(chunks[1], Gap)
    assert chunks[1].files == 4
    after = b"".join(c for c in chunks[2:] if isinstance(c, bytes))
    assert after == b"".join(_record(f"file-{n}") for n in (8, 9, 10))


class _Socket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


def test_attach_sends_the_notice_on_stderr_not_in_the_output(tmp_path: Path) -> None:
    socket = _Socket()
    asyncio.run(attach._send_output(socket, Gap(tmp_path / "c.log", 2)))  # type: ignore[arg-type]
    asyncio.run(attach._send_output(socket, b"out"))  # type: ignore[arg-type]
    assert socket.sent[0].startswith(b"\x02\r\n[kukeon] 2 log files of this output were")
    assert socket.sent[1] == b"\x01out"
