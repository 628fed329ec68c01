"""kukectl explain: fields, types and descriptions from the models' schema (no server)."""

from __future__ import annotations

import functools

import pytest

from kukeon.api import Kind
from kukeon.api.schema import crd, structural_schema
from kukeon.cli import explain
from kukeon.cli.explain import render, type_name
from kukeon.cli.main import main


def kukectl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_kind_page_lists_top_level_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = kukectl(capsys, "explain", "cells")
    assert (code, err) == (0, "")
    assert out.startswith("GROUP:      kukeon.io\nKIND:       Cell\nVERSION:    v1beta1\n")
    fields = [line.split("\t")[0].strip() for line in out.splitlines() if "\t<" in line]
    assert fields == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert "  spec\t<Object> -required-\n" in out


def test_field_page_type_description_and_subfields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = kukectl(capsys, "explain", "cell.spec.containers")
    assert code == 0
    assert "FIELD: containers <[]Object>\n" in out
    # A list's description is its elements' when the field has none of its own.
    assert "DESCRIPTION:\n    One container of a cell" in out
    assert "  id\t<string> -required-\n    The container's name, unique in its cell.\n" in out
    assert "  image\t<string> -required-\n" in out
    assert "  env\t<[]string>\n" in out


def test_leaf_shows_enum_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = kukectl(capsys, "explain", "ce.spec.containers.restartPolicy")
    assert code == 0
    assert "FIELD: restartPolicy <string>\n" in out
    assert "ENUM:    always, on-failure, never\n" in out
    assert "DEFAULT: never\n" in out
    assert "FIELDS:" not in out


def test_metadata_has_its_fields_here_though_the_crd_has_none() -> None:
    assert crd(Kind.REALM)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "metadata"
    ] == {"type": "object"}
    page = render(Kind.REALM, ["metadata"])
    assert "  labels\t<map[string]string>\n" in page
    assert "  name\t<string> -required-\n" in page


def test_recursive_prints_the_tree(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = kukectl(capsys, "explain", "cell.spec", "--recursive")
    assert code == 0
    assert "  containers\t<[]Object> -required-\n    id\t<string> -required-\n" in out
    assert "    volumes\t<[]Object>\n      kind\t<string>\n" in out
    assert "      target\t<string> -required-\n" in out
    # Every field of the schema appears, each once per place.
    lines = [line for line in out.split("FIELDS:\n")[1].splitlines() if line]
    assert all("\t<" in line for line in lines)


def test_unknown_field_is_exit_1_naming_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = kukectl(capsys, "explain", "cell.spec.containerz")
    assert (code, out) == (1, "")
    assert 'cell.spec.containerz: field "containerz" does not exist in cell.spec' in err
    assert "containers" in err  # the fields that do exist
    code, _, err = kukectl(capsys, "explain", "cell.spec.desiredState.more")
    assert code == 1
    assert "cell.spec.desiredState" in err


def test_bad_kind_or_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = kukectl(capsys, "explain", "pods")
    assert code == 2
    assert "unknown kind 'pods'" in err
    code, _, err = kukectl(capsys, "explain", "cell..spec")
    assert code == 2
    code, _, _ = kukectl(capsys, "explain")
    assert code == 2


@pytest.mark.parametrize(
    ("node", "name"),
    [
        ({"type": "string"}, "string"),
        ({"type": "array", "items": {"type": "string"}}, "[]string"),
        ({"type": "array", "items": {"type": "object", "properties": {}}}, "[]Object"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "map[string]string"),
        ({"type": "object", "properties": {"a": {"type": "integer"}}}, "Object"),
    ],
)
def test_type_names(node: dict[str, object], name: str) -> None:
    assert type_name(node) == name


def test_every_field_of_every_kind_can_be_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    # render() builds the kind's schema each time (once per kukectl run); for ~750 pages
    # that was 14 s. The schema is a pure function of the kind: build each once.
    monkeypatch.setattr(explain, "structural_schema", functools.cache(structural_schema))

    def walk(node: dict[str, object], path: list[str]) -> int:
        count = 1
        render(kind, path)
        element = node
        while True:
            if element.get("type") == "array" and isinstance(element.get("items"), dict):
                element = element["items"]  # type: ignore[assignment]
            elif isinstance(element.get("additionalProperties"), dict) and not element.get(
                "properties"
            ):
                element = element["additionalProperties"]  # type: ignore[assignment]
            else:
                break
        properties = element.get("properties")
        if isinstance(properties, dict):
            for name, child in properties.items():
                count += walk(child, [*path, name])
        return count

    for kind in Kind:
        assert walk(structural_schema(kind, with_metadata=True), []) > 3


def test_a_fields_line_is_not_cut_at_an_abbreviation() -> None:
    """A field's line in FIELDS is its description's first sentence, and "e.g." ends none:
    it read "Permissions of a tmpfs root, e.g." (and "... (e.g." for tmpfs options)."""
    volumes = render(Kind.CELL, ["spec", "containers", "volumes"])
    assert "  mode\t<integer>\n    Permissions of a tmpfs root, e.g. 0755; a bind" in volumes
    devices = render(Kind.CELL, ["spec", "containers"])
    assert "at the same path, e.g. `/dev/kvm`.\n" in devices
    # A sentence still ends at its period.
    assert "  id\t<string> -required-\n    The container's name, unique in its cell.\n" in devices
