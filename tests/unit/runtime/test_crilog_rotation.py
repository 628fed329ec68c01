"""The container logger rotates its own file (kukeond's containerLogMaxSize and
containerLogMaxFiles): run as the shim runs it, fed megabytes through its pipes."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kukeon.runtime.containerd.crilog import (
    MAX_RECORD_BYTES,
    LogRecord,
    LogRotation,
    logger_command,
    parse_lines,
    rotated_logs,
)

_NUMBERED = re.compile(rb"(out|err) (\d+) .*")


class RotatingLogger:
    """The logger reading two pipes (stdout, stderr), as a replacement copier runs it."""

    def __init__(self, path: Path, rotation: LogRotation) -> None:
        out_r, self.stdout = os.pipe()
        err_r, self.stderr = os.pipe()
        self.process = subprocess.Popen(
            logger_command(
                path, streams={out_r: "stdout", err_r: "stderr"}, ready_fd=None, rotation=rotation
            ),
            pass_fds=(out_r, err_r),
        )
        os.close(out_r)
        os.close(err_r)

    def close(self) -> int:
        os.close(self.stdout)
        os.close(self.stderr)
        return self.process.wait(timeout=30)


def _files(log: Path) -> list[Path]:
    """The log's files, oldest first."""
    return [*rotated_logs(log), log]


def _records(log: Path) -> list[LogRecord]:
    return list(parse_lines(b"".join(path.read_bytes() for path in _files(log)).splitlines()))


def _write_lines(fd: int, name: bytes, count: int, long_every: int = 0) -> None:
    """``count`` numbered lines, one write per few hundred; every ``long_every``th line is
    longer than a record (split into P records)."""
    batch: list[bytes] = []
    for n in range(count):
        pad = b"x" * (MAX_RECORD_BYTES * 2 + 5) if long_every and n % long_every == 0 else b"y"
        batch.append(b"%s %d %s\n" % (name, n, pad))
        if len(batch) == 300:
            os.write(fd, b"".join(batch))
            batch.clear()
    os.write(fd, b"".join(batch))


def _feed(logger: RotatingLogger, count: int, *, long_every: int = 0) -> None:
    """Both streams at once, from two threads (as a container's two pipes fill)."""
    writers = [
        threading.Thread(target=_write_lines, args=(logger.stdout, b"out", count, long_every)),
        threading.Thread(target=_write_lines, args=(logger.stderr, b"err", count, long_every)),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)


def _lines_of(records: list[LogRecord], stream: str) -> list[bytes]:
    """The lines of one stream, P records joined to what continues them."""
    lines: list[bytes] = []
    part = b""
    for record in records:
        if record.stream != stream:
            continue
        part += record.text
        if not record.partial:
            lines.append(part)
            part = b""
    assert part == b"", "a line cut off at its end"
    return lines


def _numbers(lines: list[bytes], name: bytes) -> list[int]:
    found = []
    for line in lines:
        match = _NUMBERED.fullmatch(line)
        assert match is not None, line[:80]
        assert match[1] == name, line[:80]
        found.append(int(match[2]))
    return found


def _whole_records(path: Path) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\n"), path.name
    for record in parse_lines(data.splitlines()):
        assert record.stream in ("stdout", "stderr"), path.name


def test_files_stay_under_the_size_and_no_record_is_lost_or_cut(tmp_path: Path) -> None:
    # ~2 x 1.3 MB of lines, some longer than a record, into 64 KiB files, all kept.
    log = tmp_path / "c.log"
    logger = RotatingLogger(log, LogRotation(max_size=65536, max_files=1000))
    _feed(logger, 20_000, long_every=997)
    assert logger.close() == 0
    files = _files(log)
    assert len(files) > 20
    for path in files:
        assert path.stat().st_size <= 65536
        _whole_records(path)
    numbers = [int(path.name.rsplit(".", 1)[1]) for path in files[:-1]]
    assert numbers == list(range(1, len(files)))  # one more at each rotation
    records = _records(log)
    for stream, name in (("stdout", b"out"), ("stderr", b"err")):
        assert _numbers(_lines_of(records, stream), name) == list(range(20_000))
    times = [record.time or "" for record in records]
    assert times == sorted(times)  # the files' order is the records' order


