"""A CellSet's template is admitted exactly as one of its cells, at its realm's level."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import CellSet, parse_resource
from kukeon.apiserver.status import ApiError
from tests.unit.apiserver.test_admission import EDITOR, admission, realm, space


def cellset(container: dict[str, Any], *, replicas: int = 2) -> CellSet:
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
                    "spec": {"containers": [{"id": "a", "image": "busybox", **container}]},
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
