"""An attach session's output across its terminal logger's rotations: the bytes in order,
none lost or sent twice (logfollow.ByteFollower), and only the logger's end, not a
rotation's close of the file, taken for the end of the output (logclose.WriterClosed)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kukeon.daemon.logclose import WriterClosed
from kukeon.daemon.logfollow import ByteFollower
from kukeon.runtime.containerd.crilog import LogRotation, rotated_logs
from tests.unit.runtime.test_ttylog_rotation import TerminalLogger

SIZE = 4096


def _output(start: int, lines: int) -> bytes:
    return b"".join(b"terminal line %06d\r\n" % n for n in range(start, start + lines))


def _wait_until(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


def _logged(log: Path) -> int:
    return sum(path.stat().st_size for path in [*rotated_logs(log), log] if path.exists())


def _follow(follower: ByteFollower, until: threading.Event, into: list[bytes]) -> None:
    """Read as a session does, while the logger writes and rotates, until told to stop
    and nothing is left."""
    while True:
        stopping = until.is_set()
        data = follower.read(1000)
        if data:
            into.append(data)
        elif stopping:
            return


def test_a_follower_gets_every_byte_across_rotations_in_order(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    logger = TerminalLogger(log, LogRotation(max_size=SIZE, max_files=10_000))
    logger.write(_output(0, 500))  # before the session: not sent
    while _logged(log) < len(_output(0, 500)):  # all of it in the files, so not sent
        time.sleep(0.01)
    follower = ByteFollower(log)
    done, got = threading.Event(), list[bytes]()
    reader = threading.Thread(target=_follow, args=(follower, done, got))
    reader.start()
    try:
        written = _output(500, 30_000)  # ~630 KB: ~150 rotations while it reads
        for start in range(0, len(written), 3000):
            logger.write(written[start : start + 3000])
        assert logger.close() == 0
    finally:
        done.set()
        reader.join(timeout=60)
        follower.close()
    assert len(rotated_logs(log)) > 100
    whole = b"".join(got)
    assert len(whole) == len(written)
    assert whole == written


def test_a_replay_starts_with_the_kept_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    logger = TerminalLogger(log, LogRotation(max_size=SIZE, max_files=4))
    written = _output(0, 3000)
    logger.write(written)
    assert logger.close() == 0
    follower = ByteFollower(log, from_start=True)
    try:
        replayed = b"".join(iter(lambda: follower.read(1000), b""))
    finally:
        follower.close()
    kept = b"".join(path.read_bytes() for path in [*rotated_logs(log), log])
    assert replayed == kept
    assert written.endswith(kept)
    assert len(kept) > 3 * SIZE - 100


async def test_a_rotation_is_no_end_the_logger_closing_is(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    logger = TerminalLogger(log, LogRotation(max_size=SIZE, max_files=3))
    await asyncio.to_thread(_wait_until, log.exists)
    closing = WriterClosed(log)
    try:
        logger.write(_output(0, 2000))  # ~40 rotations, each closing a renamed file
        await asyncio.to_thread(_wait_until, lambda: len(rotated_logs(log)) >= 2)
        await asyncio.sleep(0.2)
        assert not await closing.wait(within=0.3)
        assert await asyncio.to_thread(logger.close) == 0
        assert await closing.wait(within=10)
    finally:
        closing.close()
