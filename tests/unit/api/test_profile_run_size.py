"""A run's values may not make its cell larger than a document can be: refused, naming the
parameter, before the cell is made (a value at each of many references multiplies it)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kukeon.api import CellProfile, parse_resource
from kukeon.api.profilerun import (
    MAX_CELL_BYTES,
    ParameterErrors,
    cell_document,
    parameter_values,
)
from kukeon.store.decoding import MAX_DOCUMENT_BYTES


def profile(args: list[str], *names: str) -> CellProfile:
    document: dict[str, Any] = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellProfile",
        "metadata": {"name": "p", "realm": "r"},
        "spec": {
            "parameters": [{"name": name} for name in names],
            "cell": {
                "containers": [{"id": "main", "image": "busybox", "command": "sh", "args": args}]
            },
        },
    }
    parsed = parse_resource(document)
    assert isinstance(parsed, CellProfile)
    return parsed


def test_the_limit_is_the_registrys() -> None:
    assert MAX_CELL_BYTES == MAX_DOCUMENT_BYTES


def test_a_value_at_many_references_is_refused_before_the_cell_is_made() -> None:
    many = profile(["-c", "${X}" * 20_000, "${Y}"], "X", "Y")
    started = time.perf_counter()
    with pytest.raises(ParameterErrors) as refused:
        parameter_values(many, {"X": "a" * 900_000, "Y": "b"})
    # counted, not built: 18 GB of text would take minutes and the memory of the node
    assert time.perf_counter() - started < 2
    assert [cause.field for cause in refused.value.causes] == ["parameters.X"]
    assert "20000 references" in refused.value.causes[0].message
    assert str(MAX_CELL_BYTES) in refused.value.causes[0].message


def test_each_parameter_that_makes_it_too_large_is_named() -> None:
    two = profile(["${X}", "${Y}", "${Z}"], "X", "Y", "Z")
    with pytest.raises(ParameterErrors) as refused:
        parameter_values(two, {"X": "a" * 600_000, "Y": "b" * 600_000, "Z": "c"})
    assert sorted(cause.field for cause in refused.value.causes) == [
        "parameters.X",
        "parameters.Y",
    ]


def test_values_that_fit_make_the_cell() -> None:
    fits = profile(["-c", "${X}" * 10, "$${X}"], "X")
    values = parameter_values(fits, {"X": "a" * (MAX_CELL_BYTES // 20)})
    cell = cell_document(fits, scope=("r", "s", "st"), name="n", values=values)
    assert cell["spec"]["containers"][0]["args"][1] == "a" * (MAX_CELL_BYTES // 20) * 10
    assert cell["spec"]["containers"][0]["args"][2] == "${X}"  # a literal: no reference
