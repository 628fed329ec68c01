"""A restarted container in kukectl: running now, its previous run's end shown apart.

`describe` lists what runs in ``Containers:`` (no exit code for a container running
again) and how each restarted container last ended under ``Last State:`` (Kubernetes'
``Last State: Terminated``); `get` shows the restarts as kubectl does, ``2 (40s ago)``.
"""

from __future__ import annotations

from datetime import timedelta

from kukeon.api import Kind
from kukeon.cli.output import describe
from kukeon.cli.tables import render_table

from .test_output import NOW, _cell

RESTARTED = _cell(
    "crashy",
    age=timedelta(minutes=5),
    containers=[
        {
            "id": "app",
            "state": "Ready",
            "pid": 77,
            "restartCount": 2,
            "startTime": (NOW - timedelta(seconds=30)).isoformat(),
            "restartTime": (NOW - timedelta(seconds=30)).isoformat(),
            "lastState": {
                "exitCode": 137,
                "signal": "SIGKILL",
                "reason": "OOMKilled",
                "startedAt": (NOW - timedelta(seconds=41)).isoformat(),
                "finishedAt": (NOW - timedelta(seconds=40)).isoformat(),
            },
        },
        {"id": "side", "state": "Ready", "pid": 78},
    ],
    state="Ready",
)


def test_describe_shows_the_running_container_apart_from_its_last_exit() -> None:
    page = describe(RESTARTED, now=NOW)
    containers = page.split("Containers:\n", 1)[1].split("Last State:\n", 1)[0]
    app = next(line.split() for line in containers.splitlines() if line.split()[0] == "app")
    assert app[:6] == ["app", "Ready", "true", "77", "<none>", "2"]  # no exit code: it runs
    last = page.split("Last State:\n", 1)[1].splitlines()
    assert last[0].split() == ["CONTAINER", "REASON", "EXIT", "CODE", "STARTED", "FINISHED"]
    row = last[1].split()
    assert row[:4] == ["app", "OOMKilled", "137", "(SIGKILL)"]
    assert row[4] == (NOW - timedelta(seconds=41)).isoformat()
    assert row[5:] == [(NOW - timedelta(seconds=40)).isoformat(), "(40s", "ago)"]
    assert not any(line.split()[:1] == ["side"] for line in last)  # never restarted


def test_describe_without_a_restart_has_no_last_state() -> None:
    never = _cell("calm", age=timedelta(minutes=1), containers=[{"id": "app", "state": "Ready"}])
    assert "Last State:" not in describe(never, now=NOW)


def test_get_shows_the_restarts_and_when_the_last_one_ended() -> None:
    table = render_table(Kind.CELL, [RESTARTED], now=NOW).splitlines()
    assert table[1].split()[:4] == ["crashy", "Ready", "2/2", "2"]
    assert table[1].split()[4:6] == ["(40s", "ago)"]
    wide = render_table(Kind.CELL, [RESTARTED], now=NOW, wide=True).splitlines()
    assert "2 (40s ago)" in wide[1]
