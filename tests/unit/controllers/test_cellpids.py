"""A task create that failed under a pids cgroup at its limit is said so (reason
PidsLimitReached, naming the cgroup, its limit and count), not left as runc's "read init-p:
connection reset by peer": from each level's counters read before the create and after,
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
    ("before", "after", "full"),
    [
        # v2 since Linux 6.13: the refused fork counted at the cgroup at its limit
        (_realm(current=4, peak=6), _realm(current=4, peak=6, refused=1), True),
        # the peak rose to the limit during the create (v1: the count is the container's)
        (_realm(current=3, peak=7), _realm(current=3, peak=8), True),
        # at the limit before, and too little room for runc's init this time
        (_realm(current=8 - INIT_PIDS + 1, peak=9), _realm(current=3, peak=9), True),
        # at its limit now
        (_realm(current=7, peak=7), _realm(current=8, peak=8), True),
        # the limit reached once, long ago, with room enough now: another cause
        (_realm(current=8 - INIT_PIDS, peak=8), _realm(current=8 - INIT_PIDS, peak=8), False),
        # never near its limit
        (_realm(current=1, peak=3), _realm(current=1, peak=3), False),
        # no peak file (an older kernel): room alone does not say it
        (_realm(current=4, peak=None), _realm(current=4, peak=None), False),
        # no limit
        (_realm(current=4, peak=9, limit=None), _realm(current=9, peak=9, limit=None), False),
    ],
)
def test_a_level_found_at_its_limit(before: PidsCount, after: PidsCount, full: bool) -> None:
    found = full_level((ROOT, before), (ROOT, after))
    assert (found is not None) is full
    if found is not None:
        assert found == (1, before, after)


def test_the_innermost_full_level_is_named() -> None:
    root_before = PidsCount("/kukeon", limit=50, current=45, peak=50, refused=0)
    found = full_level(
        (root_before, _realm(current=3, peak=7)), (root_before, _realm(current=3, peak=8))
    )
    assert found is not None
    assert found[0] == 1
    root_only = full_level(
        (root_before, _realm(current=1, peak=2)), (root_before, _realm(current=1, peak=2))
    )
    assert root_only is not None
    assert root_only[0] == 0


class _Counters:
    def __init__(self, *answers: tuple[PidsCount, ...]) -> None:
        self.answers = list(answers)

    async def pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]:
        return self.answers.pop(0)


async def test_the_error_names_the_level_its_limit_and_count_and_is_retried() -> None:
    container = ContainerSpec(id="main", image="busybox")
    before = (ROOT, _realm(current=4, peak=9))
    after = (ROOT, _realm(current=4, peak=9))
    error = await pids_limit_error(_Counters(after), CELL, before, container, RUNC)
    assert isinstance(error, PidsLimitReachedError)
    message = str(error)
    assert "the realm's pids limit is reached" in message
    assert "cgroup /kukeon/realm: pids.max 8, pids.current 4 before the start" in message
    assert "read init-p" in message
    assert classify_build_failure(error) == (CellState.FAILED, "PidsLimitReached", TemporaryError)
    roomy = (ROOT, _realm(current=1, peak=3))
    assert await pids_limit_error(_Counters(roomy), CELL, roomy, container, RUNC) is None
    # Nothing read before the create (no pids controller, or unreadable): runc's word stands.
    assert await pids_limit_error(_Counters(after), CELL, (), container, RUNC) is None
