"""Every valid name makes an identifier containerd takes: its container ids and realm
namespaces are at most 76 characters of letters and digits joined by single '.', '_' or '-',
while DNS labels may hold '--' and four of them joined reach 255 characters."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kukeon.api import Realm
from kukeon.api.container import containerd_container_id, is_containerd_identifier
from kukeon.api.realm import default_namespace

# containerd's own rule (pkg/identifiers): the regular expression and the length.
CONTAINERD = re.compile(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")

labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def _containerd_takes(name: str) -> bool:
    return len(name) <= 76 and CONTAINERD.match(name) is not None


@given(labels, labels, labels, labels)
def test_every_cells_container_has_an_id_containerd_takes(
    space: str, stack: str, cell: str, container: str
) -> None:
    found = containerd_container_id(space=space, stack=stack, cell=cell, container=container)
    assert _containerd_takes(found)
    assert is_containerd_identifier(found)
    natural = f"{space}_{stack}_{cell}_{container}"
    if _containerd_takes(natural):
        assert found == natural  # what existing containers are called does not change
    else:
        assert "." in found  # no natural id holds a '.': a shortened one is never another's
    again = containerd_container_id(space=space, stack=stack, cell=cell, container=container)
    assert again == found


@given(labels, st.sampled_from(["", "b5a911"]))
def test_every_realm_has_a_namespace_containerd_takes(realm: str, instance: str) -> None:
    found = default_namespace(realm, instance)
    assert _containerd_takes(found)
    assert found.endswith(".kukeon.io")
    natural = f"{realm}.{instance}.kukeon.io" if instance else f"{realm}.kukeon.io"
    if _containerd_takes(natural):
        assert found == natural
    else:
        assert "_" in found


def test_shortened_ids_differ_where_the_names_do() -> None:
    long = "a" * 63
    first = containerd_container_id(space="s", stack="st", cell=long, container=long)
    second = containerd_container_id(space="s", stack="st", cell=long, container=long[:-1] + "b")
    assert first != second
    assert containerd_container_id(space="s", stack="st", cell="x--y", container="m") != (
        containerd_container_id(space="s", stack="st", cell="x-y", container="m")
    )


def test_a_realm_stored_with_an_unusable_default_namespace_gets_the_usable_one() -> None:
    stored = Realm.model_validate(
        {"metadata": {"name": "x--y"}, "spec": {"namespace": "x--y.kukeon.io"}}
    )
    assert stored.spec.namespace == default_namespace("x--y")
    assert _containerd_takes(stored.spec.namespace or "")


@pytest.mark.parametrize("namespace", ["Foo Bar", "a..b", "x" * 77, "-a", "a_"])
def test_a_namespace_containerd_would_refuse_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match=r"spec\.namespace"):
        Realm.model_validate({"metadata": {"name": "r"}, "spec": {"namespace": namespace}})
