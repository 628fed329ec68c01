"""Host-wide claims of user-namespace ranges: two kukeon installations on one host (two state
directories, one claims directory) never hand out the same ids, an upgraded installation
claims the ranges it recorded before, and a clash from before the claims is refused to the
realm claimed later, naming the other installation."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kukeon.controllers.cellfailures import classify_build_failure
from kukeon.controllers.host import ID_RANGES_FILE
from kukeon.daemon.app import host_settings
from kukeon.daemon.config import load_config
from kukeon.runtime.idranges import (
    CLAIMS_LOCK,
    DEFAULT_CLAIMS_DIR,
    RANGE_SIZE,
    HostClaims,
    IdRange,
    IdRangeClashError,
    IdRangeError,
    RangeAllocator,
)
from tests.unit.runtime.test_idranges import FIRST, allocator, host_etc

OPERATOR = Path(__file__).resolve().parents[3] / "operator"


def claims_files(tmp_path: Path) -> dict[str, dict[str, int]]:
    """Each claims file's state file -> realm: base."""
    found: dict[str, dict[str, int]] = {}
    for file in (tmp_path / "claims").glob("*.json"):
        document = json.loads(file.read_text())
        ranges = document["ranges"]
        found[document["rangesFile"]] = {realm: r["base"] for realm, r in ranges.items()}
    return found


def record_before_claims(tmp_path: Path, state: str, ranges: dict[str, int]) -> None:
    """A state file as a kukeond from before the host-wide claims left it."""
    directory = tmp_path / state
    directory.mkdir(parents=True, exist_ok=True)
    entries = {realm: {"base": base, "size": RANGE_SIZE} for realm, base in ranges.items()}
    document = {"version": 1, "ranges": entries}
    (directory / "idranges.json").write_text(json.dumps(document))


def test_two_installations_never_hand_out_the_same_ids(tmp_path: Path) -> None:
    etc = host_etc(tmp_path)
    one, two = allocator(tmp_path, etc, state="one"), allocator(tmp_path, etc, state="two")
    assert one.ensure("app") == IdRange(FIRST)
    assert two.ensure("app") == IdRange(FIRST + RANGE_SIZE)  # one's realm has FIRST
    assert two.ensure("web") == IdRange(FIRST + 2 * RANGE_SIZE)
    assert one.ensure("db") == IdRange(FIRST + 3 * RANGE_SIZE)
    with pytest.raises(IdRangeError, match="claimed by other installations"):
        one.ensure("full")
    assert claims_files(tmp_path) == {
        str(one.state_file): {"app": FIRST, "db": FIRST + 3 * RANGE_SIZE},
        str(two.state_file): {"app": FIRST + RANGE_SIZE, "web": FIRST + 2 * RANGE_SIZE},
    }
    claims = tmp_path / "claims"
    assert claims.stat().st_mode & 0o777 == 0o700
    assert {f.stat().st_mode & 0o777 for f in claims.glob("*.json")} == {0o600}

    # A released range is unclaimed with it: the other installation may take it.
    assert one.release("app")
    assert two.ensure("new") == IdRange(FIRST)
    assert one.release("db")
    assert str(one.state_file) not in claims_files(tmp_path)  # no claims, no file


_RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from kukeon.runtime.idranges import PoolSettings, RangeAllocator

    state, claims, etc, go, first, ranges, name, count = sys.argv[1:]
    pool = PoolSettings(first_id=int(first), ranges=int(ranges))
    Path(go + "." + name).touch()  # ready
    while not os.path.exists(go):
        time.sleep(0.001)
    got = {}
    for index in range(int(count)):
        realm = f"{name}-{index}"
        # A new allocator per range, as kukeond makes one per call.
        allocator = RangeAllocator(Path(state), pool, claims_dir=Path(claims), etc=Path(etc))
        got[realm] = allocator.ensure(realm).base
    print(json.dumps(got))
    """
)


def test_racing_processes_of_several_installations_never_get_overlapping_ranges(
    tmp_path: Path,
) -> None:
    """Real processes, the real flocks: 4 installations (one run by two processes at once,
    as a restart overlapping the old kukeond) take 5 ranges each from one pool, all at once."""
    etc = host_etc(tmp_path)
    go, ranges = tmp_path / "go", 32
    racers = [("one", "a"), ("one", "b"), ("two", "a"), ("three", "a"), ("four", "a")]
    environment = {**os.environ, "PYTHONPATH": str(OPERATOR)}
    processes = [
        subprocess.Popen(
            [
                *(sys.executable, "-c", _RACER, str(tmp_path / state / "idranges.json")),
                *(str(tmp_path / "claims"), str(etc), str(go), str(FIRST), str(ranges)),
                *(f"{state}-{name}", "5"),
            ],
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
        )
        for state, name in racers
    ]
    ready = [Path(f"{go}.{state}-{name}") for state, name in racers]
    deadline = time.monotonic() + 60
    while not all(path.exists() for path in ready) and time.monotonic() < deadline:
        time.sleep(0.01)  # every interpreter started, waiting for the start
    go.touch()
    given: list[tuple[str, str, int]] = []
    for (state, _), process in zip(racers, processes, strict=True):
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        given += [(state, realm, base) for realm, base in json.loads(out).items()]
    assert len(given) == 25
    bases = sorted(base for _, _, base in given)
    assert len(set(bases)) == 25  # 25 ranges, none shared by two realms of any installation
    assert all(later - earlier >= RANGE_SIZE for earlier, later in itertools.pairwise(bases))
    # Every range is recorded by its installation and claimed under it, nothing else.
    claimed = claims_files(tmp_path)
    for state in {state for state, _ in racers}:
        own = {realm: base for s, realm, base in given if s == state}
        state_file = tmp_path / state / "idranges.json"
        recorded = json.loads(state_file.read_text())["ranges"]
        assert {realm: r["base"] for realm, r in recorded.items()} == own
        assert claimed[str(state_file)] == own


def test_the_first_start_after_an_upgrade_claims_the_recorded_ranges(tmp_path: Path) -> None:
    etc = host_etc(tmp_path)
    record_before_claims(tmp_path, "old", {"app": FIRST + RANGE_SIZE, "db": FIRST})
    old = allocator(tmp_path, etc, state="old")
    assert old.claim_recorded() == []
    assert claims_files(tmp_path) == {str(old.state_file): {"app": FIRST + RANGE_SIZE, "db": FIRST}}
    assert old.ensure("app") == IdRange(FIRST + RANGE_SIZE)  # its realms keep their ids
    # A second installation installed afterwards avoids them.
    assert allocator(tmp_path, etc, state="new").ensure("app") == IdRange(FIRST + 2 * RANGE_SIZE)


def test_an_installation_with_nothing_recorded_touches_no_claims(tmp_path: Path) -> None:
    pool = allocator(tmp_path, host_etc(tmp_path))
    assert pool.claim_recorded() == []
    assert not (tmp_path / "state").exists()  # a start makes nothing, not even a lock
    assert not pool.release("app")
    assert not (tmp_path / "claims").exists()


def test_a_clash_from_before_the_claims_is_refused_to_the_later_claim(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two installations that both gave a realm the pool's first range before claims
    existed: the one that claims it first keeps it, the other's cells are refused."""
    etc = host_etc(tmp_path)
    record_before_claims(tmp_path, "first", {"a": FIRST})
    record_before_claims(
        tmp_path, "second", {"b": FIRST + RANGE_SIZE // 2, "c": FIRST + RANGE_SIZE}
    )
    first, second = (
        allocator(tmp_path, etc, state="first"),
        allocator(tmp_path, etc, state="second"),
    )
    caplog.set_level(logging.INFO, logger="kukeon.runtime.idranges")
    assert first.claim_recorded() == []
    [refused] = second.claim_recorded()
    assert f"the kukeon installation of {tmp_path / 'first'}, node node-first" in refused
    assert "realm 'b'" in refused
    assert "its realm 'a' first" in refused
    assert any(r.levelno == logging.ERROR and r.getMessage() == refused for r in caplog.records)

    with pytest.raises(IdRangeClashError, match=re.escape(str(tmp_path / "first"))) as clash:
        second.ensure("b")
    assert classify_build_failure(clash.value)[1] == "UserNamespaceRangeClash"
    assert second.ensure("c") == IdRange(FIRST + RANGE_SIZE)  # its other realm is alone
    caplog.clear()
    assert first.ensure("a") == IdRange(FIRST)  # the earlier claim keeps its ids, warned
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "realm 'b'" in warning.getMessage()
    assert str(tmp_path / "second") in warning.getMessage()
    # A new range avoids both claims of the shared ids.
    assert second.ensure("d") == IdRange(FIRST + 2 * RANGE_SIZE)

    # Once the earlier realm's range is released, the later one is alone with its ids.
    assert first.release("a")
    assert second.ensure("b") == IdRange(FIRST + RANGE_SIZE // 2)


def test_a_claim_left_without_its_record_is_dropped(tmp_path: Path) -> None:
    """A crash between claiming and recording leaves a claim; the next pass drops it."""
    etc = host_etc(tmp_path)
    pool = allocator(tmp_path, etc)
    pool.ensure("a")
    state = json.loads(pool.state_file.read_text())
    state["ranges"] = {}
    pool.state_file.write_text(json.dumps(state))
    assert allocator(tmp_path, etc, state="other").ensure("x") == IdRange(FIRST + RANGE_SIZE)
    assert pool.ensure("b") == IdRange(FIRST)  # its own stale claim is gone
    assert claims_files(tmp_path)[str(pool.state_file)] == {"b": FIRST}


def test_a_claims_directory_others_may_change_is_refused(tmp_path: Path) -> None:
    pool = allocator(tmp_path, host_etc(tmp_path))
    (tmp_path / "claims").mkdir(mode=0o700)
    os.chmod(tmp_path / "claims", 0o777)
    with pytest.raises(IdRangeError, match=r"open to others \(mode 0777"):
        pool.ensure("a")
    assert pool.range_of("a") is None


def test_unreadable_claims_stop_new_ranges_never_silently(tmp_path: Path) -> None:
    etc = host_etc(tmp_path)
    pool = allocator(tmp_path, etc)
    kept = pool.ensure("a")
    other = tmp_path / "claims" / "0123456789abcdef.json"
    other.write_text("{")
    with pytest.raises(IdRangeError, match=r"cannot be read .*0123456789abcdef\.json"):
        pool.ensure("b")
    assert pool.ensure("a") == kept  # a realm's own range stays usable
    other.unlink()
    own = HostClaims(tmp_path / "claims").file_of(pool.state_file)
    own.write_text('{"version": 9}')
    with pytest.raises(IdRangeError, match="this installation's user-namespace claims file"):
        pool.ensure("a")
    assert (tmp_path / "claims" / CLAIMS_LOCK).exists()


def test_the_claims_file_is_named_after_the_state_files_real_path(tmp_path: Path) -> None:
    etc = host_etc(tmp_path)
    pool = allocator(tmp_path, etc)
    pool.ensure("a")
    (tmp_path / "link").symlink_to(tmp_path / "state")
    through_link = RangeAllocator(
        tmp_path / "link" / "idranges.json",
        pool.settings,
        claims_dir=tmp_path / "claims",
        etc=etc,
    )
    assert through_link.ensure("a") == IdRange(FIRST)  # the same installation, no clash
    assert len(list((tmp_path / "claims").glob("*.json"))) == 1


def test_the_claims_directory_from_the_configuration(tmp_path: Path) -> None:
    """One default for every installation of a host; a test's or an operator's own."""
    default = load_config(environ={})
    assert (
        default.user_namespace_claims_dir == DEFAULT_CLAIMS_DIR == Path("/var/lib/kukeon-idranges")
    )
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text(f"userNamespaceClaimsDir: {tmp_path / 'file'}\nnodeName: n7\n")
    config = load_config(
        config_file=config_file,
        environ={"KUKEON_USER_NAMESPACE_CLAIMS_DIR": str(tmp_path / "env")},
    )
    ranges = host_settings(config, root_pids_limit=None).id_ranges()
    assert ranges.claims.directory == tmp_path / "env"
    assert ranges.node == "n7"
    assert ranges.state_file == config.state_dir / ID_RANGES_FILE
