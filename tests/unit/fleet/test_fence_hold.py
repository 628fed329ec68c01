"""The fence held while etcd is down for the whole fleet (``daemon.fencing``, ``peerfence``):
the rule on the peers' answers, the fencing watch that follows it (hold, release, the grace
when etcd comes back for a peer first), and how a peer's answer is read."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from kukeon.apiserver.auth import Principal, Role
from kukeon.apiserver.handlers import PRINCIPAL_KEY
from kukeon.apiserver.status import ApiError
from kukeon.daemon.fencing import FencingWatch, peer_verdict, regain_grace
from kukeon.daemon.peerfence import KIND, EtcdReachRoute, etcd_reach_path, read_answer


def test_the_fence_is_held_only_when_every_peer_answered_that_it_cannot_reach_etcd() -> None:
    assert peer_verdict({"n2": False, "n3": False}).hold
    assert not peer_verdict({}).hold  # a one-node fleet: nothing vouches for the others
    unanswered = peer_verdict({"n2": False, "n3": None})
    assert not unanswered.hold
    assert "n3 did not answer" in unanswered.reason
    assert not unanswered.etcd_back
    reaching = peer_verdict({"n2": False, "n3": True})
    assert not reaching.hold
    assert reaching.etcd_back
    assert "n3 reach etcd" in reaching.reason
    # a peer that does not answer outweighs one that reaches etcd: no grace then
    assert not peer_verdict({"n2": True, "n3": None}).etcd_back


def test_the_grace_is_a_quarter_of_the_lost_timeout_at_most() -> None:
    assert regain_grace(300.0) == 5.0
    assert regain_grace(4.0) == 1.0


class Cells:
    def __init__(self) -> None:
        self.fences = 0
        self.unfences = 0

    async def fence(self) -> int:
        self.fences += 1
        return 1

    async def unfence(self) -> None:
        self.unfences += 1


class World:
    """The watch's inputs: how long the lease has been unconfirmed, the peers' answers."""

    def __init__(self, answers: Mapping[str, bool | None]) -> None:
        self.silent = 0.0
        self.answers = dict(answers)
        self.asked = 0
        self.retries = 0
        self.cells = Cells()

    async def ask(self) -> Mapping[str, bool | None]:
        self.asked += 1
        return self.answers

    def retry(self) -> None:
        self.retries += 1

    def watch(self, *, grace: float = 30.0) -> FencingWatch:
        watch = FencingWatch(
            node_name="n1",
            fence_after=4.0,
            grace=grace,
            silent_for=lambda: self.silent,
            cells=self.cells,
            retry_heartbeat=self.retry,
        )
        watch.ask = self.ask
        return watch


async def test_a_node_holds_while_no_peer_reaches_etcd_and_fences_once_one_does_not_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kukeon.daemon.fencing")
    world = World({"n2": False, "n3": False})
    watch = world.watch()
    world.silent = 3.9
    await watch.look()
    assert world.asked == 0
    assert not watch.held
    world.silent = 5.0
    for _ in range(3):
        await watch.look()
    assert watch.held
    assert not watch.fenced
    assert world.cells.fences == 0
    assert world.asked == 3  # asked again at every look
    world.answers["n3"] = None  # n3 cut off from this node now: the others may move cells
    await watch.look()
    assert watch.fenced
    assert not watch.held
    assert world.cells.fences == 1
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([m for m in said if "holding the fence" in m]) == 1
    assert len([m for m in said if "fence hold released" in m and "n3 did not answer" in m]) == 1


async def test_a_held_fence_ends_without_fencing_when_the_lease_is_renewed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kukeon.daemon.fencing")
    world = World({"n2": False})
    watch = world.watch()
    world.silent = 6.0
    await watch.look()
    assert watch.held
    world.silent = 0.2  # etcd back for this node too: its keepalive answered
    await watch.look()
    await watch.look()
    assert not watch.held
    assert not watch.fenced
    assert world.cells.fences == 0
    released = [r.getMessage() for r in caplog.records if "fence hold released" in r.getMessage()]
    assert released == ["node n1: fence hold released: its heartbeat lease is renewed again"]


async def test_a_peer_back_on_etcd_gives_the_held_node_a_grace_to_renew_then_it_fences() -> None:
    world = World({"n2": False, "n3": False})
    watch = world.watch(grace=30.0)
    world.silent = 6.0
    await watch.look()
    assert watch.held
    world.answers["n3"] = True
    await watch.look()
    await watch.look()
    assert watch.held
    assert world.cells.fences == 0
    assert world.retries == 1  # the heartbeat told once to try at once
    world.silent = 0.1
    await watch.look()
    assert not watch.held
    assert world.cells.fences == 0

    world = World({"n2": False})
    watch = world.watch(grace=0.0)  # the grace spent: its lease is still unconfirmed
    world.silent = 6.0
    await watch.look()
    world.answers["n2"] = True
    await watch.look()
    assert watch.fenced
    assert world.cells.fences == 1


async def test_a_node_that_was_not_holding_fences_at_once_when_a_peer_reaches_etcd() -> None:
    world = World({"n2": True})  # a partition of this node alone: no grace
    watch = world.watch()
    world.silent = 5.0
    await watch.look()
    assert watch.fenced
    assert world.retries == 0
    world = World({})  # a one-node fleet
    watch = world.watch()
    world.silent = 5.0
    await watch.look()
    assert watch.fenced
    world = World({"n2": False})
    watch = world.watch()
    watch.ask = None  # no API to ask with
    world.silent = 5.0
    await watch.look()
    assert watch.fenced


def answer(**fields: object) -> bytes:
    return json.dumps({"kind": KIND, "node": "n2", **fields}).encode()


def test_only_the_peers_own_answer_counts() -> None:
    assert read_answer("n2", 200, answer(etcdReachable=False)) is False
    assert read_answer("n2", 200, answer(etcdReachable=True)) is True
    assert read_answer("n3", 200, answer(etcdReachable=False)) is None  # another node there
    assert read_answer("n2", 403, answer(etcdReachable=False)) is None
    for hostile in (b"", b"\xff", b"[]", b"null", b'{"kind": "Status"}', b"1e999999"):
        assert read_answer("n2", 200, hostile) is None
    assert read_answer("n2", 200, answer(etcdReachable="false")) is None
    assert read_answer("n2", 200, answer(etcdReachable=0)) is None


class Health:
    def __init__(self, reachable: bool) -> None:
        self.answer = reachable

    async def reachable(self) -> bool:
        return self.answer


def asked(role: Role, *, node: str = "n2", body: bool = False) -> web.Request:
    # A payload other than aiohttp's empty reader: the request has a body.
    path = etcd_reach_path(node)
    request = (
        make_mocked_request("GET", path, match_info={"node": node}, payload=cast(Any, object()))
        if body
        else make_mocked_request("GET", path, match_info={"node": node})
    )
    request[PRINCIPAL_KEY] = Principal(user="fleet", role=role)
    return request


async def test_the_route_answers_the_fleet_token_and_admins_only() -> None:
    route = EtcdReachRoute(node_name="n2", health=Health(False))  # type: ignore[arg-type]
    for role in (Role.NODE, Role.ADMIN):
        response = await route.answer(asked(role))
        assert isinstance(response, web.Response)
        assert response.body is not None
        assert isinstance(response.body, bytes)
        assert read_answer("n2", response.status, response.body) is False
    for role in (Role.VIEWER, Role.EDITOR):
        with pytest.raises(ApiError) as refused:
            await route.answer(asked(role))
        assert refused.value.code == 403
    with pytest.raises(ApiError) as other:
        await route.answer(asked(Role.NODE, node="n3"))
    assert other.value.code == 404
    with pytest.raises(ApiError) as with_body:
        await route.answer(asked(Role.NODE, body=True))
    assert with_body.value.code == 400
    nothing = EtcdReachRoute(node_name="n2", health=None)
    response = await nothing.answer(asked(Role.NODE))
    assert isinstance(response, web.Response)
    assert isinstance(response.body, bytes)
    assert json.loads(response.body)["etcdReachable"] is False
