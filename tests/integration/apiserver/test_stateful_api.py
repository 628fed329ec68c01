"""A stateful fuzz of the API: random sequences of writes, not one hostile body.

A hypothesis state machine creates, replaces, merge-patches, status-writes and deletes
(with and without preconditions, each propagation) realms, spaces, stacks, cells, cellsets,
secrets and cellprofiles of two realms over the real API server on a real etcd, with bodies
that are mostly valid and sometimes mutated (a field of the wrong type, another realm's
name, a stale or future resourceVersion, another uid, a key given twice), a parent that is
Deleting or gone, a name deleted and made again at once, a patch racing a delete, a dry
run, a JSON, strategic or apply patch (this API has merge patches only: a 415). After every
step (``fuzzworld.World.check``):

- no answer is a 5xx, every 4xx is a Status naming its reason (and its fields when a 422);
- a refused write or a dry run changed nothing in etcd (keys, values, revisions);
- GET equals LIST equals what the watches opened at the start delivered, and a watch
  resumed at an earlier list's resourceVersion brings that list to the current one;
- list and object resourceVersions only grow, each is its key's mod revision;
- a 200 delete is gone at once, a cascade takes the children with it, a refused one
  leaves them; every stored key is listed (no document accepted that cannot be read back).

CI runs 10 derandomized examples of up to 20 steps (a fixed sequence, no database).
Explore with more, each run from a new seed, e.g.
``KUKEON_FUZZ_EXAMPLES=150 KUKEON_FUZZ_STEPS=30 pytest --timeout=2000 ...`` (a failure is
then shrunk for up to five minutes; its steps are printed).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from kukeon.api import Kind
from kukeon.client.paths import KINDS, collection_path, object_path
from kukeon.store import Registry
from tests.integration.apiserver.conftest import Certs, running_api
from tests.integration.apiserver.fuzzworld import (
    CHILDREN_FINALIZER,
    FUZZED_KINDS,
    SCOPED,
    Answer,
    Key,
    Slot,
    World,
    is_descendant,
    watching,
)

pytestmark = pytest.mark.integration

MERGE = "application/merge-patch+json"
EXAMPLES = int(os.environ.get("KUKEON_FUZZ_EXAMPLES", "0"))
STEPS = int(os.environ.get("KUKEON_FUZZ_STEPS", "20"))
Objects = dict[Slot, dict[str, Any]]


@pytest.fixture
def registry(sealing_registry: Registry) -> Registry:
    """A registry with a keyring, as kukeond's: Secrets can be written."""
    return sealing_registry


@pytest.fixture
async def world(registry: Registry, certs: Certs, tokens_file: Path) -> AsyncIterator[World]:
    async with running_api(registry, certs, tokens_file) as api:
        connector = aiohttp.UnixConnector(path=str(api.socket))
        async with (
            aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as http,
            watching(http) as mirror,
        ):
            yield World(asyncio.get_running_loop(), http, registry, mirror)


def key_for(kind: Kind, realm: str, name: str, depth: int) -> Key:
    """The key of ``kind`` in the machine's small world: one space s1, one stack k1."""
    if kind == Kind.REALM:
        return (realm,)
    if kind in SCOPED:
        scope = (realm, "s1" if depth > 1 else "-", "k1" if depth > 2 else "-")
        return (*scope, name)
    levels = {Kind.SPACE: ("s1",), Kind.STACK: ("s1", "k1")}
    return (realm, *levels.get(kind, ("s1", "k1", name)))


def parent_slot(kind: Kind, key: Key) -> Slot | None:
    if kind == Kind.REALM:
        return None
    if kind in SCOPED:
        scope = tuple(part for part in key[:-1] if part != "-")
        return ((Kind.REALM, Kind.SPACE, Kind.STACK)[len(scope) - 1], scope)
    parent = KINDS[kind].parents[-1]
    return (parent, key[: len(KINDS[parent].parents) + 1])


def body_of(kind: Kind, key: Key, label: str) -> dict[str, Any]:
    """A valid document of ``kind`` named by ``key``'s last part; its parents come from the URL."""
    document: dict[str, Any] = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": kind.value,
        "metadata": {"name": key[-1], "labels": {"v": label}},
    }
    container = {"id": "main", "image": "busybox:latest"}
    if kind == Kind.CELL:
        document["spec"] = {"containers": [{**container, "root": True}]}
    elif kind == Kind.CELL_SET:
        document["spec"] = {
            "replicas": 1,
            "selector": {"matchLabels": {"app": key[-1]}},
            "template": {
                "metadata": {"labels": {"app": key[-1]}},
                "spec": {"containers": [container]},
            },
        }
    elif kind == Kind.SECRET:
        document["stringData"] = {"token": label}
    elif kind == Kind.CELL_PROFILE:
        document["spec"] = {"cell": {"containers": [container]}}
    return document


