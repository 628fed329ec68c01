"""Fields a write may set at creation but never change: an update changing one is a 422."""

from __future__ import annotations

import pytest

from kukeon.api import Kind, parse_resource
from kukeon.apiserver.status import ApiError
from kukeon.apiserver.target import Target
from kukeon.apiserver.writerules import check_acted_on
from tests.unit.api.samples import realm_doc

REALM = Target(Kind.REALM, (), "main", None)


def test_a_realm_namespace_cannot_change() -> None:
    """An admin's update to spec.namespace was stored: the nodes made the new namespace,
    the running containers stayed in the old one, unmanaged, and every cell failed with
    ImageUnavailable (found with kukectl apply on a private kukeond)."""
    default = parse_resource(realm_doc())
    named = parse_resource(realm_doc(namespace="main.kukeon.io"))
    other = parse_resource(realm_doc(namespace="elsewhere"))
    check_acted_on(REALM, other, None)  # chosen at creation: fine
    check_acted_on(REALM, named, default)  # unset is the default, written out: the same
    check_acted_on(REALM, other, other)
    for before, after in ((default, other), (other, default)):
        with pytest.raises(ApiError) as refused:
            check_acted_on(REALM, after, before)
        assert refused.value.code == 422
        assert [cause.field for cause in refused.value.causes] == ["spec.namespace"]
        assert "immutable" in refused.value.causes[0].message
