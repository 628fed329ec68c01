"""`kukectl apply` over an object kukeond keeps writing: each Conflict (a status write between
apply's read and its update) is read again after a growing pause, as client-go's
RetryOnConflict; it gives up only after CONFLICT_ATTEMPTS, saying the object kept changing.
A 409 that is not a Conflict (a port another cell publishes) is the user's answer at once."""

from __future__ import annotations

import pytest

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli.manifests import Applier, Document, Reporter
from kukeon.client.apiclient import ApiRequestError
from kukeon.client.conflicts import CONFLICT_ATTEMPTS, conflict_attempts
from kukeon.retrying import Backoff
from tests.unit.cli.test_apply_manifest_version import STORED


class BusyClient:
    """A server whose cell takes a status write before each of the first ``busy`` updates."""

    def __init__(self, busy: int, refusal: str = "Conflict") -> None:
        self.busy = busy
        self.refusal = refusal
        self.updates = 0
        self.written: list[AnyResource] = []

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        return parse_resource(STORED)

    async def update(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        self.updates += 1
        if self.updates <= self.busy:
            raise ApiRequestError(409, self.refusal, f"refused: {self.refusal}")
        self.written.append(res)
        return res


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses between attempts, recorded instead of slept."""
    slept: list[float] = []

    async def record(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(Backoff, "sleep", lambda self: record(self.next()))
    return slept


async def _apply(client: BusyClient) -> tuple[bool, list[str]]:
    lines: list[str] = []
    document = Document(
        source="web.yaml",
        position=0,
        resource=parse_resource({**STORED, "metadata": {"name": "web", "labels": {"app": "x"}}}),
    )
    applier = Applier(client=client, reporter=Reporter(ok=lines.append, error=lines.append))  # type: ignore[arg-type]
    return await applier.apply([document]), lines


async def test_conflicts_are_read_again_after_growing_pauses(sleeps: list[float]) -> None:
    client = BusyClient(busy=CONFLICT_ATTEMPTS - 1)
    ok, lines = await _apply(client)
    assert ok, lines
    assert [w.metadata.labels for w in client.written] == [{"app": "x"}]
    assert len(sleeps) == CONFLICT_ATTEMPTS - 1
    assert sleeps[-1] > sleeps[0] > 0


async def test_apply_gives_up_when_every_attempt_conflicts(sleeps: list[float]) -> None:
    client = BusyClient(busy=CONFLICT_ATTEMPTS)
    ok, lines = await _apply(client)
    assert not ok
    assert client.updates == CONFLICT_ATTEMPTS
    assert "kept changing" in lines[-1], lines


async def test_a_409_that_is_not_a_conflict_is_not_retried(sleeps: list[float]) -> None:
    client = BusyClient(busy=1, refusal="PortConflict")
    ok, lines = await _apply(client)
    assert not ok
    assert client.updates == 1
    assert sleeps == []
    assert "PortConflict" in lines[-1], lines


async def test_only_the_attempts_after_the_first_wait(sleeps: list[float]) -> None:
    seen = [attempt async for attempt in conflict_attempts(3)]
    assert seen == [0, 1, 2]
    assert len(sleeps) == 2
