"""`resources.ephemeralStorageLimitBytes`: 0 (unset) or 1 MiB to int64's largest, an
integer; anything else is refused naming the field (a 422 from the API)."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import parse_resource

from .test_bounds import C, cell, fields

FIELD = "ephemeralStorageLimitBytes"


@pytest.mark.parametrize(
    "value", [-1, 1, 1024 * 1024 - 1, 2**63, 1e9, 4.5, "4Mi", "1048576", True, [1]]
)
def test_out_of_range_or_not_an_integer_is_refused(value: Any) -> None:
    assert fields(cell({"resources": {FIELD: value}})) == [f"{C}.resources.{FIELD}"]


@pytest.mark.parametrize("value", [None, 0, 1024 * 1024, 5 * 1024**3, 2**63 - 1])
def test_unset_zero_and_in_range_are_kept(value: int | None) -> None:
    parsed = parse_resource(cell({"resources": {FIELD: value}}))
    resources = parsed.spec.containers[0].resources
    assert resources is not None
    assert resources.ephemeral_storage_limit_bytes == value


def test_a_space_default_and_a_template_refuse_it_alike() -> None:
    space = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Space",
        "metadata": {"name": "s"},
        "spec": {"realmId": "r", "defaults": {"container": {"resources": {FIELD: 5}}}},
    }
    assert fields(space) == [f"spec.defaults.container.resources.{FIELD}"]
