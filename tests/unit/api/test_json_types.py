"""Every boolean, integer and text field of every API model takes JSON's type only, as
kube-apiserver decodes a document ("cannot unmarshal string into Go value of type bool"):
pydantic's lax mode took "yes", "1", "off" and 1 for a boolean, "5" and true for an
integer. A number written with a decimal point (5.0) is refused, as Go's JSON decoder
refuses it for an int64 and as the integer fields refused it before; a plain YAML ``yes``/``off``
(YAML 1.1's booleans, read as text: ``api.yamlread``) is its boolean in a boolean field
and its text elsewhere."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing
from functools import cache
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

import kukeon.api
from kukeon.api import InvalidResource, parse_resource
from kukeon.api.meta import KukeonModel
from kukeon.api.validation import field_errors_from_pydantic
from kukeon.api.yamlread import load_yaml
from kukeon.api.yamlwords import YamlBoolWord


def _models() -> list[type[KukeonModel]]:
    found: dict[str, type[KukeonModel]] = {}
    for module_info in pkgutil.iter_modules(kukeon.api.__path__):
        module = importlib.import_module(f"kukeon.api.{module_info.name}")
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, KukeonModel) and value is not KukeonModel:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


def _scalar(annotation: Any) -> type | None:
    """bool, int or str when ``annotation`` is one of them (optional or annotated), else None."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar(members[0]) if len(members) == 1 else None
    return annotation if annotation in (bool, int, str) else None


@cache
def _fields() -> dict[type, list[tuple[str, TypeAdapter[Any]]]]:
    """Every model field by its scalar type, each as a TypeAdapter of its annotation and
    constraints (``rebuild_annotation``: what the model validates the field's value with)."""
    by_type: dict[type, list[tuple[str, TypeAdapter[Any]]]] = {bool: [], int: [], str: []}
    for model in _models():
        model.model_rebuild()
        for name, field in model.model_fields.items():
            scalar = _scalar(field.annotation)
            if scalar is not None:
                adapter: TypeAdapter[Any] = TypeAdapter(field.rebuild_annotation())
                by_type[scalar].append((f"{model.__qualname__}.{name}", adapter))
    return by_type


_INTEGER = "must be a JSON integer (no quotes, no decimal point, not true or false)"


def _refused(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return True
    return False


def test_every_kind_of_field_is_found() -> None:
    fields = _fields()
    names = {kind: {name for name, _ in found} for kind, found in fields.items()}
    assert "CellSpec.auto_delete" in names[bool]
    assert "ContainerSpec.privileged" in names[bool]
    assert "Resources.pids_limit" in names[int]
    assert "CellSetStatus.replicas" in names[int]  # lax before
    assert "ContainerSpec.working_dir" in names[str]
    assert len(names[bool]) > 20
    assert len(names[int]) > 40


@given(
    st.one_of(
        st.text(),
        st.sampled_from(["yes", "no", "on", "off", "true", "false", "1", "0", "True", "y"]),
        st.integers(),
        st.floats(allow_nan=False),
    )
)
def test_a_boolean_field_takes_only_true_or_false(value: Any) -> None:
    for name, adapter in _fields()[bool]:
        assert _refused(adapter, value), (name, value)
        assert adapter.validate_python(True) is True, name


@given(
    st.one_of(
        st.text(),
        st.integers().map(str),
        st.booleans(),
        st.floats(allow_nan=False),
    )
)
def test_an_integer_field_takes_no_text_boolean_or_number_with_a_point(value: Any) -> None:
    for name, adapter in _fields()[int]:
        if name.endswith("Action.port") and isinstance(value, str) and value.isdigit():
            continue  # a probe's port: kukeon's own reading of Kubernetes' int-or-name
        assert _refused(adapter, value), (name, value)


@given(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans()))
def test_a_text_field_takes_no_number_or_boolean(value: Any) -> None:
    for name, adapter in _fields()[str]:
        assert _refused(adapter, value), (name, value)


def test_a_plain_yaml_boolean_word_is_a_boolean_only_where_one_is_asked() -> None:
    for word, meaning in (("yes", True), ("On", True), ("OFF", False), ("no", False)):
        for name, adapter in _fields()[bool]:
            assert adapter.validate_python(YamlBoolWord(word)) is meaning, name
        for name, adapter in _fields()[str]:
            try:
                text = adapter.validate_python(YamlBoolWord(word))
            except ValidationError:
                continue  # the field's own rule (a DNS label, a path...) refused the text
            assert text == word, name
            assert type(text) is str, name


def _cell(auto_delete: str) -> str:
    return (
        "apiVersion: kukeon.io/v1beta1\nkind: Cell\nmetadata: {name: c, labels: {a: on}}\n"
        f"spec:\n  autoDelete: {auto_delete}\n  containers: [{{id: a, image: busybox}}]\n"
    )


def test_a_manifest_reads_plain_yes_as_true_and_quoted_yes_as_text() -> None:
    cell = parse_resource(load_yaml(_cell("yes")))
    assert cell.spec.auto_delete is True
    assert cell.metadata.labels == {"a": "on"}
    assert parse_resource(load_yaml(_cell("off"))).spec.auto_delete is False
    for written in ("'yes'", '"on"', "1", "'true'"):
        with pytest.raises(InvalidResource) as refused:
            parse_resource(load_yaml(_cell(written)))
        assert [cause.field for cause in refused.value.causes] == ["spec.autoDelete"]
        assert "must be a boolean, true or false" in refused.value.causes[0].message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", f"{_INTEGER}, got '5'"),
        (True, f"{_INTEGER}, got true"),
        (5.5, f"{_INTEGER}, got 5.5"),
        (5.0, f"{_INTEGER}, got 5.0"),
    ],
)
def test_the_refusal_names_the_rule_and_the_value(value: Any, message: str) -> None:
    [(_, adapter)] = [f for f in _fields()[int] if f[0] == "Resources.pids_limit"]
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python(value)
    [error] = field_errors_from_pydantic(refused.value)
    assert error.message == message


def test_a_timestamp_is_text_not_a_number() -> None:
    document = load_yaml(_cell("true"))
    document["metadata"]["creationTimestamp"] = 1_700_000_000
    with pytest.raises(InvalidResource) as refused:
        parse_resource(document)
    assert [cause.field for cause in refused.value.causes] == ["metadata.creationTimestamp"]
    assert "RFC 3339" in refused.value.causes[0].message
    document["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert parse_resource(document).metadata.creation_timestamp is not None
