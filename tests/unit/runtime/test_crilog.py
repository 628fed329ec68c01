"""The CRI-format container logger, run as containerd's shim runs it (fds 3, 4 and 5)."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import termios
import time
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.runtime.containerd.crilog import (
    MAX_RECORD_BYTES,
    LogRecord,
    RenderOptions,
    logger_command,
    parse_lines,
    parse_record,
    render,
)


class Logger:
    """The logger with pipes on fds 3 (stdout) and 4 (stderr) and its ready pipe on 5."""

    def __init__(self, path: Path) -> None:
        out_r, self.stdout = os.pipe()
        err_r, self.stderr = os.pipe()
        ready_r, ready_w = os.pipe()
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$@" 3<&{out_r} 4<&{err_r} 5>&{ready_w} {out_r}<&- {err_r}<&- {ready_w}>&-',
                "bash",
                *logger_command(path),
            ],
            pass_fds=(out_r, err_r, ready_w),
        )
        for fd in (out_r, err_r, ready_w):
            os.close(fd)
        assert os.read(ready_r, 1) == b""  # ready: the logger closed fd 5
        os.close(ready_r)

    def close(self) -> int:
        os.close(self.stdout)
        os.close(self.stderr)
        return self.process.wait(timeout=10)


def test_both_streams_line_by_line_with_time(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "c.log"
    log.parent.mkdir()
    logger = Logger(log)
    os.write(logger.stdout, b"out 1\nout 2\n")
    os.write(logger.stderr, b"err 1\n")
    os.write(logger.stdout, b"no newline at the end")
    # The shim signals the logger right after closing its pipe ends: it must drain them.
    logger.process.send_signal(signal.SIGTERM)
    assert logger.close() == 0
    assert (log.stat().st_mode & 0o777) == 0o640
    records = list(parse_lines(log.read_bytes().splitlines()))
    assert [(r.stream, r.text) for r in records if r.stream == "stdout"] == [
        ("stdout", b"out 1"),
        ("stdout", b"out 2"),
        ("stdout", b"no newline at the end"),
    ]
    assert [(r.stream, r.text) for r in records if r.stream == "stderr"] == [("stderr", b"err 1")]
    for record in records:
        when = record.at()
        assert when is not None
        assert abs((datetime.now(UTC) - when).total_seconds()) < 60


def test_a_long_line_is_split_into_partial_records(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    logger = Logger(log)
    line = b"x" * (MAX_RECORD_BYTES * 2 + 10)
    os.write(logger.stdout, line + b"\n")
    assert logger.close() == 0
    records = list(parse_lines(log.read_bytes().splitlines()))
    assert [r.partial for r in records] == [True, True, False]
    assert render(records, RenderOptions(), open_line=False) == line + b"\n"


def test_appends_to_an_existing_log(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    for round_ in range(2):
        logger = Logger(log)
        os.write(logger.stderr, f"round {round_}\n".encode())
        assert logger.close() == 0
    texts = [r.text for r in parse_lines(log.read_bytes().splitlines())]
    assert texts == [b"round 0", b"round 1"]


def _mounted_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def _pipe_empty(fd: int) -> bool:
    (queued,) = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))
    return int(queued) == 0


def _wait_until_full(disk: Path, writer: int) -> None:
    """Until the logger has read all that was written to ``writer`` and filled ``disk``
    (the page a short write's cut record leaves free counts as full)."""
    deadline = time.monotonic() + 10
    while os.statvfs(disk).f_bavail > 1 or not _pipe_empty(writer):
        assert time.monotonic() < deadline, "the logger did not fill the disk"
        time.sleep(0.01)


def test_a_full_disk_drops_records_and_the_log_says_how_many(tmp_path: Path) -> None:
    # Every line written is either in the log or counted in its "[kukeon] ... not logged"
    # record, written once the disk takes writes again (docker and the CRI drop silently).
    disk = tmp_path / "disk"
    _mounted_tmpfs(disk, "512k")
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 384 * 1024)
        log = disk / "c.log"
        logger = Logger(log)
        # ~190 KiB, ~660 KiB as records (a 16-byte line takes 56): more than is free
        sent = [b"line %06d end" % n for n in range(12_000)]
        os.write(logger.stdout, b"\n".join(sent[:-10]) + b"\n")
        _wait_until_full(disk, logger.stdout)
        # 384 KiB free again: more than the records of one read the logger may still hold
        # (64 KiB of lines, ~230 KiB as records) and the last lines
        filler.unlink()
        for line in sent[-10:]:
            os.write(logger.stdout, line + b"\n")
        assert logger.close() == 0
        records = list(parse_lines(log.read_bytes().splitlines()))
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    logged = [
        r.text for r in records if r.stream == "stdout" and re.fullmatch(rb"line \d{6} end", r.text)
    ]
    notes = [
        re.fullmatch(
            rb"\[kukeon\] (\d+) records \((\d+) bytes\) of output were not logged: (.+)", r.text
        )
        for r in records
        if r.stream == "stderr"
    ]
    assert all(r.stream in ("stdout", "stderr") for r in records)  # whole records only
    assert notes
    assert all(note is not None for note in notes)
    lost = sum(int(note.group(1)) for note in notes if note is not None)
    assert lost > 0
    assert b"No space left on device" in {note.group(3) for note in notes if note is not None}
    assert len(logged) + lost == len(sent)
    assert logged == sorted(logged)
    assert logged[-10:] == sent[-10:]


