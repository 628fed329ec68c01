"""A task create that failed under a pids cgroup at its limit is said so (reason
PidsLimitReached, naming the cgroup, its limit and count), not left as runc's "read init-p:
connection reset by peer": from each level's counters, read only once the create failed,
on both drivers (v2 on the fake cgroupfs, v1 on plain directories as its hierarchy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.api import CellState, ContainerSpec
from kukeon.controllers.cellfailures import classify_build_failure
from kukeon.controllers.cellpids import (
    INIT_PIDS,
    PidsLimitReachedError,
    full_level,
    pids_limit_error,
)
from kukeon.framework import TemporaryError
from kukeon.runtime.cgroups import (
    CgroupPath,
    CgroupV1Driver,
    CgroupV2Driver,
    PidsCount,
    V1Hierarchy,
)
from tests.unit.runtime.fake_cgroupfs import FakeCgroupFs

CELL = CgroupPath.of("realm", "space", "stack", "cell")
RUNC = "runc create failed: ... read init-p: connection reset by peer: unknown"


def _fill(directory: Path, *, limit: str, current: int, peak: int | None, refused: int) -> None:
    (directory / "pids.max").write_text(f"{limit}\n")
    (directory / "pids.current").write_text(f"{current}\n")
    if peak is not None:
        (directory / "pids.peak").write_text(f"{peak}\n")
    (directory / "pids.events").write_text(f"max {refused}\n")


async def test_v2_reads_the_root_and_every_level_down_to_the_cell(tmp_path: Path) -> None:
    fake = FakeCgroupFs(tmp_path / "cgroup", offered=("cpu", "memory", "pids"))
    driver = CgroupV2Driver(fs_root=fake.root, root="/kukeon", fs=fake)
    await driver.ensure(CELL)
    levels = [
        driver.root_dir,
        *(driver.directory(CgroupPath(CELL.parts[:n])) for n in (1, 2, 3, 4)),
    ]
    for directory in levels:
        _fill(directory, limit="max", current=3, peak=5, refused=0)
    _fill(levels[1], limit="8", current=4, peak=8, refused=2)
    counts = await driver.pids_counts(CELL)
    assert [c.cgroup for c in counts] == [
        "/kukeon",
        "/kukeon/realm",
        "/kukeon/realm/space",
        "/kukeon/realm/space/stack",
        "/kukeon/realm/space/stack/cell",
    ]
    assert counts[1] == PidsCount("/kukeon/realm", limit=8, current=4, peak=8, refused=2)
    assert counts[0].limit is None


async def test_v1_reads_the_pids_hierarchy_and_none_without_it(tmp_path: Path) -> None:
    pids = V1Hierarchy(tmp_path / "pids", frozenset({"pids"}))
    memory = V1Hierarchy(tmp_path / "memory", frozenset({"memory"}))
    driver = CgroupV1Driver(hierarchies=[memory, pids], root="/kukeon")
    realm = driver.directory(pids, CgroupPath.of("realm"))
    realm.mkdir(parents=True)
    _fill(realm.parent, limit="1000", current=10, peak=None, refused=0)
    _fill(realm, limit="8", current=4, peak=9, refused=0)
    # The levels below are not made yet: nothing is read there.
    counts = await driver.pids_counts(CELL)
    assert counts == (
        PidsCount("/kukeon", limit=1000, current=10, peak=None, refused=0),
        PidsCount("/kukeon/realm", limit=8, current=4, peak=9, refused=0),
    )
    no_pids = CgroupV1Driver(hierarchies=[memory], root="/kukeon")
    assert await no_pids.pids_counts(CELL) == ()


def _realm(*, current: int, peak: int | None, refused: int = 0, limit: int | None = 8) -> PidsCount:
    return PidsCount("/kukeon/realm", limit=limit, current=current, peak=peak, refused=refused)


ROOT = PidsCount("/kukeon", limit=1000, current=20, peak=40, refused=0)


@pytest.mark.parametrize(
    ("after", "full"),
    [
        # at its limit now
        (_realm(current=8, peak=8), True),
        # the limit reached (during the create: runc's init is gone) and too little room
        (_realm(current=3, peak=8), True),
        # past a limit since lowered, too little room for runc's init
        (_realm(current=8 - INIT_PIDS + 1, peak=9), True),
        # v2 since Linux 6.13: a refused fork counted at the cgroup at its limit, no peak
        (_realm(current=4, peak=None, refused=1), True),
        # the limit reached once, long ago, with room enough now: another cause
        (_realm(current=8 - INIT_PIDS, peak=8), False),
        (_realm(current=8 - INIT_PIDS, peak=None, refused=3), False),
        # never near its limit
        (_realm(current=1, peak=3), False),
        # no peak file (an older kernel) and no refusal counted: room alone does not say it
        (_realm(current=4, peak=None), False),
        # no limit
        (_realm(current=9, peak=9, limit=None), False),
    ],
)
def test_a_level_found_at_its_limit(after: PidsCount, full: bool) -> None:
    found = full_level((ROOT, after))
    assert (found is not None) is full
    if found is not None:
        assert found == (1, after)


def test_the_innermost_full_level_is_named() -> None:
    root_full = PidsCount("/kukeon", limit=50, current=45, peak=50, refused=0)
    found = full_level((root_full, _realm(current=3, peak=8)))
    assert found is not None
    assert found[0] == 1
    root_only = full_level((root_full, _realm(current=1, peak=2)))
    assert root_only is not None
    assert root_only[0] == 0


class _Counters:
    def __init__(self, *answers: tuple[PidsCount, ...]) -> None:
        self.answers = list(answers)

    async def pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]:
        return self.answers.pop(0)


async def test_the_error_names_the_level_its_limit_and_count_and_is_retried() -> None:
    container = ContainerSpec(id="main", image="busybox")
    after = (ROOT, _realm(current=4, peak=9))
    error = await pids_limit_error(_Counters(after), CELL, container, RUNC)
    assert isinstance(error, PidsLimitReachedError)
    message = str(error)
    assert "the realm's pids limit is reached" in message
    assert "cgroup /kukeon/realm: pids.max 8, pids.current 4 after the failed start" in message
    assert "read init-p" in message
    assert classify_build_failure(error) == (CellState.FAILED, "PidsLimitReached", TemporaryError)
    roomy = (ROOT, _realm(current=1, peak=3))
    assert await pids_limit_error(_Counters(roomy), CELL, container, RUNC) is None
    # Nothing read (no pids controller, or unreadable): runc's word stands.
    assert await pids_limit_error(_Counters(()), CELL, container, RUNC) is None


class _Unreadable:
    async def pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]:
        raise OSError(5, "Input/output error")


async def test_counters_that_cannot_be_read_leave_runcs_word() -> None:
    container = ContainerSpec(id="main", image="busybox")
    assert await pids_limit_error(_Unreadable(), CELL, container, RUNC) is None
