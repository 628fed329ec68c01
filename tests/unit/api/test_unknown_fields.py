"""A lenient parse (the API's fieldValidation=Warn|Ignore, kukectl's --validate=warn|ignore)
drops exactly the fields no model knows, names each as it was sent, and refuses anything
else as the strict parse does; the document given is never changed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.api import InvalidResource, parse_resource, to_document


def _cell() -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "web", "labels": {"a": "b"}},
        "spec": {
            "containers": [
                {
                    "id": "main",
                    "image": "nginx:1",
                    "root": True,
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                    "env": ["A=1"],
                }
            ],
            "tty": {"default": None},
        },
    }


def _objects(doc: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every object of ``doc`` that belongs to a model (not a map of labels or the like)
    with its path."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(doc, dict):
        found.append((path, doc))
        for key, value in doc.items():
            if key in ("labels", "annotations"):
                continue
            found += _objects(value, f"{path}.{key}" if path else key)
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _objects(value, f"{path}[{index}]")
    return found


_NAMES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12
).filter(lambda name: name not in ("default",))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_unknown_fields_are_dropped_and_named(data: st.DataObject) -> None:
    doc = _cell()
    expected = to_document(parse_resource(doc))
    objects = _objects(doc)
    added: list[str] = []
    for _ in range(data.draw(st.integers(1, 6))):
        path, target = data.draw(st.sampled_from(objects))
        name = "x" + data.draw(_NAMES)  # no field of any model begins with x
        if name in target:
            continue
        target[name] = data.draw(st.one_of(st.integers(), st.text(max_size=5), st.just({"y": 1})))
        added.append(f"{path}.{name}" if path else name)
    before = copy.deepcopy(doc)
    with pytest.raises(InvalidResource) as refused:
        parse_resource(doc)
    assert sorted(c.field for c in refused.value.causes) == sorted(added)
    unknown: list[str] = []
    res = parse_resource(doc, unknown_fields=unknown)
    assert sorted(unknown) == sorted(added)
    assert to_document(res) == expected
    assert doc == before  # the caller's document is untouched


def test_other_mistakes_are_refused_by_a_lenient_parse() -> None:
    doc = _cell()
    doc["spec"]["containers"][0]["image"] = 5
    doc["spec"]["bogus"] = 1
    unknown: list[str] = []
    with pytest.raises(InvalidResource) as refused:
        parse_resource(doc, unknown_fields=unknown)
    assert [c.field for c in refused.value.causes] == ["spec.containers[0].image"]
    assert unknown == ["spec.bogus"]


def test_an_unknown_field_is_named_as_sent() -> None:
    """It was shown as its camelCase alias: `spec.foo_bar` read `spec.fooBar`."""
    doc = _cell()
    doc["spec"]["foo_bar"] = 1
    with pytest.raises(InvalidResource) as refused:
        parse_resource(doc)
    assert [c.field for c in refused.value.causes] == ["spec.foo_bar"]
