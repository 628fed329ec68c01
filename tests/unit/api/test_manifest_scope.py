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


def _parents(
    text: str, *, scope: dict[str, str] | None = None, defaults: dict[str, str] | None = None
) -> tuple[str, str, str]:
    [cell] = load_manifests(text, scope=scope, defaults=defaults)
    assert isinstance(cell, Cell)
    return (cell.spec.realm_id, cell.spec.space_id, cell.spec.stack_id)


CONTEXT = {"realm": "shop", "space": "web", "stack": "front"}


def test_the_contexts_scope_fills_what_a_document_names_not_and_never_refuses() -> None:
    """kukectl's context, as kubectl's context namespace: a default, never a contradiction."""
    assert _parents(CELL, defaults=CONTEXT) == ("shop", "web", "front")
    named = CELL.replace("spec:\n", "spec:\n  realmId: staging\n")
    # another realm: the context's space and stack are not of it
    assert _parents(named, defaults=CONTEXT) == ("staging", "default", "default")
    ours = CELL.replace("spec:\n", "spec:\n  realmId: shop\n  spaceId: api\n")
    assert _parents(ours, defaults=CONTEXT) == ("shop", "api", "default")
    # typed options beat the context; the context's space is of its realm only
    assert _parents(CELL, scope={"realm": "prod"}, defaults=CONTEXT) == (
        "prod",
        "default",
        "default",
    )
    assert _parents(CELL, scope={"stack": "back"}, defaults=CONTEXT) == ("shop", "web", "back")
    # a context naming a space only: a space of the default realm
    assert _parents(CELL, defaults={"space": "web"}) == ("default", "web", "default")
