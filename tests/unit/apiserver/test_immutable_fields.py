"""What an update may not change (a realm's namespace), and what a cell may not ask at all."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.apiserver.status import ApiError
from kukeon.apiserver.target import Target
from kukeon.apiserver.writerules import check_acted_on
from tests.unit.api.samples import cell_doc, container, realm_doc

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


CELL = Target(Kind.CELL, ("default", "default", "default"), "web", None)


def acted_on_refusals(target: Target, res: AnyResource, current: AnyResource | None) -> list[str]:
    """`check_acted_on`'s refusal as `<code> <field>` per cause (none: accepted)."""
    try:
        check_acted_on(target, res, current)
    except ApiError as error:
        return [f"{error.code} {cause.field}" for cause in error.causes]
    return []


def refused_fields(after: dict[str, Any], before: dict[str, Any] | None = None) -> list[str]:
    new = parse_resource(cell_doc(containers=[container(**after)]))
    old = parse_resource(cell_doc(containers=[container(**before)])) if before else None
    return acted_on_refusals(CELL, new, old)


def test_aliases_of_a_cell_on_the_host_network_are_refused() -> None:
    """A cell whose containers all use the host's network has no hosts file of its own and
    is no peer of any cell: its networksAliases were stored and listed nowhere (found with
    kukectl apply on a private kukeond)."""
    host = {"hostNetwork": True, "networksAliases": ["db"]}
    assert refused_fields(host) == ["422 spec.containers[0].networksAliases"]
    assert refused_fields({"networksAliases": ["db"]}) == []
    # hostNetwork given to a cell that had aliases: refused as well
    assert refused_fields(host, {"networksAliases": ["db"]}) == [
        "422 spec.containers[0].networksAliases"
    ]
    # stored so before the rule: the same aliases stay writable
    assert refused_fields(host, host) == []


def credentials(*addresses: str | None) -> AnyResource:
    given = [{"username": "u", "password": "p", "serverAddress": a} for a in addresses]
    return parse_resource(realm_doc(registryCredentials=given))


def test_a_credential_no_pull_would_use_is_refused() -> None:
    """The node takes the first credential naming the image's registry: a second one for
    the same registry was stored and never used."""
    shadowed = credentials("https://index.docker.io/v1/", "docker.io", "ghcr.io")
    assert acted_on_refusals(REALM, shadowed, None) == ["422 spec.registryCredentials[1]"]
    assert acted_on_refusals(REALM, credentials("ghcr.io", "docker.io"), None) == []
    # stored so before the rule: the realm stays writable
    assert acted_on_refusals(REALM, shadowed, shadowed) == []


def test_a_credential_without_a_server_address_is_refused() -> None:
    """A credential without serverAddress went to whatever registry an image of the realm
    named, so a realm editor read an admin-set password by pulling from a registry of
    theirs: every write that adds one is refused (422 naming the field), an admin's too."""
    unaddressed = credentials("ghcr.io", None, "", "  ")
    assert acted_on_refusals(REALM, unaddressed, None) == [
        "422 spec.registryCredentials[1].serverAddress",
        "422 spec.registryCredentials[2].serverAddress",
        "422 spec.registryCredentials[3].serverAddress",
    ]
    with pytest.raises(ApiError) as refused:
        check_acted_on(REALM, credentials(None), None)
    assert "is required" in refused.value.causes[0].message
    # stored so before the rule: the realm stays writable with it (kukeond sends it nowhere)
    legacy = credentials("ghcr.io", None)
    assert acted_on_refusals(REALM, legacy, legacy) == []
    assert acted_on_refusals(REALM, credentials(None), legacy) == []  # one dropped
    # ... but not another one without an address, nor another user for the stored one
    other_user = parse_resource(realm_doc(registryCredentials=[{"username": "v", "password": "p"}]))
    assert acted_on_refusals(REALM, other_user, legacy) == [
        "422 spec.registryCredentials[0].serverAddress"
    ]
