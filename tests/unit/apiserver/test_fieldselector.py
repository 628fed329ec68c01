"""Field selectors: the fields each kind supports, = / == / !=, and a clear refusal."""

from __future__ import annotations

import pytest

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.apiserver.fieldselector import FieldSelectorError, parse_field_selector


def _cell(name: str, state: str, node: str | None) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "nodeName": node,
                "containers": [{"id": "a", "image": "busybox"}],
            },
            "status": {"state": state},
        }
    )


CELLS = [_cell("a", "Ready", "n1"), _cell("b", "Failed", "n2"), _cell("c", "Ready", None)]


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("", ["a", "b", "c"]),
        ("status.state=Ready", ["a", "c"]),
        ("status.state==Ready,spec.nodeName!=n1", ["c"]),
        ("spec.nodeName=", ["c"]),
        ("metadata.name=b", ["b"]),
        ("metadata.name!=b, status.state = Ready", ["a", "c"]),
    ],
)
def test_selects(selector: str, names: list[str]) -> None:
    chosen = parse_field_selector(Kind.CELL, selector)
    assert [c.metadata.name for c in CELLS if chosen.matches(c)] == names


@pytest.mark.parametrize(
    ("kind", "selector", "named"),
    [
        (Kind.CELL, "spec.bogus=1", "spec.bogus"),
        (Kind.REALM, "spec.nodeName=n1", "spec.nodeName"),
        (Kind.SECRET, "status.state=Ready", "status.state"),
        (Kind.CELL, "status.state", "status.state"),
    ],
)
def test_unsupported_fields_are_refused_by_name(kind: Kind, selector: str, named: str) -> None:
    with pytest.raises(FieldSelectorError, match=named.replace(".", r"\.")):
        parse_field_selector(kind, selector)
