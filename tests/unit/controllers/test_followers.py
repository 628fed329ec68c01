"""The loops that requeue work: containerd task events to cells, Secret and Space changes
to the cells below them, and the cascade leader deleting the children of marked parents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from kukeon.api import AnyResource, Kind, Secret, key_of, parse_resource
from kukeon.controllers.cascade import CascadeDeleter
from kukeon.controllers.events import follow_task_events
from kukeon.controllers.membership import CellMembership
from kukeon.controllers.wakers import CellWaker, secret_scope
from kukeon.runtime.containerd.containers import (
    LABEL_CELL,
    LABEL_MANAGED,
    LABEL_REALM,
    LABEL_SPACE,
    LABEL_STACK,
)
from kukeon.runtime.containerd.events import Subscribed, TaskCreated, TaskExited, TaskOOM
from kukeon.store import StoreError
from tests.unit.api.samples import realm_doc, space_doc, stack_doc

from .hostfakes import FakeContainerd, ScopedStore, cell

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Queued = list[tuple[Kind, tuple[str, ...]]]


class Events:
    def __init__(self, *events: object) -> None:
        self.events = events
        self.filters: tuple[str, ...] = ()

    async def subscribe(self, *filters: str) -> AsyncIterator[object]:
        self.filters = filters
        for event in self.events:
            yield event


def exited(container_id: str) -> TaskExited:
    return TaskExited(
        namespace="ns",
        topic="/tasks/exit",
        timestamp=T0,
        container_id=container_id,
        id=container_id,
        pid=1,
        exit_status=1,
        exited_at=T0,
    )


async def test_task_exits_and_ooms_requeue_their_cell() -> None:
    containerd = FakeContainerd()
    cell_labels = {
        LABEL_MANAGED: "true",
        LABEL_REALM: "r",
        LABEL_SPACE: "s",
        LABEL_STACK: "st",
        LABEL_CELL: "c",
    }
    containerd.add("ns", "app", **cell_labels)
    containerd.add("ns", "foreign", **{**cell_labels, LABEL_MANAGED: "false"})
    containerd.add("ns", "partial", **{LABEL_MANAGED: "true", LABEL_REALM: "r"})
    containerd.events = Events(
        Subscribed(reconnected=False),
        exited("app"),
        TaskOOM(namespace="ns", topic="/tasks/oom", timestamp=T0, container_id="app"),
        TaskCreated(namespace="ns", topic="/tasks/create", timestamp=T0, container_id="app", pid=1),
        exited("foreign"),
        exited("partial"),
        exited("deleted-meanwhile"),
        Subscribed(reconnected=True),
    )
    queued: Queued = []
    resyncs: list[bool] = []
    await follow_task_events(
        containerd=cast(Any, containerd),
        trigger=lambda kind, key: queued.append((kind, key)),
        resync=lambda: resyncs.append(True),
    )
    assert queued == [(Kind.CELL, ("r", "s", "st", "c"))] * 2
    assert resyncs == [True], "only a reconnect resyncs every cell"
    assert len(containerd.events.filters) == 2


def secret(name: str, scope: tuple[str, ...]) -> Secret:
    names = dict(zip(("realm", "space", "stack"), scope, strict=False))
    found = parse_resource(
        {
            "apiVersion": "v1beta1",
            "kind": "Secret",
            "metadata": {"name": name, **names},
            "stringData": {"token": "x"},
        }
    )
    assert isinstance(found, Secret)
    return found


class Woken:
    def __init__(self) -> None:
        self.queued: Queued = []

    def __call__(self, kind: Kind, key: tuple[str, ...]) -> bool:
        self.queued.append((kind, key))
        return True


def membership_with(*keys: tuple[str, ...]) -> CellMembership:
    membership = CellMembership(node="n1", trigger=lambda k, key: True)
    for key in keys:
        membership.observe(key, "n1", deleted=False)
    return membership


def test_a_secret_wakes_the_cells_of_its_scope() -> None:
    woken = Woken()
    membership = membership_with(
        ("r", "s", "st", "a"), ("r", "s", "other", "b"), ("r2", "s", "st", "c")
    )
    waker = CellWaker(
        kind=Kind.SECRET,
        registry=cast(Any, None),
        membership=membership,
        trigger=woken,
        scope_of=secret_scope,
    )
    assert secret_scope(secret("k", ("r", "s"))) == ("r", "s")
    assert waker.wake(secret("k", ("r", "s"))) == 2
    assert waker.wake(secret("k", ("r", "s", "st"))) == 1
    assert waker.wake(secret("k", ("r",))) == 2
    assert woken.queued[0] == (Kind.CELL, ("r", "s", "other", "b"))


async def test_a_space_wakes_its_cells_on_spec_changes_only() -> None:
    store = ScopedStore()
    woken = Woken()
    waker = CellWaker(
        kind=Kind.SPACE,
        registry=cast(Any, store),
        membership=membership_with(("r", "s", "st", "a")),
        trigger=woken,
        on_spec_change_only=True,
    )
    space = await store.create(parse_resource(space_doc("s", realmId="r")))
    follow = asyncio.create_task(waker.follow(retry=0.01))
    await asyncio.sleep(0.01)
    assert woken.queued == []
    await store.update_status(space)  # a status write by some node
    await asyncio.sleep(0.01)
    assert woken.queued == []
    current = await store.get(Kind.SPACE, ("r", "s"))
    changed = current.model_copy(
        update={"spec": current.spec.model_copy(update={"cni_config_path": "/etc/cni/other"})}
    )
    await store.update(changed)
    await asyncio.sleep(0.01)
    assert woken.queued == [(Kind.CELL, ("r", "s", "st", "a"))]
    await store.delete(Kind.SPACE, ("r", "s"))
    await asyncio.sleep(0.01)
    assert len(woken.queued) == 1, "a deleted space's cells go with it"
    # After trouble, the relist wakes every object's cells (what changed went unseen).
    await store.create(parse_resource(space_doc("s", realmId="r")))
    await asyncio.sleep(0.01)
    woken.queued.clear()
    store.break_watches(StoreError("connection lost"))
    await asyncio.sleep(0.1)
    assert (Kind.CELL, ("r", "s", "st", "a")) in woken.queued
    follow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follow


class CascadeStore(ScopedStore):
    def __init__(self) -> None:
        super().__init__()
        self.continued: list[tuple[Kind, tuple[str, ...]]] = []
        self.fail_next = False

    async def continue_cascade(self, kind: Kind, key: tuple[str, ...]) -> int:
        if self.fail_next:
            self.fail_next = False
            raise StoreError("etcd unavailable")
        self.continued.append((kind, key))
        return 2 if kind == Kind.REALM else 0

    async def current_revision(self) -> int:
        return self.revision


async def marked(store: CascadeStore, obj: AnyResource) -> None:
    created = await store.create(obj)
    await store.add_finalizer(Kind(created.kind), key_of(created), "kukeon.io/children")
    await store.delete(Kind(created.kind), key_of(created))


async def test_a_cascade_pass_steps_under_every_marked_parent() -> None:
    store = CascadeStore()
    await marked(store, parse_resource(realm_doc("r")))
    await store.create(parse_resource(space_doc("s", realmId="r")))
    await marked(store, parse_resource(stack_doc("st", realmId="r", spaceId="s")))
    await store.create(cell("c"))
    deleter = CascadeDeleter(registry=cast(Any, store), interval=0.01)
    assert await deleter.run_pass() == 2
    assert store.continued == [(Kind.REALM, ("r",)), (Kind.STACK, ("r", "s", "st"))]
    assert deleter.passes == 1


async def test_the_cascade_leader_wakes_on_marks_and_survives_store_errors() -> None:
    store = CascadeStore()
    await marked(store, parse_resource(realm_doc("r")))
    store.fail_next = True
    deleter = CascadeDeleter(registry=cast(Any, store), interval=30.0)
    lead = asyncio.create_task(deleter.lead())
    await asyncio.sleep(0.02)
    assert deleter.passes == 1
    assert store.continued == [], "the failed pass is logged, the loop goes on"
    await store.create(parse_resource(space_doc("s", realmId="r")))
    await marked(store, parse_resource(stack_doc("st", realmId="r", spaceId="s")))
    await asyncio.sleep(0.02)
    assert deleter.passes == 2, "a new mark wakes the loop at once, not after the interval"
    assert store.continued == [(Kind.REALM, ("r",)), (Kind.STACK, ("r", "s", "st"))]
    store.break_watches(StoreError("watch cut"))
    await asyncio.sleep(0.02)
    lead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lead


class SlowListStore(ScopedStore):
    """A store whose first list answers only once ``answer`` is set (a loaded etcd)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> Any:
        await self.answer.wait()
        return await super().list(kind, scope, label_selector=label_selector)


async def test_a_secret_created_before_the_first_list_answers_wakes_its_cells() -> None:
    # kukeond's start: the cells' first passes run beside the waker's first list. A pass
    # that found no Secret, the Secret created, then the list (holding it) answers: no
    # watch event will ever come for it, so the list itself must wake the cells, or they
    # wait for their retry's back-off.
    store = SlowListStore()
    woken = Woken()
    waker = CellWaker(
        kind=Kind.SECRET,
        registry=cast(Any, store),
        membership=membership_with(("r", "s", "st", "a")),
        trigger=woken,
        scope_of=secret_scope,
    )
    follow = asyncio.create_task(waker.follow(retry=0.01))
    await asyncio.sleep(0.01)
    await store.create(secret("api", ("r", "s")))
    store.answer.set()
    await asyncio.sleep(0.01)
    assert woken.queued == [(Kind.CELL, ("r", "s", "st", "a"))]
    follow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follow
