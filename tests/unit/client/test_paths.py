"""URL layout and kind aliases."""

from __future__ import annotations

import pytest

from kukeon.api import Kind
from kukeon.apiserver.handlers import route_patterns
from kukeon.client.paths import collection_path, kind_for_alias, object_path

V = "/apis/kukeon.io/v1beta1"


def test_object_and_collection_paths() -> None:
    assert object_path(Kind.REALM, ("r",)) == f"{V}/realms/r"
    assert object_path(Kind.CELL, ("r", "s", "st", "c"), "status") == (
        f"{V}/realms/r/spaces/s/stacks/st/cells/c/status"
    )
    assert collection_path(Kind.STACK, ("r", "s")) == f"{V}/realms/r/spaces/s/stacks"
    assert collection_path(Kind.CELL) == f"{V}/cells"
    assert collection_path(Kind.REALM) == f"{V}/realms"
    with pytest.raises(ValueError, match="scope"):
        collection_path(Kind.CELL, ("r",))
    with pytest.raises(ValueError, match="key"):
        object_path(Kind.SPACE, ("r",))


def test_route_patterns_match_the_client_paths() -> None:
    collection, obj = route_patterns(Kind.CELL)
    assert collection == f"{V}/realms/{{realm}}/spaces/{{space}}/stacks/{{stack}}/cells"
    assert obj == collection + "/{cell}"


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("realm", Kind.REALM),
        ("Realms", Kind.REALM),
        ("spaces", Kind.SPACE),
        ("st", Kind.STACK),
        ("stack", Kind.STACK),
        ("ce", Kind.CELL),
        ("Cell", Kind.CELL),
        ("pods", None),
    ],
)
def test_aliases(alias: str, kind: Kind | None) -> None:
    assert kind_for_alias(alias) == kind
