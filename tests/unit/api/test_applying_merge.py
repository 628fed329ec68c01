"""What `kukectl apply` writes over a stored object (``applied_object``): a three-way merge
of the record of the last apply, the manifest and the object, as kubectl's apply. What
others changed and the manifest never named stays (a label, `stop`'s desiredState); what the
manifest dropped since the last apply goes; the record never holds a secret value."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from kukeon.api import AnyResource, Cell, parse_resource, to_document
from kukeon.api.applying import (
    LAST_APPLIED_ANNOTATION,
    RecordTooLargeError,
    applied_object,
    last_applied,
    recorded,
    with_edit_recorded,
    with_last_applied,
)
from kukeon.api.labelrules import ANNOTATIONS_MAX_BYTES
from kukeon.cli.manifests import Applier, Document, Reporter, server_refusals
from kukeon.client.apiclient import ApiRequestError


def _cell(labels: dict[str, str], **spec: Any) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "realmId": "r",
                "containers": [{"id": "main", "image": "busybox"}],
                **spec,
            },
        }
    )


def _stored(manifest: AnyResource, **changes: Any) -> AnyResource:
    """``manifest`` as the server stores it after `apply` created it, then ``changes``
    (labels, annotations, spec fields) made by other commands."""
    document = to_document(with_last_applied(manifest))
    document["metadata"].update(resourceVersion="7", uid="u")
    document["metadata"]["labels"].update(changes.pop("labels", {}))
    document["spec"].update(changes)
    return parse_resource(document)


def test_the_record_is_what_the_manifest_named() -> None:
    record = json.loads(last_applied(_cell({"app": "web"})))
    assert record["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert "desiredState" not in record["spec"]
    assert record["spec"]["containers"] == [{"id": "main", "image": "busybox"}]


def test_a_label_and_a_stop_made_since_are_kept() -> None:
    manifest = _cell({"app": "web"})
    current = _stored(manifest, labels={"team": "a"}, desiredState="Stopped")
    assert applied_object(manifest, current) is None  # nothing the manifest names differs
    changed = applied_object(_cell({"app": "api"}), current)
    assert isinstance(changed, Cell)
    assert changed.metadata.labels == {"app": "api", "team": "a"}
    assert str(changed.spec.desired_state) == "Stopped"
    assert changed.metadata.resource_version == "7"  # the compare-and-swap guard


def test_what_the_manifest_dropped_since_the_last_apply_goes() -> None:
    current = _stored(_cell({"app": "web", "tier": "x"}, desiredState="Stopped"))
    update = applied_object(_cell({"app": "web"}), current)
    assert isinstance(update, Cell)
    assert update.metadata.labels == {"app": "web"}
    assert str(update.spec.desired_state) == "Running"  # dropped: back to the default
    assert recorded(update) == json.loads(last_applied(_cell({"app": "web"})))


def test_annotations_dropped_from_the_manifest_keep_the_systems() -> None:
    manifest = parse_resource(
        {**to_document(_cell({})), "metadata": {"name": "web", "annotations": {"owner": "a"}}}
    )
    document = to_document(_stored(manifest))
    document["metadata"]["annotations"]["kukeon.io/scheduled-by"] = "scheduler"
    update = applied_object(_cell({}), parse_resource(document))
    assert update is not None
    assert "owner" not in update.metadata.annotations
    assert update.metadata.annotations["kukeon.io/scheduled-by"] == "scheduler"


def test_an_edit_saved_with_its_config_records_the_edited_object_not_the_systems() -> None:
    """`edit --save-config`: the edited object read back (it carries a resourceVersion) is
    recorded all the same, replacing the record it carried; the scheduler's annotation is
    not recorded, so an apply that drops the edit's label keeps it."""
    document = to_document(_stored(_cell({"app": "web"})))
    document["metadata"]["labels"]["owner"] = "edit"
    document["metadata"]["annotations"]["kukeon.io/scheduled-by"] = "scheduler"
    edited = with_edit_recorded(parse_resource(document))
    record = recorded(edited)
    assert record is not None
    assert record["metadata"]["labels"] == {"app": "web", "owner": "edit"}
    assert record["metadata"]["annotations"] == {}
    assert record["spec"]["desiredState"] == "Running"  # all the edited file showed
    update = applied_object(_cell({"app": "web"}), edited)
    assert update is not None
    assert update.metadata.labels == {"app": "web"}
    assert update.metadata.annotations["kukeon.io/scheduled-by"] == "scheduler"


