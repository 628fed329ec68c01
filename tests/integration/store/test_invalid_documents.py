"""Documents written into etcd behind the registry's back: skipped, logged once, counted.

Every bad document is put with the registry's own etcd client (raw ``Put``), as
``etcdctl put`` would, under this test's private key prefix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from aetcd import rpc

from kukeon.api import Kind
from kukeon.store import MAX_DOCUMENT_BYTES, InvalidStoredDocument, NotFound, Registry, WatchEvent

from .objects import cell, realm, space, stack, with_labels

pytestmark = pytest.mark.integration

_LOGGER = "kukeon.store.decoding"


async def put_raw(registry: Registry, key: str, value: bytes) -> int:
    """Write ``value`` under ``key`` with no validation at all; returns the revision."""
    client = registry.client
    await client.connect()
    response = await client.kvstub.Put(
        rpc.PutRequest(key=key.encode(), value=value), timeout=10, metadata=client.metadata
    )
    return int(response.header.revision)


def _bad_documents(registry: Registry) -> dict[str, tuple[Kind, bytes]]:
    """One broken document per way of being broken, under realm ``ok``'s hierarchy."""
    cell_named_elsewhere = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "c1"},
        "spec": {
            "realmId": "other",
            "spaceId": "s1",
            "stackId": "st1",
            "containers": [{"id": "main", "image": "busybox"}],
        },
    }
    space_as_realm = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Space",
        "metadata": {"name": "wrongkind"},
        "spec": {"realmId": "ok"},
    }
    invalid_spec = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Stack",
        "metadata": {"name": "badspec"},
        "spec": {"realmId": "ok", "spaceId": "s1", "nonsense": {"a": 1}},
    }
    return {
        registry.key_for(Kind.REALM, ("notjson",)): (Kind.REALM, b"{not json"),
        registry.key_for(Kind.REALM, ("array",)): (Kind.REALM, b"[1, 2]"),
        registry.key_for(Kind.REALM, ("x",)): (Kind.REALM, b'{"x":1}'),
        registry.key_for(Kind.REALM, ("wrongkind",)): (
            Kind.REALM,
            json.dumps(space_as_realm).encode(),
        ),
        registry.key_for(Kind.SPACE, ("ok", "nometa")): (Kind.SPACE, b'{"kind":"Space"}'),
        registry.key_for(Kind.STACK, ("ok", "s1", "badspec")): (
            Kind.STACK,
            json.dumps(invalid_spec).encode(),
        ),
        registry.key_for(Kind.CELL, ("ok", "s1", "st1", "c1")): (
            Kind.CELL,
            json.dumps(cell_named_elsewhere).encode(),
        ),
        registry.key_for(Kind.CELL, ("ok", "s1", "st1", "binary")): (Kind.CELL, b"\xff\xfe\x00"),
    }


async def _valid_hierarchy(registry: Registry) -> None:
    await registry.create(realm("ok"))
    await registry.create(space("ok", "s1"))
    await registry.create(stack("ok", "s1", "st1"))
    await registry.create(cell("ok", "s1", "st1", "good"))


async def test_lists_skip_every_kind_of_bad_document_log_it_once_and_count_it(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    await _valid_hierarchy(registry)
    bad = _bad_documents(registry)
    for key, (_, value) in bad.items():
        await put_raw(registry, key, value)

    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        for _ in range(3):  # three passes, as a controller's relists would be
            realms = await registry.list(Kind.REALM)
            spaces = await registry.list(Kind.SPACE)
            stacks = await registry.list(Kind.STACK)
            cells = await registry.list(Kind.CELL)
            labelled = await registry.list(Kind.CELL, label_selector="app=web")

    assert [r.metadata.name for r in realms.items] == ["ok"]
    assert [s.metadata.name for s in spaces.items] == ["s1"]
    assert [s.metadata.name for s in stacks.items] == ["st1"]
    assert [c.metadata.name for c in cells.items] == ["good"]
    assert labelled.items == []
    counts = registry.invalid_documents()
    assert counts[Kind.REALM] == 4
    assert counts[Kind.SPACE] == 1
    assert counts[Kind.STACK] == 1
    assert counts[Kind.CELL] == 2
    warnings = [r.getMessage() for r in caplog.records if "skipping the invalid" in r.getMessage()]
    for key in bad:
        assert sum(key in message for message in warnings) == 1, (key, warnings)
    assert all(record.exc_info is None for record in caplog.records)  # no traceback
    assert "holds a Space, not a Realm" in "\n".join(warnings)
    assert "names 'other/s1/st1/c1' but is stored under 'ok/s1/st1/c1'" in "\n".join(warnings)


async def test_get_refuses_it_by_name_and_delete_removes_it(registry: Registry) -> None:
    await _valid_hierarchy(registry)
    key = registry.key_for(Kind.REALM, ("x",))
    revision = await put_raw(registry, key, b'{"x":1}')

    with pytest.raises(InvalidStoredDocument) as caught:
        await registry.get(Kind.REALM, ("x",))
    assert caught.value.key == key
    assert caught.value.revision == revision
    assert "no metadata object" in str(caught.value)
    assert registry.invalid_documents()[Kind.REALM] == 1

    assert await registry.delete(Kind.REALM, ("x",)) is None
    with pytest.raises(NotFound):
        await registry.get(Kind.REALM, ("x",))
    assert registry.invalid_documents()[Kind.REALM] == 0


async def test_an_invalid_parent_with_children_is_removed_by_a_cascading_delete(
    registry: Registry,
) -> None:
    await _valid_hierarchy(registry)
    await put_raw(registry, registry.key_for(Kind.REALM, ("ok",)), b"garbage")
    with pytest.raises(NotFound, match="invalid"):
        await registry.create(space("ok", "s2"))
    with pytest.raises(Exception, match="still has"):
        await registry.delete(Kind.REALM, ("ok",))
    assert await registry.delete(Kind.REALM, ("ok",), cascade=True) is None
    assert (await registry.list(Kind.CELL)).items == []
    assert (await registry.list(Kind.REALM)).items == []


async def test_a_fixed_key_is_no_longer_counted(registry: Registry) -> None:
    key = registry.key_for(Kind.REALM, ("later",))
    await put_raw(registry, key, b"{}")
    assert (await registry.list(Kind.REALM)).items == []
    assert registry.invalid_documents()[Kind.REALM] == 1
    valid = {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "later"}}
    await put_raw(registry, key, json.dumps(valid).encode())
    assert [r.metadata.name for r in (await registry.list(Kind.REALM)).items] == ["later"]
    assert registry.invalid_documents()[Kind.REALM] == 0


