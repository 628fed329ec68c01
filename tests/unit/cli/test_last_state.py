"""A restarted container in kukectl: running now, its previous run's end shown apart.

`describe` lists what runs in ``Containers:`` (no exit code for a container running
again) and how each restarted container last ended under ``Last State:`` (Kubernetes'
``Last State: Terminated``); `get` shows the restarts as kubectl does, ``2 (40s ago)``.
A container waiting out its restart back-off is ``Waiting`` with its reason
(``CrashLoopBackOff``), which `get` shows as the cell's STATE, as kubectl's STATUS.
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
    # Stored as `Ready` by an earlier version: read and shown as `Running`.
    assert app[:6] == ["app", "Running", "true", "77", "<none>", "2"]  # no exit code: it runs
    last = page.split("Last State:\n", 1)[1].splitlines()
    header = ["CONTAINER", "REASON", "EXIT", "CODE", "STARTED", "FINISHED", "MESSAGE"]
    assert last[0].split() == header
    row = last[1].split()
    assert row[:4] == ["app", "OOMKilled", "137", "(SIGKILL)"]
    assert row[4] == (NOW - timedelta(seconds=41)).isoformat()
    assert row[5:] == [(NOW - timedelta(seconds=40)).isoformat(), "(40s", "ago)", "<none>"]
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


BACKING_OFF = _cell(
    "looping",
    age=timedelta(minutes=5),
    containers=[
        {"id": "main", "state": "Ready", "pid": 76, "ready": True},
        {
            "id": "app",
            "state": "Waiting",
            "restartCount": 3,
            "backoffRestarts": 3,
            "reason": "CrashLoopBackOff",
            "message": "back-off 40s restarting failed container=app, due 2026-12-05T05:01:23Z",
            "restartTime": (NOW + timedelta(seconds=35)).isoformat(),
            "lastState": {
                "exitCode": 3,
                "reason": "Error",
                "message": "fatal: no config",
                "startedAt": (NOW - timedelta(seconds=6)).isoformat(),
                "finishedAt": (NOW - timedelta(seconds=5)).isoformat(),
            },
        },
    ],
    state="Degraded",
)


def test_get_shows_a_container_in_its_back_off_as_kubectl_does() -> None:
    table = render_table(Kind.CELL, [BACKING_OFF], now=NOW).splitlines()
    assert table[1].split()[:6] == ["looping", "CrashLoopBackOff", "1/2", "3", "(5s", "ago)"]
    # Degraded for another reason (a container that ended and restarts at once): Degraded.
    ended = {"id": "app", "state": "Failed", "exitCode": 1, "reason": "Error"}
    other = _cell("other", age=timedelta(minutes=5), containers=[ended], state="Degraded")
    assert render_table(Kind.CELL, [other], now=NOW).splitlines()[1].split()[1] == "Degraded"


def test_describe_shows_the_wait_and_the_exit_it_follows() -> None:
    page = describe(BACKING_OFF, now=NOW)
    assert "\n  State:               Degraded\n" in page  # the cell's own; get shows the wait
    containers = page.split("Containers:\n", 1)[1].split("Last State:\n", 1)[0]
    app = next(line.split() for line in containers.splitlines() if line.split()[0] == "app")
    assert app[:8] == [
        "app",
        "Waiting",
        "false",
        "<none>",
        "<none>",
        "3",
        "CrashLoopBackOff",
        "back-off",
    ]
    last = page.split("Last State:\n", 1)[1].splitlines()
    row = last[1].split()
    assert row[:3] == ["app", "Error", "3"]
    assert row[-3:] == ["fatal:", "no", "config"]
