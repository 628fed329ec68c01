"""The API's validation messages show a value as the user wrote it in JSON or YAML
(``true``, ``null``; not pydantic's Python ``True``, ``None``), and a resource limit where
0 means unset states its whole rule to a negative, not only its ``>= 0``."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import FieldError
from tests.unit.api.samples import cell_doc, container
from tests.unit.api.test_validation import one_cause


@pytest.mark.parametrize(
    ("value", "shown"), [(True, "true"), (False, "false"), (None, "null"), (1.5, "1.5")]
)
def test_a_wrong_typed_value_is_shown_as_json_writes_it(value: Any, shown: str) -> None:
    doc = cell_doc(containers=[container(args=[value])])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].args[0]", f"must be a valid string, got {shown}"
    )


@pytest.mark.parametrize(
    ("field", "rule"),
    [
        ("memoryLimitBytes", "6291456 bytes and 9223372036854775807 bytes"),
        ("cpuLimitMillicores", "10 millicores and 1000000 millicores"),
        ("cpuShares", "2 and 262144"),
        ("pidsLimit", "1 and 4194304"),
        ("ephemeralStorageLimitBytes", "1048576 bytes and 9223372036854775807 bytes"),
    ],
)
def test_a_negative_limit_states_that_0_is_unset(field: str, rule: str) -> None:
    doc = cell_doc(containers=[container(resources={field: -1})])
    assert one_cause(doc) == FieldError(
        f"spec.containers[0].resources.{field}", f"must be 0 (unset) or between {rule}, got -1"
    )


def test_a_limit_of_the_wrong_type_is_still_a_type_error() -> None:
    doc = cell_doc(containers=[container(resources={"pidsLimit": True})])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].resources.pidsLimit",
        "must be a JSON integer (no quotes, no decimal point, not true or false), got true",
    )
