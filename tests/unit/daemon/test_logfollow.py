"""LogFollower: the last records, then the new ones, to the end of the file it holds even
once the path names a new instance's log or nothing at all."""

from __future__ import annotations

from pathlib import Path

from kukeon.daemon.logfollow import LogFollower


def _record(text: str) -> bytes:
    return f"2026-12-03T10:00:00.000000000Z stdout F {text}\n".encode()


def _texts(follower: LogFollower, *, tail: int | None = None, first: bool = False) -> list[str]:
    records = follower.tail(tail) if first else follower.read()
    return [record.text.decode() for record in records]


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as stream:
        stream.write(data)


def test_tail_then_new_complete_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"".join(_record(f"l{n}") for n in range(5)))
    follower = LogFollower(log)
    assert _texts(follower, tail=2, first=True) == ["l3", "l4"]
    _append(log, b"2026-12-03T10:00")
    assert _texts(follower) == []  # the partial record waits for its end
    _append(log, b":00.000000000Z stdout F l5\n" + _record("l6"))
    assert _texts(follower) == ["l5", "l6"]
    follower.close()


def test_a_new_instance_log_is_read_after_the_rest_of_the_old(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(_record("old1"))
    follower = LogFollower(log)
    assert _texts(follower, first=True) == ["old1"]
    _append(log, _record("old2"))
    log.replace(tmp_path / "c.previous.log")  # CellFiles.start_new_log
    assert _texts(follower) == ["old2"]
    log.write_bytes(_record("new1"))
    assert _texts(follower) == ["new1"]
    follower.close()


def test_the_held_file_is_read_to_its_end_once_removed(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"")
    follower = LogFollower(log)
    assert _texts(follower, first=True) == []
    _append(log, b"".join(_record(str(n)) for n in range(1, 1001)))
    log.unlink()  # the cell's files removed as it is deleted
    assert _texts(follower) == [str(n) for n in range(1, 1001)]
    follower.close()


def test_a_log_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    follower = LogFollower(log)
    assert _texts(follower, first=True) == []
    log.write_bytes(_record("first"))
    assert _texts(follower) == ["first"]
    follower.close()
