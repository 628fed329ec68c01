"""A file named `*.json` is read as JSON, not as YAML: a trailing comma (which YAML's flow
style accepts, maybe in another shape) is an error naming its line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.cli.manifests import load_documents, read_sources
from kukeon.cli.runner import ManifestProblems

REALM = '{\n  "apiVersion": "v1beta1",\n  "kind": "Realm",\n  "metadata": {"name": "r"},\n}\n'


def _problems(path: Path) -> list[str]:
    with pytest.raises(ManifestProblems) as caught:
        load_documents(read_sources([str(path)]))
    return caught.value.lines


def test_a_trailing_comma_in_a_json_file_is_named_with_its_line_and_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "realm.json"
    path.write_text(REALM)
    assert _problems(path) == [
        f"{path}: document 0: invalid JSON: Expecting property name enclosed in double "
        "quotes: line 5 column 1 (char 77)"
    ]


def test_yaml_in_a_json_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "realm.json"
    path.write_text("apiVersion: v1beta1\nkind: Realm\nmetadata: {name: r}\n")
    (problem,) = _problems(path)
    assert "invalid JSON: Expecting value: line 1 column 1 (char 0)" in problem


def test_a_json_file_holds_one_document_a_list_or_a_stream(tmp_path: Path) -> None:
    one = '{"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": "a"}}'
    two = one.replace('"a"', '"b"')
    for text, names in (
        (one, ["a"]),
        (f"[{one}, {two}]", ["a", "b"]),
        (f"\ufeff{one}\n{two}\n", ["a", "b"]),
    ):
        path = tmp_path / "realms.json"
        path.write_text(text)
        documents = load_documents(read_sources([str(path)]))
        assert [d.resource.metadata.name for d in documents] == names


def test_other_sources_still_read_yaml_flow_style(tmp_path: Path) -> None:
    path = tmp_path / "realm.yaml"
    path.write_text(REALM)  # YAML's flow mapping takes the trailing comma
    assert [d.resource.metadata.name for d in load_documents(read_sources([str(path)]))] == ["r"]
