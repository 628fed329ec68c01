"""A cell whose in-place update waits while its old container serves (Degraded, the
container Running with the cell's reason): `get` shows that reason as the cell's STATE,
as kubectl's STATUS shows ``ImagePullBackOff``; describe and json keep the cell's state."""

from __future__ import annotations

import json
from datetime import timedelta

from kukeon.api import Kind
from kukeon.cli.output import describe
from kukeon.cli.tables import render_table

from .test_output import NOW, _cell

MESSAGE = "container side keeps running image 'busybox' until its new image can be started"

HELD = _cell(
    "held",
    age=timedelta(minutes=5),
    containers=[
        {"id": "app", "state": "Running", "pid": 76, "ready": True},
        {
            "id": "side",
            "state": "Running",
            "pid": 77,
            "ready": True,
            "image": "busybox",
            "reason": "ImagePullBackOff",
            "message": MESSAGE,
        },
    ],
    state="Degraded",
    reason="ImagePullBackOff",
    message=MESSAGE,
)


def test_get_shows_the_reason_a_running_containers_update_waits() -> None:
    table = render_table(Kind.CELL, [HELD], now=NOW).splitlines()
    assert table[1].split()[:3] == ["held", "ImagePullBackOff", "2/2"]
    wide = render_table(Kind.CELL, [HELD], now=NOW, wide=True).splitlines()
    assert wide[1].split()[:3] == ["held", "ImagePullBackOff", "2/2"]


def test_a_degraded_cell_whose_running_containers_say_nothing_else_stays_degraded() -> None:
    # A running container's reason other than the cell's (or the cell without one).
    other = HELD.model_copy(
        update={"status": HELD.status.model_copy(update={"reason": "ContainersNotReady"})}
    )
    assert render_table(Kind.CELL, [other], now=NOW).splitlines()[1].split()[1] == "Degraded"


def test_describe_and_json_keep_the_cells_state() -> None:
    assert "\n  State:               Degraded\n" in describe(HELD, now=NOW)
    assert json.loads(HELD.model_dump_json(by_alias=True))["status"]["state"] == "Degraded"
