"""A SIGKILLed pytest session leaves nothing on the host for good.

A child pytest session (held_session.py) brings up etcd, containerd, a container, an nft
table, a network namespace, a tagged bridge and its FORWARD accepts, a cgroup and a mount,
and is SIGKILLed: its teardowns never run. Its etcd and containerd die with it (their
death signal); the shim and the container, which outlive containerd by design, and
everything else go at the next session's sweep (``tests.fixtures.leftovers``), which
never touches a session still running. The child keeps its record in a directory of this
test's, so the sweep here sees no other session of the host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import sessions
from tests.fixtures.hostleaks import (
    SYS_NET,
    cgroup_roots,
    forward_accepts,
    mounts,
    netns_files,
    nft_tables,
    own_directory,
)
from tests.fixtures.leftovers import sweep_dead_sessions
from tests.fixtures.services import require_binary, require_root
from tests.fixtures.sessions import note
from tests.integration.sessions.held_session import READY_ENV

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
HELD = Path(__file__).with_name("held_session.py")


def _wait_ready(ready: Path, child: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the held session did not get ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    made: dict[str, Any] = json.loads(ready.read_text())
    return made


def _alive(*pids: int) -> bool:
    return all(sessions.same_process(pid, sessions.start_time(pid)) for pid in pids)


def _tagged_links(alias: str) -> list[str]:
    return [
        link.name
        for link in SYS_NET.iterdir()
        if (link / "ifalias").exists() and (link / "ifalias").read_text().strip() == alias
    ]


def _held_session(tmp_path: Path, basetemp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env[sessions.RECORDS_ENV] = str(tmp_path / "records")
    env[READY_ENV] = str(tmp_path / "ready.json")
    log = tmp_path / "held.log"
    with log.open("wb") as output:
        child = subprocess.Popen(
            [
                sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                "--basetemp", str(basetemp), str(HELD),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return child, log


def test_a_killed_sessions_services_die_with_it_and_the_next_session_sweeps_the_rest(
    tmp_path: Path,
) -> None:
    require_root()
    for binary, package in [("etcd", "etcd-server"), ("containerd", "containerd")]:
        require_binary(binary, package)
    records = tmp_path / "records"
    # Short: containerd's sockets live there (a unix socket's path has 108 bytes at most).
    basetemp = Path(tempfile.mkdtemp(prefix="kukeon-held-"))
    own_directory(basetemp)
    note("scratch", path=str(basetemp))
    child, log = _held_session(tmp_path, basetemp)
    try:
        made = _wait_ready(tmp_path / "ready.json", child, log)
        shims_and_container = [*made["shims"], made["container"]]
        assert made["shims"]
        assert _alive(*shims_and_container)
        assert forward_accepts([made["bridge"]]) == {f"kukeon {made['bridge']}"}

        assert sweep_dead_sessions(records) == []  # alive: its record and objects stay
        assert Path(made["record"]).is_dir()
        assert _alive(made["container"])

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert sessions.wait_gone([made["etcd"], made["containerd"]], within=10) == []
        assert _alive(*shims_and_container)  # not the session's children: they stay

        swept = sweep_dead_sessions(records)

        assert [line.split(":")[0] for line in swept] == [f"session {Path(made['record']).name}"]
        assert sessions.wait_gone(shims_and_container, within=10) == []
        assert cgroup_roots([made["cgroup_root"]]) == set()
        assert nft_tables([made["nft_table"]]) == set()
        assert netns_files([made["netns_prefix"]]) == set()
        assert _tagged_links(made["link_alias"]) == []
        assert forward_accepts([made["bridge"]]) == set()
        assert mounts([f"{basetemp}/"]) == set()
        assert not Path(made["etcd_root"]).exists()
        assert not Path(made["containerd_base"]).exists()
        assert os.listdir(records) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        sweep_dead_sessions(records)  # whatever a failed assertion left
        shutil.rmtree(basetemp, ignore_errors=True)