def test_at_most_max_files_are_kept_the_newest(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    logger = RotatingLogger(log, LogRotation(max_size=65536, max_files=3))
    _feed(logger, 30_000)
    assert logger.close() == 0
    files = _files(log)
    assert len(files) == 3
    assert all(path.stat().st_size <= 65536 for path in files)
    records = _records(log)
    assert records
    for stream, name in (("stdout", b"out"), ("stderr", b"err")):
        kept = _numbers(_lines_of(records, stream), name)
        # The newest records, each stream's a run without a gap, up to its last line (a
        # stream that ended well before the other may have none left).
        assert kept == list(range(kept[0] if kept else 30_000, 30_000))
    assert sorted(os.listdir(tmp_path)) == sorted(path.name for path in files)


def test_a_replacement_numbers_on_and_keeps_the_count(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    rotation = LogRotation(max_size=65536, max_files=4)
    first = RotatingLogger(log, rotation)
    _write_lines(first.stdout, b"out", 10_000)
    assert first.close() == 0
    before = [path.name for path in rotated_logs(log)]
    second = RotatingLogger(log, rotation)  # a copier replacing a killed one
    _write_lines(second.stdout, b"out", 10_000)
    assert second.close() == 0
    after = [int(path.name.rsplit(".", 1)[1]) for path in rotated_logs(log)]
    assert len(after) == 3
    assert min(after) > max(int(name.rsplit(".", 1)[1]) for name in before)
    assert all(path.stat().st_size <= 65536 for path in _files(log))
    lines = _numbers(_lines_of(_records(log), "stdout"), b"out")
    assert lines[-1] == 9_999
    assert lines == list(range(lines[0], 10_000))


def test_a_current_file_over_the_size_is_rotated_at_the_first_write(tmp_path: Path) -> None:
    # kukeond restarted with a smaller containerLogMaxSize; a replacement copier starts.
    log = tmp_path / "c.log"
    log.write_bytes(b"2026-12-05T10:00:00.000000000Z stdout F old\n" * 4000)
    logger = RotatingLogger(log, LogRotation(max_size=65536, max_files=2))
    os.write(logger.stdout, b"new\n")
    assert logger.close() == 0
    assert [path.name for path in _files(log)] == ["c.log.1", "c.log"]
    assert [r.text for r in _records(log)][-1:] == [b"new"]
    assert log.stat().st_size < 100


@pytest.mark.parametrize(
    "cut", [b"2026-12-05T10:00:01.0", b"2026-12-05T10:00:01.000000000Z stdout P x"]
)
def test_a_replacement_takes_back_the_record_its_killed_predecessor_left_cut(
    tmp_path: Path, cut: bytes
) -> None:
    # A copier SIGKILLed inside a write leaves a record without its end (the kernel stops
    # a file write at a page when a fatal signal is pending); the replacement's first
    # record used to run on from it, one line of two records' text.
    log = tmp_path / "c.log"
    whole = b"2026-12-05T10:00:00.000000000Z stdout F before\n"
    log.write_bytes(whole + cut)
    logger = RotatingLogger(log, LogRotation(max_size=65536, max_files=2))
    os.write(logger.stdout, b"after\n")
    assert logger.close() == 0
    _whole_records(log)
    assert [(r.stream, r.partial, r.text) for r in _records(log)] == [
        ("stdout", False, b"before"),
        ("stdout", False, b"after"),
    ]


def test_a_replacement_of_a_file_that_is_one_cut_record_starts_it_afresh(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"2026-12-05T10:00:00.000000000Z stdout F no end")
    logger = RotatingLogger(log, LogRotation(max_size=65536, max_files=2))
    os.write(logger.stdout, b"after\n")
    assert logger.close() == 0
    assert [r.text for r in _records(log)] == [b"after"]


def _mounted_tmpfs(path: Path, options: str) -> None:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)


def _until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _take_every_inode(disk: Path) -> list[Path]:
    fillers: list[Path] = []
    for n in range(16):
        try:
            (path := disk / f"filler{n}").write_bytes(b"")
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            return fillers
        fillers.append(path)
    raise AssertionError("the file system's inodes did not run out")


def test_a_refused_rotation_keeps_logging_says_so_and_is_tried_again(tmp_path: Path) -> None:
    # A file system out of inodes: the new file cannot be created. The logger goes on into
    # the current file (its pipes never wait), says so, and rotates once it can.
    disk = tmp_path / "disk"
    _mounted_tmpfs(disk, "size=16m,nr_inodes=8")
    try:
        log = disk / "c.log"
        logger = RotatingLogger(log, LogRotation(max_size=65536, max_files=10))
        _until(log.exists, "the logger did not open its log")
        fillers = _take_every_inode(disk)
        done = threading.Thread(target=_write_lines, args=(logger.stdout, b"out", 20_000))
        done.start()
        done.join(timeout=20)
        assert not done.is_alive(), "the logger stopped reading its pipe"
        _until(lambda: log.stat().st_size > 65536 * 2, "the records did not go on")
        for path in fillers:
            path.unlink()
        time.sleep(1.1)  # a refused rotation is tried again a second later
        _write_lines(logger.stdout, b"out", 2_000)
        assert logger.close() == 0
        sizes = [path.stat().st_size for path in _files(log)]
        records = _records(log)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert len(sizes) >= 3  # rotated again once the disk allowed it
    assert sizes[0] > 65536 * 2  # the file the refusals left growing
    assert all(size <= 65536 for size in sizes[1:])
    notes = [r.text for r in records if r.stream == "stderr"]
    assert notes
    assert all(
        re.fullmatch(rb"\[kukeon\] the log could not be rotated \(\d+ tries: .+\): .+", n)
        for n in notes
    )
    assert any(b"No space left on device" in note for note in notes)
    lines = _numbers(_lines_of(records, "stdout"), b"out")
    assert lines == list(range(20_000)) + list(range(2_000))  # nothing lost


def test_rotation_settings_that_keep_nothing_are_refused() -> None:
    with pytest.raises(ValueError, match="keeps no file"):
        LogRotation(max_size=65536, max_files=1)


def test_a_log_file_the_disk_has_no_room_for_lets_the_task_start_and_is_made_later(
    tmp_path: Path,
) -> None:
    # No inode for the log file when the task starts (a cell restarted on a full disk:
    # its last file was moved to .previous.log): the logger starts all the same, reads its
    # pipes, drops what they carry, and makes the file a second after the disk has room,
    # saying what it dropped. Before, it exited at its start: the task was lost.
    disk = tmp_path / "disk"
    _mounted_tmpfs(disk, "size=16m,nr_inodes=8")
    try:
        fillers = _take_every_inode(disk)
        log = disk / "c.log"
        logger = RotatingLogger(log, LogRotation(max_size=65536, max_files=3))
        done = threading.Thread(target=_write_lines, args=(logger.stdout, b"out", 5_000))
        done.start()
        done.join(timeout=20)
        assert not done.is_alive(), "the logger stopped reading its pipe"
        assert logger.process.poll() is None, "the logger exited"
        assert not log.exists()
        for path in fillers:
            path.unlink()
        time.sleep(1.1)  # the file is tried again a second later
        _write_lines(logger.stdout, b"out", 100)
        assert logger.close() == 0
        records = _records(log)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    notes = [r.text for r in records if r.stream == "stderr"]
    assert len(notes) == 1, notes
    assert re.fullmatch(
        rb"\[kukeon\] 5000 records \(\d+ bytes\) of output were not logged: "
        rb"No space left on device",
        notes[0],
    ), notes
    assert _numbers(_lines_of(records, "stdout"), b"out") == list(range(100))
