"""Create, read, list, update, status, finalizers and delete against a real etcd."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from kukeon.api import AnyResource, Cell, CellState, DesiredCellState, Kind
from kukeon.store import (
    CHILDREN_FINALIZER,
    AlreadyExists,
    ChildrenExist,
    Conflict,
    Invalid,
    NotFound,
    Registry,
)

from .objects import cell, realm, space, stack, with_labels

pytestmark = pytest.mark.integration


async def _tree(registry: Registry) -> None:
    await registry.create(realm("r"))
    await registry.create(space("r", "s"))
    await registry.create(stack("r", "s", "st"))


async def test_create_sets_identity_and_stores_compact_json(registry: Registry) -> None:
    created = await registry.create(realm("r", labels={"team": "a"}))
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.generation == 1
    assert created.metadata.finalizers == [CHILDREN_FINALIZER]
    assert created.metadata.resource_version is not None

    raw = await registry.client.get(registry.key_for(Kind.REALM, ("r",)).encode())
    assert raw.mod_revision == int(created.metadata.resource_version)
    assert b": " not in raw.value
    assert b", " not in raw.value
    stored = json.loads(raw.value)
    assert stored["apiVersion"] == "kukeon.io/v1beta1"
    assert "resourceVersion" not in stored["metadata"]
    assert await registry.get(Kind.REALM, ("r",)) == created


async def test_create_twice_is_already_exists(registry: Registry) -> None:
    await registry.create(realm("r"))
    with pytest.raises(AlreadyExists, match="Realm 'r' already exists"):
        await registry.create(realm("r"))


async def test_create_without_parent_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound, match="Realm 'nope' does not exist"):
        await registry.create(space("nope", "s"))
    assert (await registry.list(Kind.SPACE)).items == []


async def test_create_under_deleting_parent_is_not_found(registry: Registry) -> None:
    await registry.create(realm("r"))
    await registry.add_finalizer(Kind.REALM, ("r",), "test/hold")
    assert await registry.delete(Kind.REALM, ("r",)) is not None
    with pytest.raises(NotFound, match="being deleted"):
        await registry.create(space("r", "s"))


async def test_create_ignores_input_status(registry: Registry) -> None:
    wanted = cell("default", "default", "default", "c")
    await registry.create(realm("default"))
    await registry.create(space("default", "default"))
    await registry.create(stack("default", "default", "default"))
    running = wanted.model_copy(
        update={"status": wanted.status.model_copy(update={"state": CellState.READY})}
    )
    created = await registry.create(running)
    assert created.status.state == CellState.PENDING


async def test_document_over_one_mebibyte_is_refused_before_writing(registry: Registry) -> None:
    big = realm("big", labels={})
    big = big.model_copy(
        update={"metadata": big.metadata.model_copy(update={"annotations": {"x": "y" * 1_100_000}})}
    )
    revision = await registry.current_revision()
    with pytest.raises(Invalid, match="over the 1048576-byte limit"):
        await registry.create(big)
    assert await registry.current_revision() == revision


async def test_invalid_resource_is_refused_with_every_field(registry: Registry) -> None:
    await _tree(registry)
    bad = cell("r", "s", "st", "c")
    bad = bad.model_copy(update={"spec": bad.spec.model_copy(update={"containers": []})})
    with pytest.raises(Invalid) as caught:
        await registry.create(bad)
    assert any(cause.field == "spec.containers" for cause in caught.value.causes)
    assert (await registry.list(Kind.CELL)).items == []


async def test_get_missing_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound, match="Cell 'a/b/c/d' not found"):
        await registry.get(Kind.CELL, ("a", "b", "c", "d"))


async def test_list_scopes_and_label_selectors(registry: Registry) -> None:
    for name in ("r1", "r2"):
        await registry.create(realm(name))
    await registry.create(space("r1", "a", labels={"tier": "web", "env": "prod"}))
    await registry.create(space("r1", "b", labels={"tier": "db"}))
    await registry.create(space("r2", "c", labels={"tier": "web", "env": "dev"}))

    def names(items: Sequence[AnyResource]) -> list[str]:
        return sorted(item.metadata.name for item in items)

    everything = await registry.list(Kind.SPACE)
    assert names(everything.items) == ["a", "b", "c"]
    assert everything.resource_version == await registry.current_revision()
    assert names((await registry.list(Kind.SPACE, ("r1",))).items) == ["a", "b"]
    assert names((await registry.list(Kind.SPACE, label_selector="tier=web")).items) == ["a", "c"]
    selected = await registry.list(Kind.SPACE, label_selector="tier=web,env!=prod")
    assert names(selected.items) == ["c"]
    assert names((await registry.list(Kind.SPACE, label_selector="env")).items) == ["a", "c"]
    assert names((await registry.list(Kind.SPACE, label_selector="!env")).items) == ["b"]
    with pytest.raises(Invalid, match="label selector"):
        await registry.list(Kind.SPACE, label_selector="a=b,,c")


async def test_list_pages_stay_at_one_revision(registry: Registry) -> None:
    await registry.create(realm("r"))
    for index in range(1, 1201):
        await registry.client.put(
            registry.key_for(Kind.SPACE, ("r", f"s{index:04d}")).encode(),
            json.dumps(
                {
                    "apiVersion": "kukeon.io/v1beta1",
                    "kind": "Space",
                    "metadata": {"name": f"s{index:04d}"},
                    "spec": {"realmId": "r"},
                }
            ).encode(),
        )
    listed = await registry.list(Kind.SPACE, ("r",))
    assert len(listed.items) == 1200
    assert [s.metadata.name for s in listed.items] == [f"s{i:04d}" for i in range(1, 1201)]


async def test_update_bumps_generation_only_on_spec_change(registry: Registry) -> None:
    await _tree(registry)
    created = await registry.create(cell("r", "s", "st", "c"))
    relabelled = await registry.update(with_labels(created, {"a": "b"}))
    assert relabelled.metadata.generation == 1
    assert relabelled.metadata.labels == {"a": "b"}
    assert created.metadata.resource_version is not None
    assert relabelled.metadata.resource_version is not None
    assert int(relabelled.metadata.resource_version) > int(created.metadata.resource_version)

    containers = [relabelled.spec.containers[0].model_copy(update={"image": "alpine"})]
    changed = relabelled.model_copy(
        update={"spec": relabelled.spec.model_copy(update={"containers": containers})}
    )
    updated = await registry.update(changed)
    assert updated.metadata.generation == 2
    assert updated.spec.containers[0].image == "alpine"
    assert updated.metadata.uid == created.metadata.uid
    assert updated.metadata.creation_timestamp == created.metadata.creation_timestamp


async def test_a_placement_keeps_the_generation_a_users_node_change_does_not(
    registry: Registry,
) -> None:
    """kukeond's binding (the scheduler's nodeName, a cell handed back) is no new desired
    state, as a pod's binding is not; a user's write of nodeName, or of more than it, is."""
    await _tree(registry)
    created = await registry.create(cell("r", "s", "st", "c"))

    def on(res: AnyResource, node: str | None, **spec: object) -> AnyResource:
        assert isinstance(res, Cell)
        update = {"node_name": node, **spec}
        return res.model_copy(update={"spec": res.spec.model_copy(update=update)})

    bound = await registry.update(on(created, "n1"), placement=True)
    assert (bound.spec.node_name, bound.metadata.generation) == ("n1", 1)
    handed_back = await registry.update(on(bound, None), placement=True)
    assert (handed_back.spec.node_name, handed_back.metadata.generation) == (None, 1)
    moved_by_user = await registry.update(on(handed_back, "n2"))
    assert moved_by_user.metadata.generation == 2
    more = await registry.update(
        on(moved_by_user, "n1", desired_state=DesiredCellState.STOPPED), placement=True
    )
    assert more.metadata.generation == 3


async def test_update_ignores_status_and_update_status_ignores_spec(registry: Registry) -> None:
    await _tree(registry)
    created = await registry.create(cell("r", "s", "st", "c"))
    ready_status = created.status.model_copy(update={"state": CellState.READY})

    sneaky = with_labels(created, {"x": "y"}).model_copy(update={"status": ready_status})
    updated = await registry.update(sneaky)
    assert updated.status.state == CellState.PENDING
    assert updated.metadata.labels == {"x": "y"}

    containers = [updated.spec.containers[0].model_copy(update={"image": "evil"})]
    status_write = updated.model_copy(
        update={
            "status": ready_status,
            "spec": updated.spec.model_copy(update={"containers": containers}),
            "metadata": updated.metadata.model_copy(update={"labels": {}}),
        }
    )
    with_status = await registry.update_status(status_write)
    assert with_status.status.state == CellState.READY
    assert with_status.spec.containers[0].image == "busybox"
    assert with_status.metadata.labels == {"x": "y"}
    assert with_status.metadata.generation == 1
    assert await registry.get(Kind.CELL, ("r", "s", "st", "c")) == with_status


async def test_stale_update_and_status_are_conflicts(registry: Registry) -> None:
    created = await registry.create(realm("r"))
    await registry.update(with_labels(created, {"v": "1"}))
    with pytest.raises(Conflict):
        await registry.update(with_labels(created, {"v": "2"}))
    with pytest.raises(Conflict):
        await registry.update_status(created)
    assert (await registry.get(Kind.REALM, ("r",))).metadata.labels == {"v": "1"}


async def test_update_of_missing_object_is_not_found(registry: Registry) -> None:
    created = await registry.create(realm("r"))
    ghost = created.model_copy(
        update={"metadata": created.metadata.model_copy(update={"name": "ghost"})}
    )
    with pytest.raises(NotFound):
        await registry.update(ghost)


async def test_update_without_resource_version_is_invalid(registry: Registry) -> None:
    with pytest.raises(Invalid, match="resourceVersion is required"):
        await registry.update(realm("r"))


async def test_finalizers_hold_deletion_until_removed(registry: Registry) -> None:
    await _tree(registry)
    await registry.create(cell("r", "s", "st", "c"))
    key = ("r", "s", "st", "c")
    held = await registry.add_finalizer(Kind.CELL, key, "kukeon.io/cell")
    assert held is not None
    assert held.metadata.finalizers == ["kukeon.io/cell"]
    again = await registry.add_finalizer(Kind.CELL, key, "kukeon.io/cell")
    assert again == held

    pending = await registry.delete(Kind.CELL, key)
    assert pending is not None
    assert pending.metadata.deletion_timestamp is not None
    with pytest.raises(Invalid, match="being deleted"):
        await registry.add_finalizer(Kind.CELL, key, "other")
    assert await registry.remove_finalizer(Kind.CELL, key, "kukeon.io/cell") is None
    with pytest.raises(NotFound):
        await registry.get(Kind.CELL, key)
    assert await registry.remove_finalizer(Kind.CELL, key, "kukeon.io/cell") is None


async def test_delete_without_finalizers_removes_at_once(registry: Registry) -> None:
    await registry.create(realm("r"))
    assert await registry.delete(Kind.REALM, ("r",)) is None
    with pytest.raises(NotFound):
        await registry.delete(Kind.REALM, ("r",))


async def test_children_finalizer_is_the_registrys(registry: Registry) -> None:
    await registry.create(realm("r"))
    with pytest.raises(Invalid, match="released by the registry"):
        await registry.remove_finalizer(Kind.REALM, ("r",), CHILDREN_FINALIZER)
    created = await registry.get(Kind.REALM, ("r",))
    stripped = created.model_copy(
        update={"metadata": created.metadata.model_copy(update={"finalizers": []})}
    )
    updated = await registry.update(stripped)
    assert updated.metadata.finalizers == [CHILDREN_FINALIZER]


async def test_parent_waits_for_children_held_by_finalizers(registry: Registry) -> None:
    await _tree(registry)
    await registry.create(cell("r", "s", "st", "c"))
    await registry.add_finalizer(Kind.CELL, ("r", "s", "st", "c"), "kukeon.io/cell")

    with pytest.raises(ChildrenExist) as refused:
        await registry.delete(Kind.REALM, ("r",))
    assert refused.value.children == ["r/s"]

    pending = await registry.delete(Kind.REALM, ("r",), cascade=True)
    assert pending is not None
    assert pending.metadata.deletion_timestamp is not None
    # Nothing is gone yet: the cell's own finalizer holds the whole chain.
    assert len((await registry.list(Kind.STACK)).items) == 1
    assert (
        await registry.remove_finalizer(Kind.CELL, ("r", "s", "st", "c"), "kukeon.io/cell") is None
    )
    for kind in (Kind.CELL, Kind.STACK, Kind.SPACE, Kind.REALM):
        assert (await registry.list(kind)).items == [], kind


async def test_client_serves_leases_for_the_framework(registry: Registry) -> None:
    client = registry.client
    lease = await client.lease(5)
    key = f"{registry.key_prefix}/leases/test".encode()
    await client.put(key, b"holder", lease=lease)
    assert (await lease.refresh()).TTL > 0
    assert key in await lease.keys()
    await lease.revoke()
    assert await client.get(key) is None
