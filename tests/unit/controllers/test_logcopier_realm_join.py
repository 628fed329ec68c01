"""A running copier found by ``LogCopiers`` is moved into its realm's copiers' cgroup (its
pid written to each ``cgroup.procs`` file the driver names); a realm whose cgroup is gone is
passed over with a debug line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kukeon.controllers.logcopiers import _join_realm
from kukeon.processes import ProcessId


def test_a_found_copier_is_written_to_each_file_and_a_missing_one_passed_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cpu, cpuacct = tmp_path / "cpu.procs", tmp_path / "cpuacct.procs"
    cpu.touch()
    cpuacct.touch()
    gone = tmp_path / "gone" / "cgroup.procs"
    copier = ProcessId(pid=4242, started=1)

    with caplog.at_level(logging.DEBUG, logger="kukeon.controllers.logcopiers"):
        _join_realm(copier, (gone, cpu, cpuacct), "r/s/st/c/main")

    assert cpu.read_text() == "4242"
    assert cpuacct.read_text() == "4242"
    assert not gone.parent.exists()  # nothing made where the realm's cgroup is gone
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert str(gone) in record.getMessage()
