"""``kukectl restart``'s wait: a restart is an annotation, so the generation does not move;
the state read before the cell's containers started again is the old one and says
nothing of the restart (a cell in Error restarted fine was reported as not restarted)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import pytest

from kukeon.api import Cell
from kukeon.cli import lifecycle

T0 = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
KEY = ("r", "s", "st", "w1")


def _cell(state: str, *containers: tuple[str, datetime | None]) -> Cell:
    return Cell.model_validate(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "w1", "generation": 2},
            "spec": {"containers": [{"id": cid, "image": "busybox"} for cid, _ in containers]},
            "status": {
                "state": state,
                "observedGeneration": 2,
                "containers": [
                    {"id": cid, "startTime": started.isoformat() if started else None}
                    for cid, started in containers
                ],
            },
        }
    )


class ScriptedClient:
    """Answers the first get with ``before``, then each later get with the next cell."""

    def __init__(self, before: Cell, after: Sequence[Cell]) -> None:
        self._answers = [before, *after]

    async def get(self, kind: Any, key: Any) -> Cell:
        return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]

    async def patch(self, kind: Any, key: Any, patch: Any) -> Cell:
        return self._answers[0]


def _restart(client: ScriptedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    change = lifecycle._change_cell(
        client,  # type: ignore[arg-type]
        KEY,
        {"metadata": {"annotations": {lifecycle.RESTARTED_AT: "now"}}},
        verb="restart",
        wait=True,
        within=5,
    )
    asyncio.run(change)


def test_a_cell_in_error_restarts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _cell("Error", ("main", T0), ("side", None))
    client = ScriptedClient(
        before,
        [
            before,  # not acted on yet: still the Error from before
            _cell("Pending", ("main", T0 + timedelta(seconds=5)), ("side", None)),
            _cell("Ready", ("main", T0 + timedelta(seconds=5)), ("side", T0 + timedelta(6))),
        ],
    )
    _restart(client, monkeypatch)
    assert capsys.readouterr().out == "cell/w1 restarted\n"


def test_a_restart_that_fails_again_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _cell("Error", ("main", T0))
    client = ScriptedClient(before, [before, _cell("Error", ("main", T0 + timedelta(seconds=5)))])
    with pytest.raises(click.exceptions.Exit):
        _restart(client, monkeypatch)
    assert "cell/w1 did not restart: Error" in capsys.readouterr().err


def _waiting(last_started: datetime) -> Cell:
    """A Degraded cell whose one container waits out its back-off after a run started
    then and failed."""
    document = _cell("Degraded", ("main", None)).model_dump(by_alias=True, mode="json")
    document["status"]["containers"][0] |= {
        "state": "Waiting",
        "reason": "CrashLoopBackOff",
        "lastState": {
            "exitCode": 3,
            "reason": "Error",
            "message": "fatal: no config",
            "startedAt": last_started.isoformat(),
            "finishedAt": (last_started + timedelta(seconds=1)).isoformat(),
        },
    }
    return Cell.model_validate(document)


def test_a_crash_looping_cell_that_crashes_again_is_reported_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A container that ran again and failed at once waits out its back-off with no start
    time: the new run is in lastState, so the restart is answered, and it failed."""
    before = _waiting(T0)
    client = ScriptedClient(before, [before, before, _waiting(T0 + timedelta(seconds=30))])
    with pytest.raises(click.exceptions.Exit):
        _restart(client, monkeypatch)
    err = capsys.readouterr().err
    assert "cell/w1 did not restart: CrashLoopBackOff" in err, err
    assert "container main exited with 3: fatal: no config" in err, err


def test_a_crash_looping_cell_restarted_into_a_run_is_restarted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _waiting(T0)
    client = ScriptedClient(before, [before, _cell("Ready", ("main", T0 + timedelta(seconds=30)))])
    _restart(client, monkeypatch)
    assert capsys.readouterr().out == "cell/w1 restarted\n"


def test_a_cell_in_error_without_a_reason_names_its_failed_container(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cell's Error says nothing of its own: the container that stays down says why."""
    before = _cell("Error", ("main", T0))
    document = _cell("Error", ("main", T0 + timedelta(seconds=5))).model_dump(
        by_alias=True, mode="json"
    )
    document["status"]["containers"][0] |= {
        "state": "Failed",
        "exitCode": 2,
        "message": "missing config",
    }
    client = ScriptedClient(before, [before, Cell.model_validate(document)])
    with pytest.raises(click.exceptions.Exit):
        _restart(client, monkeypatch)
    err = capsys.readouterr().err
    assert "did not restart: Error (container main exited with 2: missing config)" in err, err
