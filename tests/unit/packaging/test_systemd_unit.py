"""hack/kukeond.service and its etcd drop-in: the directives operators depend on, and what
`systemd-analyze verify` says of them.

systemd-analyze checks that ExecStart's binary exists, so the unit is verified from a copy
whose ExecStart names a stand-in executable; everything else is verified as shipped, the
drop-in included (it is found through SYSTEMD_UNIT_PATH the way systemd finds it in
/etc/systemd/system/kukeond.service.d/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.services import require_binary

HACK = Path(__file__).resolve().parents[3] / "hack"
UNIT = HACK / "kukeond.service"
DROP_IN = HACK / "kukeond.service.d" / "etcd.conf"
EXEC_START = "/usr/local/bin/kukeond --config /etc/kukeon/kukeond.yaml"


def directives(path: Path) -> dict[str, list[str]]:
    """`Key=value` lines by key (a key may repeat, as Environment= does)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_unit_orders_after_containerd_and_keeps_workloads_on_restart() -> None:
    unit = directives(UNIT)
    assert "containerd.service" in " ".join(unit["After"]).split()
    assert "containerd.service" in unit["Wants"]
    assert unit["ExecStart"] == [EXEC_START]
    assert unit["Restart"] == ["always"]
    assert unit["KillMode"] == ["process"]
    assert unit["Delegate"] == ["yes"]
    assert unit["WantedBy"] == ["multi-user.target"]


def test_drop_in_sets_the_etcd_endpoints_kukeond_reads() -> None:
    from kukeon.daemon.config import load_config

    environment = dict(value.split("=", 1) for value in directives(DROP_IN)["Environment"])
    assert environment["KUKEON_ETCD_ENDPOINTS"].startswith("https://")
    config = load_config(environ=environment)
    assert len(config.etcd_endpoints) == 3
    assert config.etcd_ca_file == Path("/etc/kukeon/etcd/ca.crt")


def verify(unit_dir: Path) -> subprocess.CompletedProcess[str]:
    systemd_analyze = require_binary("systemd-analyze", "systemd")
    return subprocess.run(
        [systemd_analyze, "verify", "kukeond.service"],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The unit and drop-in laid out as systemd reads them, ExecStart on a stand-in."""
    stand_in = tmp_path / "kukeond"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    units = tmp_path / "units"
    (units / "kukeond.service.d").mkdir(parents=True)
    (units / "kukeond.service").write_text(
        UNIT.read_text().replace("/usr/local/bin/kukeond", str(stand_in))
    )
    shutil.copy(DROP_IN, units / "kukeond.service.d" / "etcd.conf")
    return units


def test_systemd_analyze_verify_is_silent(unit_dir: Path) -> None:
    result = verify(unit_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_analyze_reads_the_drop_in(unit_dir: Path) -> None:
    """The check above would be hollow if verify ignored the drop-in: it must see this."""
    with (unit_dir / "kukeond.service.d" / "etcd.conf").open("a") as drop_in:
        drop_in.write("NotADirective=1\n")
    assert "NotADirective" in verify(unit_dir).stderr