def test_a_manifest_naming_the_default_sets_it() -> None:
    current = _stored(_cell({}), desiredState="Stopped")
    update = applied_object(_cell({}, desiredState="Running"), current)
    assert isinstance(update, Cell)
    assert str(update.spec.desired_state) == "Running"


def test_a_first_apply_over_an_unrecorded_object_sets_only_what_it_names() -> None:
    made = _cell({"made": "run"}, desiredState="Stopped")
    document = to_document(made)
    document["spec"]["containers"].append({"id": "side", "image": "busybox"})
    current = parse_resource(document)
    update = applied_object(_cell({"app": "web"}), current)
    assert isinstance(update, Cell)
    assert update.metadata.labels == {"made": "run", "app": "web"}
    assert [c.id for c in update.spec.containers] == ["main", "side"]
    assert str(update.spec.desired_state) == "Stopped"
    assert LAST_APPLIED_ANNOTATION in update.metadata.annotations


def test_the_schedulers_node_stays_even_when_the_record_named_one() -> None:
    current = _stored(_cell({}, nodeName="n1"))
    update = applied_object(_cell({"a": "b"}), current)
    assert isinstance(update, Cell)
    assert update.spec.node_name == "n1"


def test_an_object_read_back_is_applied_whole_and_keeps_the_record() -> None:
    current = _stored(_cell({"app": "web"}), labels={"team": "a"})
    document = to_document(current)
    document["metadata"]["labels"] = {"app": "web"}  # `get -o yaml`, the label deleted
    update = applied_object(parse_resource(document), current)
    assert update is not None
    assert update.metadata.labels == {"app": "web"}
    assert update.metadata.annotations == current.metadata.annotations


@pytest.mark.parametrize("record", ["{not json", "[1, 2]", "[" * 100_000 + "]" * 100_000, "null"])
def test_a_record_edited_by_hand_is_read_as_none(record: str) -> None:
    document = to_document(_cell({"made": "run"}))
    document["metadata"]["annotations"] = {LAST_APPLIED_ANNOTATION: record}
    update = applied_object(_cell({"app": "web"}), parse_resource(document))
    assert update is not None
    assert update.metadata.labels == {"made": "run", "app": "web"}


def _secret(**body: Any) -> AnyResource:
    metadata = {"name": "api", "realm": "r", "labels": {"app": "api"}}
    return parse_resource({"apiVersion": "v1beta1", "kind": "Secret", "metadata": metadata, **body})


def test_a_secrets_values_never_reach_the_record() -> None:
    value = "s3cr3t-value"
    encoded = base64.b64encode(b"other-value").decode()
    secret = _secret(stringData={"token": value}, data={"other": encoded})
    created = with_last_applied(secret)
    record = created.metadata.annotations[LAST_APPLIED_ANNOTATION]
    for hidden in (value, encoded, hashlib.sha256(value.encode()).hexdigest()):
        assert hidden not in record
    assert json.loads(record)["metadata"]["labels"] == {"app": "api"}
    assert "data" not in json.loads(record)
    assert "stringData" not in json.loads(record)


def test_a_secrets_labels_merge_and_its_values_go_along() -> None:
    document = to_document(with_last_applied(_secret()))
    document["metadata"]["labels"]["team"] = "a"
    document["metadata"]["resourceVersion"] = "3"
    current = parse_resource(document)
    assert applied_object(_secret(), current) is None
    update = applied_object(_secret(stringData={"token": "new"}), current)
    assert update is not None
    assert update.metadata.labels == {"app": "api", "team": "a"}
    assert update.metadata.resource_version == "3"
    assert update.values() == {"token": b"new"}  # type: ignore[attr-defined]


def test_an_inline_registry_password_is_recorded_as_stars() -> None:
    realm = parse_resource(
        {
            "apiVersion": "v1beta1",
            "kind": "Realm",
            "metadata": {"name": "r"},
            "spec": {
                "registryCredentials": [
                    {"username": "u", "password": "hunter22", "serverAddress": "reg.example"}
                ]
            },
        }
    )
    record = with_last_applied(realm).metadata.annotations[LAST_APPLIED_ANNOTATION]
    assert "hunter22" not in record
    assert '"password":"***"' in record