def test_a_terminals_logger_holds_its_fifo_and_outlives_a_full_disk(tmp_path: Path) -> None:
    # A TTY task's logger (ttyio) appends the output as it is and holds a writer of the
    # stdin FIFO, which keeps the shim's console up: a full disk must not end it (its
    # `cat >> log` did, and the container lost its terminal for good).
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)
    disk = tmp_path / "disk"
    _mounted_tmpfs(disk, "128k")
    process: subprocess.Popen[bytes] | None = None
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 64 * 1024)
        log = disk / "tty.log"
        out_r, out_w = os.pipe()
        ready_r, ready_w = os.pipe()
        command = logger_command(log, streams={3: "terminal"}, terminal_of=fifo)
        process = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$@" 3<&{out_r} 5>&{ready_w} {out_r}<&- {ready_w}>&-',
                "bash",
                *command,
            ],
            pass_fds=(out_r, ready_w),
        )
        os.close(out_r)
        os.close(ready_w)
        assert os.read(ready_r, 1) == b""
        os.close(ready_r)
        os.write(out_w, b"\x1b[1mbold\x1b[0m\r\n")  # as it is, no records
        os.write(out_w, b"y" * 200 * 1024 + b"\r\n")  # more than the disk holds, ended
        _wait_until_full(disk, out_w)
        assert process.poll() is None
        # The FIFO still has its writer: a non-blocking open for writing finds a reader.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        filler.unlink()
        os.write(out_w, b"after\r\n")
        os.close(out_w)
        assert process.wait(timeout=10) == 0
        text = log.read_bytes()
    finally:
        # A failure above leaves the logger holding the log open: the tmpfs would stay
        # mounted (busy) under pytest's tmp directory.
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        subprocess.run(["umount", str(disk)], check=True)
    assert text.startswith(b"\x1b[1mbold\x1b[0m\r\n")
    assert re.search(
        rb"\r\n\[kukeon\] \d+ bytes of terminal output were not logged: No space", text
    )
    assert text.endswith(b"after\r\n")


def test_raw_lines_are_shown_as_they_are() -> None:
    record = parse_record(b"plain tty output")
    assert record == LogRecord(time=None, stream=None, partial=False, text=b"plain tty output")


def test_render_timestamps_and_since() -> None:
    records = [
        parse_record(b"2026-12-03T02:10:00.123456789Z stdout F first"),
        parse_record(b"2026-12-03T02:10:05.000000001Z stderr P sec"),
        parse_record(b"2026-12-03T02:10:05.000000002Z stderr F ond"),
    ]
    assert render(records, RenderOptions(), open_line=False) == b"first\nsecond\n"
    stamped = render(records, RenderOptions(timestamps=True), open_line=False)
    assert stamped == (
        b"2026-12-03T02:10:00.123456789Z first\n2026-12-03T02:10:05.000000001Z second\n"
    )
    since = datetime(2026, 12, 3, 2, 10, 1, tzinfo=UTC)
    assert render(records, RenderOptions(since=since), open_line=False) == b"second\n"


def test_a_line_shaped_as_a_record_with_no_real_time_is_raw() -> None:
    """A TTY's output is the container's text: a line that looks like a record with an
    impossible time is shown as written and kept by ``since`` (it was a ValueError: 500)."""
    forged = b"2026-99-99T99:99:99Z stderr P forged\r"
    record = parse_record(forged)
    assert record == LogRecord(time=None, stream=None, partial=False, text=forged)
    since = RenderOptions(since=datetime(2026, 1, 1, tzinfo=UTC), timestamps=True)
    assert render([record], since, open_line=False) == b"- " + forged + b"\n"


@settings(max_examples=300, deadline=None)
@given(st.from_regex(rb"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (stdout|stderr) [FP] x\Z"))
def test_any_time_a_line_can_carry_renders_with_since(line: bytes) -> None:
    options = RenderOptions(since=datetime(2026, 1, 1, tzinfo=UTC))
    assert render([parse_record(line)], options, open_line=False) in (
        b"",
        b"x",
        b"x\n",
        line + b"\n",
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=20))
def test_render_gives_back_every_line(lines: list[bytes]) -> None:
    records = [parse_record(b"2026-12-03T02:10:00Z stdout F " + line) for line in lines]
    assert render(records, RenderOptions(), open_line=False) == b"".join(
        line + b"\n" for line in lines
    )


def test_one_stream_keeps_its_records_and_its_partial_lines_whole() -> None:
    lines = [
        b"2026-01-01T00:00:00Z stdout P out-",
        b"2026-01-01T00:00:01Z stderr F err",
        b"2026-01-01T00:00:02Z stdout F line",
        b"raw terminal output",
    ]
    records = list(parse_lines(lines))
    both = RenderOptions()
    assert both.keep(records) is records
    out = RenderOptions(stream="stdout")
    assert render(out.keep(records), out, open_line=False) == b"out-line\nraw terminal output\n"
    err = RenderOptions(stream="stderr")
    assert render(err.keep(records), err, open_line=False) == b"err\n"


def test_a_logger_joins_the_cgroups_it_is_given_and_logs_without_one(tmp_path: Path) -> None:
    # A plain file stands for a cgroup.procs: the logger writes its own pid there; a missing
    # one (its realm's cgroup not made) is passed over.
    joined = tmp_path / "cgroup.procs"
    joined.write_text("")
    missing = tmp_path / "gone" / "cgroup.procs"
    read_end, write_end = os.pipe()
    command = logger_command(
        tmp_path / "c.log",
        streams={read_end: "stdout"},
        ready_fd=None,
        cgroup_procs=[missing, joined],
    )
    process = subprocess.Popen(command, pass_fds=(read_end,))
    os.close(read_end)
    os.write(write_end, b"a line\n")
    os.close(write_end)
    assert process.wait(timeout=10) == 0
    assert joined.read_text() == str(process.pid)
    [record] = parse_lines((tmp_path / "c.log").read_bytes().splitlines())
    assert record.text == b"a line"
