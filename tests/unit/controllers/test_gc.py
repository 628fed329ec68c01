"""The orphan collector's readings of the state directory (no host services)."""

from __future__ import annotations

from pathlib import Path

from kukeon.controllers.gc import _cell_dirs, _lease_owners, _network_of, _record_ids
from kukeon.runtime.network import bridge_name


def test_cell_dirs_are_the_four_level_directories(tmp_path: Path) -> None:
    (tmp_path / "r" / "s" / "st" / "c1" / "logs").mkdir(parents=True)
    (tmp_path / "r" / "s" / "st" / "c2").mkdir(parents=True)
    (tmp_path / "r" / "s" / "st" / "stray-file").write_text("")
    (tmp_path / "r2" / "s").mkdir(parents=True)  # a space without cells
    assert _cell_dirs(tmp_path) == {("r", "s", "st", "c1"), ("r", "s", "st", "c2")}
    assert _cell_dirs(tmp_path / "missing") == set()


def test_lease_owners_skip_bookkeeping_files(tmp_path: Path) -> None:
    network = tmp_path / "kk-r-s"
    network.mkdir()
    (network / "10.1.0.2").write_text("kukeon_r_s_st_c1\r\neth0")
    (network / "10.1.0.3").write_text("kukeon_r_s_st_c2\neth0\n")
    (network / "last_reserved_ip.0").write_text("10.1.0.3")
    (network / "lock").write_text("")
    assert _lease_owners(tmp_path) == {
        "kk-r-s": {"10.1.0.2": "kukeon_r_s_st_c1", "10.1.0.3": "kukeon_r_s_st_c2"}
    }
    assert _lease_owners(tmp_path / "missing") == {}


def test_record_ids_and_network_of(tmp_path: Path) -> None:
    (tmp_path / "kukeon_r_s_st_c.json").write_text("{}")
    (tmp_path / "other.json").write_text("{}")
    (tmp_path / "kukeon-ab12cd_r_s_st_c.json").write_text("{}")
    assert _record_ids(tmp_path, "kukeon_") == {"kukeon_r_s_st_c"}
    assert _record_ids(tmp_path, "kukeon-ab12cd_") == {"kukeon-ab12cd_r_s_st_c"}
    assert _network_of("kukeon_realm_space_stack_cell", "") == bridge_name("realm", "space")
    assert _network_of("kukeon-ab12cd_realm_space_stack_cell", "ab12cd") == bridge_name(
        "realm", "space", "ab12cd"
    )
    assert _network_of("kukeon_realm_space_stack_cell", "ab12cd") == ""
    assert _network_of("kukeon_not_a_cell", "") == ""
