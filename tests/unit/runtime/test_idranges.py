"""The realms' user-namespace id ranges: allocation, host-account clashes, persistence, and
the host-wide claims every installation on the host honours."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from kukeon.runtime.idranges import (
    DEFAULT_FIRST_ID,
    RANGE_SIZE,
    IdRange,
    IdRangeError,
    PoolSettings,
    RangeAllocator,
    read_host_ids,
)

FIRST = 1_000_000


def host_etc(tmp_path: Path, *, passwd: str = "", group: str = "", subuid: str = "") -> Path:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n" + passwd)
    (etc / "group").write_text("root:x:0:\n" + group)
    (etc / "subuid").write_text(subuid)
    (etc / "subgid").write_text("")
    return etc


def allocator(
    tmp_path: Path, etc: Path, ranges: int = 4, *, state: str = "state"
) -> RangeAllocator:
    """The allocator of the installation whose state directory is ``tmp_path/state``; every
    installation of a test shares the claims directory ``tmp_path/claims``."""
    settings = PoolSettings(first_id=FIRST, ranges=ranges)
    return RangeAllocator(
        tmp_path / state / "idranges.json",
        settings,
        claims_dir=tmp_path / "claims",
        node=f"node-{state}",
        etc=etc,
    )


def test_realms_get_distinct_ranges_and_keep_them(tmp_path: Path) -> None:
    pool = allocator(tmp_path, host_etc(tmp_path))
    a, b = pool.ensure("a"), pool.ensure("b")
    assert a == IdRange(FIRST)
    assert b == IdRange(FIRST + RANGE_SIZE)
    assert pool.ensure("a") == a
    assert pool.range_of("c") is None  # a look-up allocates nothing
    assert pool.allocated() == {"a": a, "b": b}


def test_a_restart_reads_the_ranges_back_and_a_release_frees_one(tmp_path: Path) -> None:
    etc = host_etc(tmp_path)
    allocator(tmp_path, etc).ensure("a")
    b = allocator(tmp_path, etc).ensure("b")
    again = allocator(tmp_path, etc)  # a new process on the same state directory
    assert again.range_of("b") == b
    assert again.release("a")
    assert not again.release("a")
    assert again.ensure("c") == IdRange(FIRST)  # the released range is free again
    state = json.loads((tmp_path / "state" / "idranges.json").read_text())
    assert state["ranges"]["b"] == {"base": b.base, "size": RANGE_SIZE}
    assert (tmp_path / "state" / "idranges.json").stat().st_mode & 0o777 == 0o600


def test_ranges_overlapping_host_accounts_or_others_subids_are_skipped(tmp_path: Path) -> None:
    etc = host_etc(
        tmp_path,
        passwd=f"alice:x:{FIRST + 5}:100::/home/alice:/bin/sh\n",
        group=f"odd:x:{FIRST + RANGE_SIZE + 1}:\n",
        subuid=f"bob:{FIRST + 3 * RANGE_SIZE - 10}:20\nkukeon:{FIRST}:{4 * RANGE_SIZE}\n",
    )
    pool = allocator(tmp_path, etc)
    # 0 has alice, 1 the group odd, 2 and 3 bob's entry; kukeon's own entry is allowed.
    with pytest.raises(IdRangeError, match="no free user-namespace range for realm 'a'"):
        pool.ensure("a")
    free = allocator(tmp_path, etc, ranges=5)
    assert free.ensure("a") == IdRange(FIRST + 4 * RANGE_SIZE)


def test_a_recorded_range_a_host_account_now_overlaps_is_refused(tmp_path: Path) -> None:
    etc = host_etc(tmp_path)
    pool = allocator(tmp_path, etc)
    taken = pool.ensure("a")
    host_etc(tmp_path, passwd=f"eve:x:{taken.base}:100::/:/bin/sh\n")
    with pytest.raises(IdRangeError, match=r"overlaps uid \d+ \(eve\)"):
        pool.ensure("a")
    assert pool.range_of("a") == taken  # kept: the realm's files are owned by it


def test_a_recorded_range_stays_when_the_pool_moves(tmp_path: Path) -> None:
    etc = host_etc(tmp_path)
    state, claims = tmp_path / "state" / "idranges.json", tmp_path / "claims"
    pool = PoolSettings(first_id=FIRST, ranges=2)
    old = RangeAllocator(state, pool, claims_dir=claims, etc=etc).ensure("a")
    pool = PoolSettings(first_id=FIRST - RANGE_SIZE, ranges=3)
    moved = RangeAllocator(state, pool, claims_dir=claims, etc=etc)
    assert moved.ensure("a") == old
    assert moved.ensure("b") == IdRange(FIRST - RANGE_SIZE)
    assert moved.ensure("c") == IdRange(FIRST + RANGE_SIZE)  # not overlapping a's


@pytest.mark.parametrize(
    "content", ["{", '{"version": 2, "ranges": {}}', '{"version": 1, "ranges": {"a": {}}}']
)
def test_an_unreadable_state_file_is_an_error_not_a_fresh_start(
    tmp_path: Path, content: str
) -> None:
    pool = allocator(tmp_path, host_etc(tmp_path))
    pool.state_file.parent.mkdir(parents=True)
    pool.state_file.write_text(content)
    with pytest.raises(IdRangeError, match="unreadable"):
        pool.ensure("a")
    assert pool.state_file.read_text() == content


def test_concurrent_allocations_never_share_a_range(tmp_path: Path) -> None:
    etc = host_etc(tmp_path)
    got: dict[str, IdRange] = {}

    def take(realm: str) -> None:
        got[realm] = allocator(tmp_path, etc, ranges=16).ensure(realm)

    threads = [threading.Thread(target=take, args=(f"r{i}",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(got.values())) == 12
    assert allocator(tmp_path, etc).allocated() == got


@pytest.mark.parametrize(
    ("first_id", "ranges", "words"),
    [(1000, 1, "below 65536"), (FIRST, 0, "0 ranges"), (4294901760, 1, "past the highest")],
)
def test_bad_pool_settings_are_refused(first_id: int, ranges: int, words: str) -> None:
    with pytest.raises(IdRangeError, match=words):
        PoolSettings(first_id=first_id, ranges=ranges)


def test_the_default_pool_is_free_of_this_hosts_accounts() -> None:
    host = read_host_ids()
    assert all(host.clash(idrange) is None for idrange in PoolSettings().candidates())
    assert PoolSettings().first_id == DEFAULT_FIRST_ID


def test_mappings_and_host_ids_of_a_range() -> None:
    idrange = IdRange(FIRST)
    assert idrange.oci_mappings() == [{"containerID": 0, "hostID": FIRST, "size": RANGE_SIZE}]
    assert idrange.to_host(0) == FIRST
    assert idrange.to_host(65535) == FIRST + 65535
    with pytest.raises(ValueError, match="outside"):
        idrange.to_host(65536)
    assert str(idrange) == f"{FIRST}-{FIRST + 65535}"
