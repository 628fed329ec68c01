"""Manifest files: multi-document YAML, JSON, kind: List, errors with indices, round trips."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.api import (
    Cell,
    InvalidResource,
    ManifestError,
    Realm,
    Space,
    Stack,
    dump_manifests,
    load_manifests,
    parse_resource,
)
from kukeon.api.manifests import _ManifestLoader
from tests.unit.api.samples import cell_doc, container, realm_doc, space_doc, stack_doc
from tests.unit.api.test_models import KUKEON_EXAMPLES


def rich_resources() -> list[Realm | Space | Stack | Cell]:
    """Resources that use most fields, status included, for the round trips."""
    cell = cell_doc(
        "web",
        rootContainerId="app",
        tty={"default": "shell"},
        autoDelete=True,
        desiredState="Stopped",
        nodeName="node-1",
        nodeSelector={"disk": "ssd"},
        containers=[
            container(
                "app",
                command="/bin/sh",
                args=["-c", "sleep 1"],
                env=["A=1", "EMPTY="],
                workingDir="/srv",
                volumes=[
                    {"source": "/srv/html", "target": "/www", "readOnly": True},
                    {"kind": "tmpfs", "target": "/tmp", "sizeBytes": 1024, "mode": 0o1777},
                ],
                tmpfs=[{"path": "/run", "options": ["noexec"]}],
                capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                resources={"memoryLimitBytes": 1 << 30, "cpuShares": 512, "pidsLimit": 64},
                secrets=[{"name": "TOKEN", "fromEnv": "TOKEN"}],
                restartPolicy="on-failure",
                restartBackoffSeconds=1,
                restartMaxRetries=3,
                hostPID=True,
                readOnlyRootFilesystem=False,
                user="1000:1000",
                devices=["/dev/fuse"],
            ),
            container(
                "shell", attachable=True, tty={"prompt": "yes> ", "onInit": [{"script": "on"}]}
            ),
        ],
    )
    cell["metadata"].update(
        labels={"enabled": "yes", "date": "2026-01-01", "n": "0755"},
        annotations={"a": "on"},
        resourceVersion="17",
        generation=2,
        creationTimestamp="2026-01-02T03:04:05.123456Z",
        finalizers=["kukeon.io/cell"],
    )
    cell["status"] = {
        "state": "Ready",
        "readyObserved": True,
        "readyAt": "2026-01-02T03:04:06+00:00",
        "network": {"bridgeName": "k-0011aabb"},
        "containers": [{"id": "app", "state": "Ready", "pid": 7, "restartCount": 1}],
    }
    space = space_doc(
        "sandbox",
        cniConfigPath="/etc/cni/net.d",
        network={"egress": {"default": "deny", "allow": [{"cidr": "10.0.0.0/8", "ports": [443]}]}},
        defaults={
            "container": {"readOnlyRootFilesystem": True, "securityOpts": ["no-new-privileges"]}
        },
    )
    docs = [
        realm_doc(
            "main",
            registryCredentials=[
                {"username": "u", "passwordSecretRef": {"name": "reg", "key": "p"}}
            ],
        ),
        space,
        stack_doc("s", id="s"),
        cell,
    ]
    return [parse_resource(doc) for doc in docs]  # type: ignore[misc]


def test_multi_document_yaml_in_file_order_with_empty_documents_skipped() -> None:
    text = "\n---\n".join(
        [yaml.safe_dump(stack_doc("b")), "", "# a comment only", yaml.safe_dump(realm_doc("a"))]
    )
    resources = load_manifests("---\n" + text + "\n---\n")
    assert [(r.kind, r.metadata.name) for r in resources] == [("Stack", "b"), ("Realm", "a")]


def test_json_object_list_and_kind_list() -> None:
    assert load_manifests(json.dumps(realm_doc("a")))[0].metadata.name == "a"
    assert [
        r.metadata.name for r in load_manifests(json.dumps([realm_doc("a"), realm_doc("b")]))
    ] == ["a", "b"]
    as_list = {"apiVersion": "v1", "kind": "List", "items": [realm_doc("a"), space_doc("s")]}
    assert [r.kind for r in load_manifests(json.dumps(as_list))] == ["Realm", "Space"]
    assert [r.kind for r in load_manifests(yaml.safe_dump(as_list))] == ["Realm", "Space"]


def test_every_invalid_document_is_listed_with_its_index() -> None:
    text = yaml.safe_dump_all(
        [
            realm_doc("ok"),
            realm_doc("Bad"),
            "just a string",
            cell_doc(containers=[container(image="")]),
        ]
    )
    with pytest.raises(ManifestError) as info:
        load_manifests(text)
    errors = info.value.errors
    assert [index for index, _ in errors] == [1, 2, 3]
    assert isinstance(errors[0][1], InvalidResource)
    assert errors[1][1] == "a document must be a mapping, got str"
    assert str(info.value).splitlines()[-1] == (
        "document 3: Cell default/default/default/web: spec.containers[0].image: must not be empty"
    )


def test_yaml_syntax_errors_are_reported_at_their_document() -> None:
    with pytest.raises(ManifestError) as info:
        load_manifests(yaml.safe_dump(realm_doc("a")) + "---\nkind: [\n")
    assert info.value.errors[0][0] == 1
    assert "invalid YAML" in str(info.value.errors[0][1])


def test_duplicate_keys_are_an_error_and_later_documents_are_still_checked() -> None:
    text = "kind: Realm\napiVersion: v1beta1\nkind: Space\nmetadata: {name: a}\n---\n[1]\n"
    with pytest.raises(ManifestError) as info:
        load_manifests(text)
    assert [index for index, _ in info.value.errors] == [0, 1]
    assert "duplicate key 'kind'" in str(info.value)


def test_a_json_manifest_repeating_a_key_is_refused_as_yaml_is() -> None:
    """JSON's reader kept the last of a repeated key silently (`kukectl apply` created realm
    `b` from `{"name": "a", "name": "b"}`), where the same YAML is refused."""
    text = '[{"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": "a", "name": "b"}}]'
    with pytest.raises(ManifestError) as info:
        load_manifests(text)
    assert "invalid JSON: duplicate key 'name'" in str(info.value)


def test_yaml_1_2_scalars_like_kukeon() -> None:
    text = (
        "apiVersion: v1beta1\nkind: Realm\n"
        "metadata: {name: a, labels: {enabled: yes, off: no, day: 2026-01-01}}\n"
        "spec: {registryCredentials: [{username: on, password: off}]}\n"
    )
    (realm,) = load_manifests(text)
    assert realm.metadata.labels == {"enabled": "yes", "off": "no", "day": "2026-01-01"}
    assert realm.spec.registry_credentials[0].username == "on"


def test_base_60_numbers_are_text_as_kubectl_reads_them() -> None:
    """YAML 1.1 read `22:22` as 1342: a port mapping was refused as "got 1342"."""
    text = (
        "apiVersion: v1beta1\nkind: Cell\nmetadata: {name: c}\n"
        "spec: {realmId: r, spaceId: s, stackId: t, containers: [{id: a, image: b,"
        " ports: [22:22], args: [1:30, 190:20:30.15]}]}\n"
    )
    (cell,) = load_manifests(text)
    container = cell.spec.containers[0]
    assert container.ports == ["22:22"]
    assert container.args == ["1:30", "190:20:30.15"]
    numbers = yaml.load("[0644, 0x1F, 1_000, -7, 1.5]", Loader=_ManifestLoader)
    assert numbers == [0o644, 31, 1000, -7, 1.5]  # .inf is refused: JSON has no infinity


def test_a_manifest_may_be_read_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "realm.yaml"
    path.write_text(yaml.safe_dump(realm_doc("from-file")))
    assert load_manifests(path)[0].metadata.name == "from-file"
    assert load_manifests(str(path))[0].metadata.name == "from-file"
    with pytest.raises(FileNotFoundError):
        load_manifests(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_load_dump_load_is_equal(fmt: str) -> None:
    resources = rich_resources()
    text = dump_manifests(resources, fmt=fmt)  # type: ignore[arg-type]
    again = load_manifests(text)
    assert again == resources
    assert dump_manifests(again, fmt=fmt) == text  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_kukeon_examples_round_trip(fmt: str) -> None:
    resources = load_manifests(KUKEON_EXAMPLES)
    again = load_manifests(dump_manifests(resources, fmt=fmt))  # type: ignore[arg-type]
    # An inline registry password is never written out: it comes back as "***", which an
    # update through the API reads as "keep the stored password".
    realm = resources[0]
    assert isinstance(realm, Realm)
    assert realm.spec.registry_credentials[0].password == "mypass"
    redacted = realm.spec.registry_credentials[0].model_copy(update={"password": "***"})
    expected_spec = realm.spec.model_copy(update={"registry_credentials": [redacted]})
    assert again == [realm.model_copy(update={"spec": expected_spec}), *resources[1:]]


def test_dumped_yaml_uses_the_full_api_version_and_strings_stay_strings() -> None:
    text = dump_manifests(rich_resources())
    assert text.startswith("---\napiVersion: kukeon.io/v1beta1\n")
    assert "enabled: 'yes'" in text


def test_dump_of_nothing_and_unknown_format() -> None:
    assert dump_manifests([]) == ""
    assert load_manifests(dump_manifests([])) == []
    assert dump_manifests([], fmt="json") == "[]\n"
    with pytest.raises(ValueError, match="unknown manifest format"):
        dump_manifests([], fmt="toml")  # type: ignore[arg-type]


@pytest.mark.parametrize("character", ["\x00", "\x07", "\ufffe", "\x85\x00"])
def test_a_character_yaml_refuses_is_a_manifest_error(character: str) -> None:
    # PyYAML's reader refuses these when the loader is made, before the first document:
    # that ReaderError escaped (kukectl apply: 'unexpected failure: ReaderError', the web
    # console's manifest check: a 500).
    with pytest.raises(ManifestError) as info:
        load_manifests(f"kind: Cell\nmetadata:\n  name: a{character}b\n")
    assert info.value.errors[0][0] == 0
    assert "invalid YAML" in str(info.value.errors[0][1])


@settings(max_examples=300)
@given(st.text())
def test_any_text_is_resources_or_a_manifest_error(tail: str) -> None:
    with contextlib.suppress(ManifestError):
        load_manifests("kind: Realm\n" + tail)


@pytest.mark.parametrize(
    ("text", "read_as", "said"),
    [
        ("[" * 100_000, "auto", "invalid JSON: nested too deeply"),
        ('{"a":' * 100_000, "auto", "invalid JSON: nested too deeply"),
        ("[" * 100_000, "json", "invalid JSON: nested too deeply"),  # a file named *.json
        # libyaml stops at 1,000 levels, naming the line and column.
        ("kind: Realm\n---\n" + "- " * 10_000 + "1\n", "auto", "exceeded maximum nesting"),
        ("kind: Realm\n---\n" + "[" * 10_000, "auto", "exceeded maximum nesting"),
    ],
)
def test_a_manifest_nested_past_the_recursion_limit_is_a_manifest_error(
    text: str, read_as: Literal["auto", "json"], said: str
) -> None:
    """`kukectl apply -f` of such a file was 'unexpected failure: RecursionError', exit 1."""
    with pytest.raises(ManifestError) as info:
        load_manifests(text, syntax=read_as)
    assert said in str(info.value.errors[-1][1])