async def _next(stream: AsyncIterator[WatchEvent]) -> WatchEvent:
    return await anext(stream)


async def test_a_watch_skips_invalid_versions_and_goes_on(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    start = await registry.current_revision()
    stream = registry.watch(Kind.REALM, resource_version=start)
    try:
        key_x = registry.key_for(Kind.REALM, ("x",))
        with caplog.at_level(logging.WARNING, logger=_LOGGER):
            await put_raw(registry, key_x, b'{"x":1}')  # a new invalid key: not an event
            created = await registry.create(realm("a"))
            event = await _next(stream)
        assert (event.type, event.object.metadata.name) == ("ADDED", "a")
        assert sum(key_x in r.getMessage() for r in caplog.records) == 1

        # A valid object turned invalid is DELETED for the watcher (its last valid version).
        await registry.update(with_labels(created, {"tier": "gold"}))
        modified = await _next(stream)
        assert modified.type == "MODIFIED"
        await put_raw(registry, registry.key_for(Kind.REALM, ("a",)), b"[]")
        gone = await _next(stream)
        assert (gone.type, gone.object.metadata.name) == ("DELETED", "a")
        assert gone.object.metadata.labels == {"tier": "gold"}

        # Invalid -> valid is ADDED; deleting a key that was invalid is not an event.
        valid = {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "x"}}
        await put_raw(registry, key_x, json.dumps(valid).encode())
        back = await _next(stream)
        assert (back.type, back.object.metadata.name) == ("ADDED", "x")
        client = registry.client
        await client.kvstub.DeleteRange(
            rpc.DeleteRangeRequest(key=registry.key_for(Kind.REALM, ("a",)).encode()),
            timeout=10,
            metadata=client.metadata,
        )
        await registry.create(realm("b"))
        after = await _next(stream)
        assert (after.type, after.object.metadata.name) == ("ADDED", "b")
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_status_fields_of_another_version_are_left_out_not_the_object(
    registry: Registry,
) -> None:
    """A newer kukeond's status fields (a rolling upgrade, a rollback): the object is read,
    listed, watched and written without them; a spec field of another version still makes
    it invalid (a write would drop it)."""
    await _valid_hierarchy(registry)
    stored = await registry.get(Kind.CELL, ("ok", "s1", "st1", "good"))
    document = json.loads(stored.model_dump_json(by_alias=True, exclude_none=True))
    document["status"]["observedByANewerNode"] = {"x": 1}
    document["status"]["containers"] = [{"id": "main", "loopStepOfTheFuture": 4}]
    key = registry.key_for(Kind.CELL, ("ok", "s1", "st1", "good"))
    await put_raw(registry, key, json.dumps(document).encode())

    read = await registry.get(Kind.CELL, ("ok", "s1", "st1", "good"))
    assert read.status.containers[0].id == "main"
    listed = await registry.list(Kind.CELL, ("ok", "s1", "st1"))
    assert [c.metadata.name for c in listed.items] == ["good"]
    assert registry.invalid_documents()[Kind.CELL] == 0
    read.metadata.labels = {"app": "web"}
    updated = await registry.update(read)  # a spec write keeps the status it can read
    assert updated.metadata.labels == {"app": "web"}
    assert updated.status.containers[0].id == "main"

    document["spec"]["fieldOfTheFuture"] = True
    await put_raw(registry, key, json.dumps(document).encode())
    assert (await registry.list(Kind.CELL, ("ok", "s1", "st1"))).items == []
    assert registry.invalid_documents()[Kind.CELL] == 1


async def test_a_document_over_the_size_limit_is_skipped_and_says_why(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """etcd takes up to 1.5 MiB in a put; the registry writes at most MAX_DOCUMENT_BYTES.
    A bigger document put by hand was decoded and handed to its controller, whose every
    write of it (its status included) the registry then refused: a cell Pending for good,
    an error with a traceback at every retry, and no status saying why."""
    await _valid_hierarchy(registry)
    big = cell("ok", "s1", "st1", "big").model_dump(mode="json", by_alias=True, exclude_none=True)
    big["metadata"]["annotations"] = {"x": "a" * (MAX_DOCUMENT_BYTES + 1000)}
    key = registry.key_for(Kind.CELL, ("ok", "s1", "st1", "big"))
    await put_raw(registry, key, json.dumps(big).encode())
    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        cells = await registry.list(Kind.CELL)
    assert [c.metadata.name for c in cells.items] == ["good"]
    [warned] = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert f"over the {MAX_DOCUMENT_BYTES}-byte limit" in warned
    with pytest.raises(InvalidStoredDocument, match="over the"):
        await registry.get(Kind.CELL, ("ok", "s1", "st1", "big"))
    assert await registry.delete(Kind.CELL, ("ok", "s1", "st1", "big")) is None
    assert registry.invalid_documents()[Kind.CELL] == 0
