"""An orphan that cannot go is warned of when that starts or changes, then at most every
REMIND_SECONDS with the count of passes not said; forgotten once it goes or is not tried."""

from __future__ import annotations

import logging

import pytest

from kukeon.controllers.orphanlog import OrphanFailures


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    found = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    return found


def test_a_failure_is_warned_of_once_then_reminded(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    failures = OrphanFailures(remind=100.0, clock=lambda: now[0])
    held = RuntimeError("bridge b has port(s) kukeon did not make: p1")
    with caplog.at_level(logging.DEBUG, logger="kukeon.controllers.orphanlog"):
        for _ in range(5):
            failures.begin()
            failures.failed("network of space r/s", held)
            failures.end()
            now[0] += 10
        assert _warnings(caplog) == [
            "could not remove orphaned network of space r/s (next pass tries again): "
            "bridge b has port(s) kukeon did not make: p1"
        ]
        now[0] = 120.0
        failures.failed("network of space r/s", held)
        [reminder] = _warnings(caplog)
        assert "5 passes since last said" in reminder
        # Another error is news.
        failures.failed("network of space r/s", RuntimeError("p2"))
        assert len(_warnings(caplog)) == 1


def test_gone_or_untried_is_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    failures = OrphanFailures()
    error = OSError("busy")
    with caplog.at_level(logging.DEBUG, logger="kukeon.controllers.orphanlog"):
        failures.begin()
        failures.failed("cgroup of stack r/s/st", error)
        failures.failed("files of stack r/s/st", error)
        failures.end()
        assert len(_warnings(caplog)) == 2
        failures.begin()
        failures.removed("cgroup of stack r/s/st")  # went
        failures.end()  # the files were not tried: gone some other way
        failures.begin()
        failures.failed("cgroup of stack r/s/st", error)
        failures.failed("files of stack r/s/st", error)
        failures.end()
        assert len(_warnings(caplog)) == 2
