"""`kukectl apply -f --realm/--space/--stack` (kubectl's -n): the parents of the documents
that name none, refused where a document names another (`api.manifests.in_scope`)."""

from __future__ import annotations

import pytest

from kukeon.api import Cell, Secret, Space
from kukeon.api.manifests import ManifestError, load_manifests

CELL = """
apiVersion: kukeon.io/v1beta1
kind: Cell
metadata: {name: web}
spec:
  containers: [{id: m, image: busybox}]
"""


def test_documents_naming_no_parents_take_the_scopes() -> None:
    [cell] = load_manifests(CELL, scope={"realm": "prod", "space": "edge", "stack": "site"})
    assert isinstance(cell, Cell)
    assert (cell.spec.realm_id, cell.spec.space_id, cell.spec.stack_id) == ("prod", "edge", "site")
    [partial] = load_manifests(CELL, scope={"realm": "prod"})
    assert isinstance(partial, Cell)
    assert (partial.spec.realm_id, partial.spec.space_id) == ("prod", "default")


def test_each_kind_takes_the_levels_it_has() -> None:
    text = """
apiVersion: v1beta1
kind: Realm
metadata: {name: prod}
---
apiVersion: v1beta1
kind: Space
metadata: {name: edge}
---
apiVersion: v1beta1
kind: Secret
metadata: {name: token}
data: {a: YQ==}
"""
    realm, space, secret = load_manifests(text, scope={"realm": "prod", "space": "edge"})
    assert realm.metadata.name == "prod"
    assert isinstance(space, Space)
    assert space.spec.realm_id == "prod"
    assert isinstance(secret, Secret)
    assert (secret.metadata.realm, secret.metadata.space) == ("prod", "edge")


def test_a_document_naming_another_parent_is_refused() -> None:
    text = CELL.replace("spec:\n", "spec:\n  realmId: staging\n")
    with pytest.raises(ManifestError) as raised:
        load_manifests(text, scope={"realm": "prod"})
    [(index, error)] = raised.value.errors
    assert index == 0
    assert "spec.realmId is 'staging' but --realm is 'prod'" in str(error)
    same = CELL.replace("spec:\n", "spec:\n  realmId: prod\n")
    assert load_manifests(same, scope={"realm": "prod"})
