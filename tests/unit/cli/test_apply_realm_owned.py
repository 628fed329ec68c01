"""`kukectl apply` of a realm manifest keeps what an admin set and the manifest leaves out
(the security level, the quota): an editor re-applying their realm's manifest is not
refused for "changing" them, and one admin's apply does not drop another's quota."""

from __future__ import annotations

from typing import Any

from kukeon.api import Realm, parse_resource
from kukeon.api.applying import updated_object


def _realm(spec: dict[str, Any], **labels: str) -> Realm:
    found = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": "team", "labels": labels, "resourceVersion": "7"},
            "spec": spec,
        }
    )
    assert isinstance(found, Realm)
    return found


def test_an_apply_without_quota_or_level_keeps_them() -> None:
    stored = _realm({"securityLevel": "baseline", "quota": {"objects": 50}})
    assert updated_object(_realm({}), stored) is None
    relabelled = updated_object(_realm({}, tier="a"), stored)
    assert isinstance(relabelled, Realm)
    assert relabelled.spec.quota is not None
    assert relabelled.spec.quota.objects == 50
    assert relabelled.spec.security_level == "baseline"


def test_an_apply_that_names_a_quota_sets_it() -> None:
    stored = _realm({"quota": {"objects": 50}})
    raised = updated_object(_realm({"quota": {"objects": 80, "storageBytes": 1000}}), stored)
    assert isinstance(raised, Realm)
    assert raised.spec.quota is not None
    assert (raised.spec.quota.objects, raised.spec.quota.storage_bytes) == (80, 1000)
