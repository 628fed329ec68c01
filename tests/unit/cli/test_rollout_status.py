"""``kukectl rollout status`` says where the rollout is as kubectl's does: a line per
change of the counts whether stderr is a terminal or not (a CI log saw nothing while it
waited), the result on stdout; ``--watch=false`` once; ``--timeout 0`` for ever."""

from __future__ import annotations

from typing import Any

import click
import pytest

from kukeon.api import CellSet, Kind, parse_resource
from kukeon.cli import cellsets
from kukeon.cli.cellsets import follow_rollout

KEY = ("default", "default", "default", "web")


def _set(updated: int, ready: int) -> CellSet:
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"id": "c", "image": "i"}]},
    }
    document: dict[str, Any] = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "web", "generation": 1},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }
    unset = parse_resource(document)
    assert isinstance(unset, CellSet)
    document["status"] = {
        "observedGeneration": 1,
        "templateHash": unset.template_hash(),
        "replicas": 3,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    parsed = parse_resource(document)
    assert isinstance(parsed, CellSet)
    return parsed


class FakeClient:
    """The API's answers to `get`, one per read (the last repeated)."""

    def __init__(self, *answers: CellSet) -> None:
        self.answers = list(answers)
        self.reads = 0

    async def get(self, kind: Kind, key: tuple[str, ...]) -> CellSet:
        assert (kind, key) == (Kind.CELL_SET, KEY)
        self.reads += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cellsets, "POLL_EVERY", 0)


async def test_a_pipe_gets_a_line_per_change_of_the_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reads = [_set(1, 0), _set(1, 0), _set(2, 1), _set(2, 1), _set(2, 1), _set(3, 3)]
    client = FakeClient(*reads)
    await follow_rollout(client, KEY, give_up_after=60)  # type: ignore[arg-type]
    said = capsys.readouterr()
    assert said.err.splitlines() == [
        'waiting for cellset "web": 1 of 3 updated, 0 ready, 0 available, 3 in all',
        'waiting for cellset "web": 2 of 3 updated, 1 ready, 1 available, 3 in all',
    ]
    assert "\x1b" not in said.err  # no spinner, colour or redraw
    assert said.out == (
        'cellset "web" successfully rolled out (3 of 3 updated, 3 ready, 3 available, 3 in all)\n'
    )
    assert client.reads == 6


async def test_without_watching_it_says_where_it_is_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = FakeClient(_set(1, 0), _set(3, 3))
    await follow_rollout(client, KEY, give_up_after=60, watch=False)  # type: ignore[arg-type]
    said = capsys.readouterr()
    assert said.out == (
        'waiting for cellset "web": 1 of 3 updated, 0 ready, 0 available, 3 in all\n'
    )
    assert (said.err, client.reads) == ("", 1)


async def test_a_timeout_of_zero_waits_for_ever_as_kubectls() -> None:
    client = FakeClient(_set(1, 0), _set(2, 1), _set(3, 3))
    await follow_rollout(client, KEY, give_up_after=0)  # type: ignore[arg-type]
    assert client.reads == 3


async def test_a_timeout_gives_up(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(click.exceptions.Exit) as exited:
        await follow_rollout(FakeClient(_set(1, 0)), KEY, give_up_after=0.05)  # type: ignore[arg-type]
    assert exited.value.exit_code == 1
    assert "timed out after 0.05s waiting for cellset/web" in capsys.readouterr().err
