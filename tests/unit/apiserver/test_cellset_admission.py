"""A CellSet's template is admitted exactly as one of its cells, at its realm's level."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import CellSet, parse_resource
from kukeon.apiserver.status import ApiError
from tests.unit.apiserver.test_admission import EDITOR, admission, realm, space


def cellset(
    container: dict[str, Any], *, replicas: int = 2, cell: dict[str, Any] | None = None
) -> CellSet:
    res = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "web"},
            "spec": {
                "realmId": "team",
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{"id": "a", "image": "busybox", **container}],
                        **(cell or {}),
                    },
                },
            },
        }
    )
    assert isinstance(res, CellSet)
    return res


async def test_the_template_is_checked_as_a_cell_naming_its_field() -> None:
    checker, _ = admission(realm(securityLevel="baseline"))
    with pytest.raises(ApiError) as caught:
        await checker.admit(EDITOR, cellset({"privileged": True}), None)
    error = caught.value
    assert error.code == 403
    assert error.kind == "CellSet"
    assert [c.field for c in error.causes] == ["spec.template.spec.containers[0].privileged"]
    await checker.admit(EDITOR, cellset({}), None)


async def test_the_space_defaults_apply_to_the_template() -> None:
    risky = space(defaults={"container": {"capabilities": {"add": ["SYS_ADMIN"]}}})
    checker, _ = admission(realm(), risky)
    with pytest.raises(ApiError) as caught:
        await checker.admit(EDITOR, cellset({}), None)
    assert "inherited" in caught.value.message


async def test_scaling_is_checked_like_any_spec_change_and_passes() -> None:
    checker, _ = admission(realm())
    await checker.admit(EDITOR, cellset({}, replicas=5), cellset({}))


def acted_on_fields(res: CellSet, current: CellSet | None = None) -> list[str]:
    from kukeon.api import Kind
    from kukeon.apiserver.target import Target
    from tests.unit.apiserver.test_immutable_fields import acted_on_refusals

    target = Target(Kind.CELL_SET, ("team", "default", "default"), "web", None)
    return acted_on_refusals(target, res, current)


def test_the_template_is_refused_what_a_cell_would_be() -> None:
    """A set's template with a network its cells cannot have, or ports no node publishes,
    was stored: each cell failed on its node (NetworkFailed) or had the value ignored
    (found applying such a set on a private kukeond); a cell is refused the same."""
    prefix = "422 spec.template.spec.containers[0]"
    assert acted_on_fields(cellset({"networks": ["default"]})) == [f"{prefix}.networks[0]"]
    assert acted_on_fields(cellset({"ports": ["80"]})) == [f"{prefix}.ports[0]"]
    host = cellset({"hostNetwork": True, "ports": ["8080:80"], "networks": ["db"]})
    assert acted_on_fields(host) == [f"{prefix}.networks[0]", f"{prefix}.ports[0]"]
    assert acted_on_fields(cellset({"networks": ["db"], "ports": ["8080:80"]})) == []


def test_a_stored_template_stays_writable() -> None:
    # Stored before the rule: scaling it (or any write keeping the template) is let through.
    stored = cellset({"networks": ["default"]}, replicas=2)
    assert acted_on_fields(cellset({"networks": ["default"]}, replicas=5), stored) == []
    worse = cellset({"networks": ["default"], "ports": ["80"]})
    assert acted_on_fields(worse, stored) == ["422 spec.template.spec.containers[0].ports[0]"]


def test_a_template_that_deletes_its_cells_is_refused() -> None:
    """autoDelete in a set's template: each cell deleted itself once its command exited and
    the set made the next at once, over and over (found by helper-106 on a private
    kukeond). Refused as Kubernetes refuses a ReplicaSet's pod template any restartPolicy
    but Always; a set stored so stays writable."""
    looping = cellset({}, cell={"autoDelete": True})
    assert acted_on_fields(looping) == ["422 spec.template.spec.autoDelete"]
    assert acted_on_fields(cellset({}, cell={"autoDelete": False})) == []
    scaled = cellset({}, replicas=5, cell={"autoDelete": True})
    assert acted_on_fields(scaled, looping) == []


class Spaces:
    """A registry holding the spaces of realm team named ``names``."""

    def __init__(self, *names: str) -> None:
        self.names = names

    async def get(self, kind: object, key: tuple[str, ...]) -> object:
        from kukeon.api import Kind
        from kukeon.store import NotFound
        from tests.unit.api.samples import space_doc

        assert kind == Kind.SPACE
        if key[0] != "team" or key[1] not in self.names:
            raise NotFound(f"space {key} not found")
        return parse_resource({**space_doc(key[1]), "spec": {"realmId": "team"}})


async def test_the_template_names_only_spaces_that_exist() -> None:
    """A template joining a space its realm does not have was stored; each cell failed on
    its node. A cell is refused the same (a 422 naming the entry)."""
    from typing import cast

    from kukeon.api import Kind
    from kukeon.apiserver.protocols import RegistryApi
    from kukeon.apiserver.target import Target
    from kukeon.apiserver.writerules import check_networks

    target = Target(Kind.CELL_SET, ("team", "default", "default"), "web", None)
    registry = cast(RegistryApi, Spaces("db"))
    await check_networks(registry, target, cellset({"networks": ["db"]}), None)
    with pytest.raises(ApiError) as refused:
        await check_networks(registry, target, cellset({"networks": ["db", "nope"]}), None)
    assert refused.value.code == 422
    causes = [(c.field, c.message) for c in refused.value.causes]
    assert causes == [
        ("spec.template.spec.containers[0].networks[1]", "realm 'team' has no space 'nope'")
    ]
    # stored so (the space deleted since): the set stays writable
    stored = cellset({"networks": ["nope"]})
    await check_networks(registry, target, cellset({"networks": ["nope"]}, replicas=4), stored)
