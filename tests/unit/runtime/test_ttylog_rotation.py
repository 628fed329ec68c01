"""An attachable container's terminal logger rotates its raw log as the records' logger
does (containerLogMaxSize, containerLogMaxFiles): run as the shim runs it, with the
terminal's output on a pipe and the stdin FIFO it holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kukeon.runtime.containerd.crilog import LogRotation, logger_command, rotated_logs

SIZE = 4096


class TerminalLogger:
    """The logger in its terminal mode, the terminal's output written into a pipe."""

    def __init__(self, log: Path, rotation: LogRotation) -> None:
        fifo = log.parent / "stdin"
        os.mkfifo(fifo, 0o600)
        out_r, self.output = os.pipe()
        self.process = subprocess.Popen(
            logger_command(
                log,
                streams={out_r: "terminal"},
                ready_fd=None,
                terminal_of=fifo,
                rotation=rotation,
            ),
            pass_fds=(out_r,),
        )
        os.close(out_r)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.output, view) :]

    def close(self) -> int:
        os.close(self.output)
        return self.process.wait(timeout=30)


def _files(log: Path) -> list[Path]:
    return [*rotated_logs(log), log]


def _output(lines: int) -> bytes:
    return b"".join(b"line %06d of the terminal\r\n" % n for n in range(lines))


def test_the_terminal_log_is_rotated_between_lines_and_keeps_every_byte(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    logger = TerminalLogger(log, LogRotation(max_size=SIZE, max_files=1000))
    written = _output(20000)  # ~540 KB: ~130 files
    for start in range(0, len(written), 7000):  # reads that end mid-line
        logger.write(written[start : start + 7000])
    assert logger.close() == 0
    files = _files(log)
    assert len(files) > 100
    assert all(path.stat().st_size <= SIZE for path in files)
    assert all(path.read_bytes().endswith(b"\n") for path in files)
    numbers = [int(path.name.rsplit(".", 1)[1]) for path in files[:-1]]
    assert numbers == list(range(1, len(files)))
    assert b"".join(path.read_bytes() for path in files) == written


def test_the_oldest_files_are_removed_and_the_rest_is_the_end_of_the_output(
    tmp_path: Path,
) -> None:
    log = tmp_path / "c.log"
    logger = TerminalLogger(log, LogRotation(max_size=SIZE, max_files=3))
    written = _output(5000)
    logger.write(written)
    assert logger.close() == 0
    files = _files(log)
    assert len(files) == 3
    assert all(path.stat().st_size <= SIZE for path in files)
    kept = b"".join(path.read_bytes() for path in files)
    assert written.endswith(kept)
    assert len(kept) > SIZE


def test_output_without_newlines_is_cut_into_files_of_the_size(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    logger = TerminalLogger(log, LogRotation(max_size=SIZE, max_files=1000))
    written = bytes(range(256)).replace(b"\n", b"") * 200  # ~51 KB, no line ends
    logger.write(written)
    assert logger.close() == 0
    files = _files(log)
    assert len(files) >= 51_000 // SIZE
    assert all(path.stat().st_size <= SIZE for path in files)
    assert b"".join(path.read_bytes() for path in files) == written


def test_a_replacement_numbers_on(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    rotation = LogRotation(max_size=SIZE, max_files=1000)
    first = TerminalLogger(log, rotation)
    first.write(_output(1000))
    assert first.close() == 0
    before = len(rotated_logs(log))
    (tmp_path / "stdin").unlink()
    second = TerminalLogger(log, rotation)
    second.write(_output(1000))
    assert second.close() == 0
    numbers = [int(path.name.rsplit(".", 1)[1]) for path in rotated_logs(log)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) > before
    assert b"".join(path.read_bytes() for path in _files(log)) == _output(1000) * 2