def test_a_set_naming_a_profile_leaves_its_template_to_the_server() -> None:
    def cellset(**template: Any) -> AnyResource:
        return parse_resource(
            {
                "apiVersion": "v1beta1",
                "kind": "CellSet",
                "metadata": {"name": "web"},
                "spec": {
                    "realmId": "r",
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, **template},
                    "profile": "web",
                },
            }
        )

    stored = cellset(spec={"containers": [{"id": "main", "image": "busybox"}]})
    update = applied_object(cellset(), stored)
    assert update is not None
    assert update.spec.template.spec is None


BIG = "x" * (ANNOTATIONS_MAX_BYTES - 100)


def test_a_manifest_too_large_to_record_is_refused() -> None:
    manifest = _cell({}, containers=[{"id": "main", "image": "busybox", "args": [BIG]}])
    with pytest.raises(RecordTooLargeError, match=LAST_APPLIED_ANNOTATION):
        with_last_applied(manifest)
    with pytest.raises(RecordTooLargeError, match="nothing was written"):
        applied_object(manifest, _stored(_cell({})))


def test_annotations_too_large_without_the_record_are_said_so() -> None:
    """300 KB of the manifest's own annotations: the refusal blamed the record and advised
    `create -f`, which the server then refused for the same annotations."""
    document = to_document(_cell({}))
    document["metadata"]["annotations"] = {"note": "x" * 300_000}
    manifest = parse_resource(document)
    with pytest.raises(RecordTooLargeError) as created:
        with_last_applied(manifest)
    with pytest.raises(RecordTooLargeError) as updated:
        applied_object(manifest, _stored(_cell({})))
    for refused in (created, updated):
        assert str(refused.value).startswith(
            "metadata.annotations: 300004 bytes of keys and values, more than 262144 "
            "(without the record apply adds)"
        )
        assert "create -f" not in str(refused.value)


def test_a_manifest_larger_than_an_object_is_said_so() -> None:
    """A 2 MB env value: the refusal advised `create -f` or `edit`, which record nothing,
    but the server refuses the object itself (413), so the advice led nowhere."""
    manifest = _cell(
        {}, containers=[{"id": "main", "image": "busybox", "env": ["X=" + "x" * 2_000_000]}]
    )
    with pytest.raises(RecordTooLargeError) as created:
        with_last_applied(manifest)
    with pytest.raises(RecordTooLargeError) as updated:
        applied_object(manifest, _stored(_cell({})))
    for refused in (created, updated):
        said = str(refused.value)
        assert said.startswith("the manifest is 20001")
        assert "more than the 1048576 bytes the server stores of one object" in said
        assert "create -f" not in said


class _Server:
    """A server with nothing stored: every create is counted."""

    def __init__(self) -> None:
        self.created: list[AnyResource] = []

    async def get(self, kind: Any, key: Any) -> AnyResource:
        raise ApiRequestError(404, "NotFound", "not found")

    async def create(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        if not dry_run:
            self.created.append(res)
        return res


async def test_the_applier_refuses_it_before_anything_is_written() -> None:
    big = _cell({}, containers=[{"id": "main", "image": "busybox", "args": [BIG]}])
    small = _cell({}).model_copy()
    documents = [Document("m.yaml", 0, small), Document("m.yaml", 1, big)]
    server = _Server()
    refusals = await server_refusals(server, documents)  # type: ignore[arg-type]
    assert len(refusals) == 1
    assert refusals[0].startswith("cell/web: metadata.annotations: "), refusals
    assert server.created == []
    lines: list[str] = []
    applier = Applier(client=server, reporter=Reporter(ok=lines.append, error=lines.append))  # type: ignore[arg-type]
    await applier.apply([documents[0]])
    assert [c.kind for c in server.created] == ["Realm", "Space", "Stack", "Cell"]
    created = server.created[-1]
    assert json.loads(created.metadata.annotations[LAST_APPLIED_ANNOTATION])["spec"]["realmId"]
    assert LAST_APPLIED_ANNOTATION not in server.created[0].metadata.annotations  # a default parent
