"""Realm limits under which no container starts are refused on the write, naming the field.

Seen on a private kukeond: spec.limits.memoryBytes 1048576 left every new container's runc
init OOM-killed, spec.limits.pids 1 and 4 made runc fail ("can't get final child's PID
from pipe: EOF", "read init-p: connection reset by peer"); 6 started a container.
"""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import Realm
from kukeon.apiserver.realmrules import realm_causes


def _realm(**limits: Any) -> Realm:
    return Realm.model_validate(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": "r"},
            "spec": {"limits": limits},
        }
    )


@pytest.mark.parametrize(
    ("limits", "field", "words"),
    [
        ({"memoryBytes": 1 << 20}, "spec.limits.memoryBytes", "at least 6291456 bytes"),
        ({"memoryBytes": (6 << 20) - 1}, "spec.limits.memoryBytes", "OOM-killed"),
        ({"pids": 1}, "spec.limits.pids", "at least 8, got 1"),
        ({"pids": 7}, "spec.limits.pids", "runc's init holds up to 6"),
    ],
)
def test_a_limit_no_container_starts_under_is_refused(
    limits: dict[str, int], field: str, words: str
) -> None:
    causes = realm_causes(_realm(**limits), None)
    assert [cause.field for cause in causes] == [field]
    assert words in causes[0].message


@pytest.mark.parametrize("limits", [{"memoryBytes": 6 << 20, "pids": 8}, {}, {"pids": 4194304}])
def test_limits_at_the_floors_pass(limits: dict[str, int]) -> None:
    assert realm_causes(_realm(**limits), None) == []


def test_a_limit_stored_before_stays_writable() -> None:
    stored = _realm(memoryBytes=1 << 20, pids=2)
    assert realm_causes(_realm(memoryBytes=1 << 20, pids=2), stored) == []
    causes = realm_causes(_realm(memoryBytes=1 << 20, pids=3), stored)
    assert [cause.field for cause in causes] == ["spec.limits.pids"]
