"""LogFollower across the rotations of a container's logger: a follower sees every record
in order, `tail` and the whole log read the kept files, and a new instance's files are
not mixed with the previous one's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kukeon.controllers.cellfiles import CellFiles, keep_as_previous, last_logged_line
from kukeon.daemon.logfollow import LogFollower
from kukeon.runtime.containerd.crilog import LogRecord, LogRotation, logger_command, rotated_logs


def _record(text: str) -> bytes:
    return f"2026-12-05T10:00:00.000000000Z stdout F {text}\n".encode()


def _texts(records: list[LogRecord]) -> list[str]:
    return [record.text.decode() for record in records]


def _rotated_by_hand(log: Path, files: list[list[str]]) -> None:
    """Files as a logger leaves them: ``files[:-1]`` rotated (oldest first), the last current."""
    for number, texts in enumerate(files[:-1], start=1):
        (log.parent / f"{log.name}.{number}").write_bytes(b"".join(map(_record, texts)))
    log.write_bytes(b"".join(map(_record, files[-1])))


def test_tail_reads_back_across_the_kept_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _rotated_by_hand(log, [["a", "b"], ["c", "d"], ["e"]])
    assert _texts(LogFollower(log).tail(4)) == ["b", "c", "d", "e"]
    assert _texts(LogFollower(log).tail(1)) == ["e"]
    assert _texts(LogFollower(log).tail(0)) == []
    assert _texts(LogFollower(log).tail(None)) == ["a", "b", "c", "d", "e"]
    chunks = list(LogFollower(log).history(None))
    assert [_texts(chunk) for chunk in chunks] == [["a", "b"], ["c", "d"], ["e"]]


def test_since_skips_the_files_written_before_it(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _rotated_by_hand(log, [["a"], ["b"], ["c"]])
    hour_ago = time.time() - 3600
    os.utime(tmp_path / "c.log.1", (hour_ago, hour_ago))
    since = datetime.now(UTC) - timedelta(minutes=1)
    chunks = list(LogFollower(log).history(None, since))
    assert [_texts(chunk) for chunk in chunks] == [["b"], ["c"]]


def test_several_rotations_between_two_reads_are_read_in_order(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(_record("1"))
    follower = LogFollower(log)
    assert _texts(follower.tail(None)) == ["1"]
    with log.open("ab") as stream:
        stream.write(_record("2"))
    for number, texts in ((1, ["3"]), (2, ["4", "5"])):
        log.rename(tmp_path / f"c.log.{number}")  # what the logger does, then a new file
        log.write_bytes(b"".join(map(_record, texts)))
    (tmp_path / "c.log.1").unlink()  # the oldest removed: the follower holds it open
    assert _texts(follower.read()) == ["2", "3", "4", "5"]
    with log.open("ab") as stream:
        stream.write(_record("6"))
    assert _texts(follower.read()) == ["6"]
    follower.close()


def test_a_follower_of_a_rotating_logger_misses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    out_r, out_w = os.pipe()
    rotation = LogRotation(max_size=65536, max_files=4)
    logger = subprocess.Popen(
        logger_command(log, streams={out_r: "stdout"}, ready_fd=None, rotation=rotation),
        pass_fds=(out_r,),
    )
    os.close(out_r)
    follower = LogFollower(log)
    seen = _texts(follower.tail(None))

    def write() -> None:
        # ~600 KB/s of records, ~20 rotations: the kept files hold 0.4 s of it, a follower
        # reading every 10 ms keeps up (one that lags more misses what was removed).
        for start in range(0, 30_000, 250):
            os.write(out_w, b"".join(b"line %d\n" % n for n in range(start, start + 250)))
            time.sleep(0.02)
        os.close(out_w)

    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive() or logger.poll() is None:
        seen += _texts(follower.read())
        time.sleep(0.01)
    seen += _texts(follower.read())
    follower.close()
    writer.join()
    assert logger.wait() == 0
    assert int(rotated_logs(log)[-1].name.rsplit(".", 1)[1]) > 10
    assert seen == [f"line {n}" for n in range(30_000)]


def test_a_new_instance_keeps_the_ending_ones_files_as_previous(tmp_path: Path) -> None:
    log, previous = tmp_path / "c.log", tmp_path / "c.previous.log"
    _rotated_by_hand(previous, [["older instance"], ["older instance 2"]])
    _rotated_by_hand(log, [["a"], ["b"], ["c"]])
    follower = LogFollower(log)
    assert _texts(follower.tail(None)) == ["a", "b", "c"]
    keep_as_previous(log, previous)
    assert sorted(os.listdir(tmp_path)) == [
        "c.previous.log",
        "c.previous.log.1",
        "c.previous.log.2",
    ]
    assert _texts(LogFollower(previous).tail(None)) == ["a", "b", "c"]
    log.write_bytes(_record("new"))  # the new instance's logger
    assert _texts(follower.read()) == ["new"]  # not the ending instance's files again
    follower.close()
    keep_as_previous(log, previous)
    assert sorted(os.listdir(tmp_path)) == ["c.previous.log"]
    assert _texts(LogFollower(previous).tail(None)) == ["new"]
    keep_as_previous(log, previous)  # an instance that wrote nothing keeps the one before
    assert _texts(LogFollower(previous).tail(None)) == ["new"]


def test_last_line_when_the_current_file_is_empty(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _rotated_by_hand(log, [["first"], ["said last"], []])
    assert last_logged_line(log) is None
    files = CellFiles(tmp_path, ("r", "s", "t", "c"))
    where = files.log("box")
    where.parent.mkdir(parents=True)
    _rotated_by_hand(where, [["first"], ["said last"], []])
    assert asyncio.run(files.last_line("box")) == "said last"


def test_a_rotation_between_the_open_and_the_tail_keeps_the_order(tmp_path: Path) -> None:
    # A busy container rotates every few milliseconds: the file the follower opened may be
    # a rotated one by the time it lists them, or removed already.
    log = tmp_path / "c.log"
    _rotated_by_hand(log, [["a"], ["b"]])
    follower = LogFollower(log)  # holds the file of "b"
    log.rename(tmp_path / "c.log.2")
    log.write_bytes(_record("c"))
    assert _texts(follower.tail(None)) == ["a", "b"]
    assert _texts(follower.read()) == ["c"]
    follower.close()

    follower = LogFollower(log)  # holds the file of "c"
    for number, text in ((3, "d"), (4, "e")):
        log.rename(tmp_path / f"c.log.{number}")
        log.write_bytes(_record(text))
    (tmp_path / "c.log.1").unlink()
    (tmp_path / "c.log.2").unlink()
    (tmp_path / "c.log.3").unlink()  # the held one, removed: what is listed is newer
    assert _texts(follower.tail(3)) == ["c"]
    assert _texts(follower.read()) == ["d", "e"]
    follower.close()