def mutated(kind: Kind, document: dict[str, Any], mutation: str, other_realm: str) -> bytes:
    """The body's bytes with ``mutation`` made (``duplicate``: the labels given twice)."""
    changed = copy.deepcopy(document)
    if mutation == "wrong_type":
        changed["metadata"]["labels"] = 7 if kind != Kind.CELL_SET else {"v": "x"}
        if kind == Kind.CELL_SET:
            changed["spec"]["replicas"] = "two"
    elif mutation == "other_realm":
        if kind in SCOPED:
            changed["metadata"]["realm"] = other_realm
        elif kind == Kind.REALM:
            changed["metadata"]["name"] = other_realm
        else:
            changed.setdefault("spec", {})["realmId"] = other_realm
    text = json.dumps(changed)
    if mutation == "duplicate":
        labels = json.dumps(changed["metadata"]["labels"])
        text = text.replace(
            f'"labels": {labels}', f'"labels": {{"v": "first"}}, "labels": {labels}'
        )
    return text.encode()


MUTATIONS = st.sampled_from(["none", "none", "none", "wrong_type", "other_realm", "duplicate"])
VERSIONS = st.sampled_from(["none", "current", "stale", "future", "uid", "wrong_uid"])
POLICIES = st.sampled_from([None, None, "Foreground", "Background", "Orphan", "Orphan", "cascade"])
DRY_RUNS = st.sampled_from([False, False, False, True])
OTHER_PATCHES = (
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
VALIDATION = st.sampled_from([None, "Strict", "Warn"])
INITIAL = (
    (Kind.REALM, 1),
    (Kind.SPACE, 1),
    (Kind.STACK, 1),
    (Kind.CELL, 1),
    (Kind.CELL_SET, 1),
    (Kind.SECRET, 1),
    (Kind.CELL_PROFILE, 2),
)
Drawn = tuple[Kind, int, str, int] | int
"""A slot by kind, realm, name and scope depth; or (an int) one of the objects there are."""
SLOT: st.SearchStrategy[Drawn] = st.one_of(
    st.tuples(
        st.sampled_from(FUZZED_KINDS),
        st.sampled_from([0, 0, 0, 1]),  # realm a mostly: it starts with a space and a stack
        st.sampled_from(["n1", "n1", "n2"]),  # names met again more often than not
        st.integers(1, 3),
    ),
    st.integers(0, 999),
)


class ApiMachine(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        self.world.examples += 1
        number = self.world.examples
        self.realms = (f"fz{number}a", f"fz{number}b")
        self.objects: Objects = {}
        self.revisions_seen: dict[Kind, int] = {}
        self.versions: dict[Slot, list[str]] = {}
        self.uid_versions: dict[str, int] = {}
        self.snapshots: list[tuple[dict[Kind, int], Objects]] = []
        """Each check's list revisions and objects, for the watches resumed from them."""
        self.counter = 0

    # -- helpers ------------------------------------------------------------------------

    def slot(self, drawn: Drawn) -> Slot:
        if isinstance(drawn, int):
            there = sorted(self.objects) or [(Kind.REALM, (self.realms[0],))]
            return there[drawn % len(there)]
        kind, realm, name, depth = drawn
        return kind, key_for(kind, self.realms[realm], name, depth)

    def label(self) -> str:
        self.counter += 1
        return f"l{self.counter}"

    def send(self, method: str, path: str, **options: Any) -> Answer:
        return self.world.run(self.world.request(method, path, **options))

    def refused_changes_nothing(self, method: str, path: str, **options: Any) -> Answer:
        """The request; when refused or a dry run, etcd is as it was before it."""
        before = self.world.run(self.world.dump())
        answer = self.send(method, path, **options)
        if answer.status >= 400 or (options.get("params") or {}).get("dryRun"):
            assert self.world.run(self.world.dump()) == before, (method, path, options, answer)
        return answer

    def accepted(self, slot: Slot, answer: Answer) -> None:
        """A written object's resourceVersion is newer than any its uid had."""
        metadata = answer.body["metadata"]
        version = int(metadata["resourceVersion"])
        assert version >= self.uid_versions.get(metadata["uid"], 0), (slot, answer)
        self.uid_versions[metadata["uid"]] = version
        self.versions.setdefault(slot, []).append(metadata["resourceVersion"])

    def descendants(self, key: Key) -> list[Slot]:
        return [slot for slot in self.objects if is_descendant(slot[1], key)]

    def deleting(self, slot: Slot | None) -> bool:
        return slot is not None and bool(
            self.objects.get(slot, {}).get("metadata", {}).get("deletionTimestamp")
        )

    def precondition_metadata(self, slot: Slot, version: str) -> dict[str, Any]:
        """The metadata a write sends for ``version``; its expected refusal or None."""
        current = self.objects[slot]["metadata"]
        older = [seen for seen in self.versions.get(slot, []) if seen != current["resourceVersion"]]
        return {
            "none": {},
            "current": {"resourceVersion": current["resourceVersion"]},
            "stale": {"resourceVersion": older[0] if older else "1"},
            "future": {"resourceVersion": str(int(current["resourceVersion"]) + 1000)},
            "uid": {"uid": current["uid"]},
            "wrong_uid": {"uid": str(uuid.uuid4())},
        }[version]

    # -- the world's shape --------------------------------------------------------------

    @initialize()
    def a_tree(self) -> None:
        """Realm a with space s1, stack k1 and one object of every other kind in them, so
        that every rule meets each kind at once; realm b empty."""
        for kind, depth in INITIAL:
            key = key_for(kind, self.realms[0], "n1", depth)
            document = body_of(kind, key, "0")
            answer = self.send("POST", collection_path(kind, key[:-1]), body=document)
            assert answer.status == 201, answer
            self.accepted((kind, key), answer)

    @invariant()
    def consistent(self) -> None:
        self.objects = self.world.run(self.world.check(self.revisions_seen))
        self.snapshots.append((dict(self.revisions_seen), self.objects))
        for document in self.objects.values():
            metadata = document["metadata"]
            assert int(metadata["resourceVersion"]) >= self.uid_versions.get(metadata["uid"], 0)
            self.uid_versions[metadata["uid"]] = int(metadata["resourceVersion"])

    def teardown(self) -> None:
        """Release what holds objects (a CellSet's orphaning), delete both realms, wait."""
        self.world.run(self._teardown())

    async def _teardown(self) -> None:
        world = self.world
        objects, _ = await world.listed()
        for (kind, key), document in objects.items():
            held = document["metadata"].get("finalizers") or []
            if set(held) - {CHILDREN_FINALIZER}:
                kept = [name for name in held if name == CHILDREN_FINALIZER]
                patch = {"metadata": {"finalizers": kept}}
                await world.request("PATCH", object_path(kind, key), body=patch, content_type=MERGE)
        for realm in self.realms:
            path = object_path(Kind.REALM, (realm,))
            await world.request("DELETE", path, params={"propagationPolicy": "Background"})
        await world.settled(until_empty=True)

    # -- the rules ----------------------------------------------------------------------

    @rule(drawn=SLOT, mutation=MUTATIONS, validation=VALIDATION, dry_run=DRY_RUNS)
    def create(self, drawn: Drawn, mutation: str, validation: str | None, dry_run: bool) -> None:
        kind, key = self.slot(drawn)
        if kind == Kind.REALM and mutation == "other_realm":
            mutation = "wrong_type"  # a realm POSTed with another name is that realm's create
        document = body_of(kind, key, self.label())
        other = self.realms[1] if key[0] == self.realms[0] else self.realms[0]
        params = {"fieldValidation": validation} if validation else {}
        if dry_run:
            params["dryRun"] = "All"
        answer = self.refused_changes_nothing(
            "POST",
            collection_path(kind, key[:-1]),
            raw=mutated(kind, document, mutation, other),
            params=params,
        )
        parent = parent_slot(kind, key)
        lenient = mutation == "duplicate" and validation == "Warn"
        if mutation != "none" and not lenient:
            assert answer.status >= 400, (kind, key, mutation, answer)
        elif (kind, key) in self.objects:
            assert answer.status == 409, answer
        elif parent is not None and (parent not in self.objects or self.deleting(parent)):
            assert answer.status == 404, answer
        else:
            assert answer.status == 201, (kind, key, mutation, answer)
        if answer.status == 201 and not dry_run:
            self.accepted((kind, key), answer)
            assert answer.body["metadata"]["labels"] == document["metadata"]["labels"]

    @rule(drawn=SLOT, mutation=MUTATIONS, version=VERSIONS, dry_run=DRY_RUNS)
    def replace(self, drawn: Drawn, mutation: str, version: str, dry_run: bool) -> None:
        slot = kind, key = self.slot(drawn)
        label = self.label()
        if slot not in self.objects:
            answer = self.refused_changes_nothing(
                "PUT", object_path(kind, key), body=body_of(kind, key, label)
            )
            assert answer.status == 404, answer
            return
        document = copy.deepcopy(self.objects[slot])
        document["metadata"].pop("resourceVersion")
        document["metadata"].pop("uid")
        document["metadata"].update(self.precondition_metadata(slot, version))
        document["metadata"]["labels"] = {"v": label}
        if kind == Kind.SECRET:
            document["stringData"] = {"token": label}
        other = self.realms[1] if key[0] == self.realms[0] else self.realms[0]
        answer = self.refused_changes_nothing(
            "PUT",
            object_path(kind, key),
            raw=mutated(kind, document, mutation, other),
            params={"dryRun": "All"} if dry_run else None,
        )
        self.written(slot, answer, mutation, version, label, dry_run)

    def written(
        self, slot: Slot, answer: Answer, mutation: str, version: str, label: str, dry_run: bool
    ) -> None:
        """What a replace or patch of an existing object must have answered."""
        if mutation != "none":
            assert answer.status >= 400, (slot, mutation, answer)
        elif version in ("stale", "future", "wrong_uid"):
            assert answer.status == 409, (slot, version, answer)
        else:
            assert answer.status == 200, (slot, version, answer)
            assert answer.body["metadata"]["labels"] == {"v": label}, answer
            if not dry_run:
                self.accepted(slot, answer)

    @rule(drawn=SLOT, content_type=st.sampled_from(OTHER_PATCHES))
    def patch_of_another_type(self, drawn: Drawn, content_type: str) -> None:
        """A JSON, strategic merge or apply patch: this API has merge patches only (a 415)."""
        kind, key = self.slot(drawn)
        body = [{"op": "replace", "path": "/metadata/labels", "value": {"v": self.label()}}]
        raw = json.dumps(body if "json-patch" in content_type else {"metadata": {}}).encode()
        path = object_path(kind, key)
        answer = self.refused_changes_nothing("PATCH", path, raw=raw, content_type=content_type)
        assert answer.status == 415, answer

    @rule(drawn=SLOT, mutation=MUTATIONS, version=VERSIONS, dry_run=DRY_RUNS)
    def patch(self, drawn: Drawn, mutation: str, version: str, dry_run: bool) -> None:
        slot = kind, key = self.slot(drawn)
        label = self.label()
        body: dict[str, Any] = {"metadata": {"labels": {"v": label}}}
        if slot not in self.objects:
            answer = self.refused_changes_nothing(
                "PATCH", object_path(kind, key), body=body, content_type=MERGE
            )
            assert answer.status == 404, answer
            return
        body["metadata"].update(self.precondition_metadata(slot, version))
        other = self.realms[1] if key[0] == self.realms[0] else self.realms[0]
        if mutation == "wrong_type":
            body["metadata"]["labels"] = 7
        elif mutation == "other_realm":
            body = (
                {"metadata": {"realm": other}} if kind in SCOPED else {"spec": {"realmId": other}}
            )
            if kind == Kind.REALM:
                body = {"metadata": {"name": other}}
            body.setdefault("metadata", {})["labels"] = {"v": label}
        raw = json.dumps(body).encode()
        if mutation == "duplicate":
            raw = raw.replace(b'{"metadata": ', b'{"metadata": {}, "metadata": ', 1)
        answer = self.refused_changes_nothing(
            "PATCH",
            object_path(kind, key),
            raw=raw,
            content_type=MERGE,
            params={"dryRun": "All"} if dry_run else None,
        )
        self.written(slot, answer, mutation, version, label, dry_run)

    @rule(drawn=SLOT, put=st.booleans(), bad=st.booleans())
    def write_status(self, drawn: Drawn, put: bool, bad: bool) -> None:
        slot = kind, key = self.slot(drawn)
        path = object_path(kind, key, "status")
        field = "replicas" if kind == Kind.CELL_SET else "message"
        value: Any = self.label()
        if kind == Kind.CELL_SET:
            value = "many" if bad else self.counter
        elif bad:
            value = 5
        status = {} if kind in SCOPED else {field: value}
        before = self.objects.get(slot)
        if put and before is not None:
            document = copy.deepcopy(before)
            document["status"] = {**document.get("status", {}), **status}
            answer = self.refused_changes_nothing("PUT", path, body=document)
        else:
            body = {"status": status}
            answer = self.refused_changes_nothing("PATCH", path, body=body, content_type=MERGE)
        if before is None:
            assert answer.status == 404, answer
            return
        if (bad and kind not in SCOPED) or kind == Kind.SECRET:
            # A Secret's status (its keys, sizes and digests) is the registry's: a 422.
            assert answer.status >= 400, answer
            return
        assert answer.status == 200, (slot, answer)
        self.accepted(slot, answer)
        for unchanged in ("spec", "stringData"):
            assert answer.body.get(unchanged) == before.get(unchanged), (unchanged, answer)
        assert answer.body["metadata"].get("generation") == before["metadata"].get("generation")
        if status:
            assert answer.body["status"][field] == value, answer

    @rule(drawn=SLOT, policy=POLICIES, version=VERSIONS, dry_run=DRY_RUNS)
    def delete(self, drawn: Drawn, policy: str | None, version: str, dry_run: bool) -> None:
        slot = kind, key = self.slot(drawn)
        params = {"dryRun": "All"} if dry_run else {}
        if policy == "cascade":
            params["cascade"] = "true"
        elif policy is not None:
            params["propagationPolicy"] = policy
        exists = slot in self.objects
        preconditions = self.precondition_metadata(slot, version) if exists else {}
        body = {"preconditions": preconditions} if preconditions else None
        path = object_path(kind, key)
        answer = self.refused_changes_nothing("DELETE", path, params=params, body=body)
        cascade = policy in ("Foreground", "Background", "cascade")
        if policy == "Orphan" and kind != Kind.CELL_SET:
            assert answer.status == 400, answer
        elif not exists:
            assert answer.status == 404, answer
        elif version in ("stale", "future", "wrong_uid"):
            assert answer.status == 409, (slot, version, answer)
        elif not cascade and self.descendants(key) and not self.deleting(slot):
            assert answer.status == 409, (slot, answer)
        else:
            assert answer.status in (200, 202), (slot, policy, answer)
        if answer.status == 200 and not dry_run:
            assert self.send("GET", path).status == 404

    @rule(existing=st.integers(0, 999), policy=POLICIES, version=VERSIONS, dry_run=DRY_RUNS)
    def delete_an_object(
        self, existing: int, policy: str | None, version: str, dry_run: bool
    ) -> None:
        """A delete of one of the objects there are: as often as one of any slot."""
        self.delete(existing, policy, version, dry_run)

    @rule(kind=st.sampled_from(FUZZED_KINDS), back=st.integers(0, 50))
    def watch_from_an_earlier_list(self, kind: Kind, back: int) -> None:
        """A watch resumed at the revision of a list made some steps ago brings that list
        to what the list shows now, each document as GET shows it."""
        revisions, then = self.snapshots[-1 - back % len(self.snapshots)]
        objects = {key: doc for (k, key), doc in then.items() if k == kind}
        now = {key: doc for (k, key), doc in self.objects.items() if k == kind}
        if objects != now:
            assert self.world.run(self.world.resumed(kind, revisions[kind], objects)) == now

    @rule(drawn=SLOT)
    def recreate(self, drawn: Drawn) -> None:
        """The same name deleted and made again at once: a new object, a new uid."""
        slot = kind, key = self.slot(drawn)
        current = self.objects.get(slot)
        if current is None or self.descendants(key) or current["metadata"].get("finalizers"):
            return
        assert self.send("DELETE", object_path(kind, key)).status == 200
        answer = self.send("POST", collection_path(kind, key[:-1]), body=body_of(kind, key, "re"))
        parent = parent_slot(kind, key)
        if parent is not None and self.deleting(parent):
            assert answer.status == 404, answer
            return
        assert answer.status == 201, answer
        assert answer.body["metadata"]["uid"] != current["metadata"]["uid"]
        self.accepted(slot, answer)

    @rule(drawn=SLOT, cascade=st.booleans())
    def patch_races_delete(self, drawn: Drawn, cascade: bool) -> None:
        """Either may win; neither is a 5xx (``World.request``) and the checks hold after."""
        kind, key = self.slot(drawn)
        path = object_path(kind, key)
        patch = {"metadata": {"labels": {"v": self.label()}}}
        params = {"propagationPolicy": "Background"} if cascade else None

        async def both() -> tuple[Answer, Answer]:
            return await asyncio.gather(
                self.world.request("PATCH", path, body=patch, content_type=MERGE),
                self.world.request("DELETE", path, params=params),
            )

        patched, deleted = self.world.run(both())
        assert patched.status in (200, 404, 409), patched
        assert deleted.status in (200, 202, 404, 409), deleted


async def test_random_write_sequences_keep_the_api_consistent(world: World) -> None:
    machine = type("Machine", (ApiMachine,), {"world": world})
    run_settings = settings(
        max_examples=EXAMPLES or 10,
        stateful_step_count=STEPS,
        derandomize=not EXAMPLES,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=run_settings)
