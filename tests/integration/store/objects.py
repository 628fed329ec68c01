"""Small builders of valid resources for the store tests (through kukeon.api's parser)."""

from __future__ import annotations

from typing import Any

from kukeon.api import Resource, parse_resource


def _parse(document: dict[str, Any]) -> Resource[Any, Any]:
    return parse_resource({"apiVersion": "kukeon.io/v1beta1", **document})


def realm(name: str, *, labels: dict[str, str] | None = None) -> Resource[Any, Any]:
    return _parse({"kind": "Realm", "metadata": {"name": name, "labels": labels or {}}})


def space(realm_id: str, name: str, *, labels: dict[str, str] | None = None) -> Resource[Any, Any]:
    return _parse(
        {
            "kind": "Space",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"realmId": realm_id},
        }
    )


def stack(realm_id: str, space_id: str, name: str) -> Resource[Any, Any]:
    return _parse(
        {
            "kind": "Stack",
            "metadata": {"name": name},
            "spec": {"realmId": realm_id, "spaceId": space_id},
        }
    )


def cell(
    realm_id: str,
    space_id: str,
    stack_id: str,
    name: str,
    *,
    image: str = "busybox",
    labels: dict[str, str] | None = None,
) -> Resource[Any, Any]:
    return _parse(
        {
            "kind": "Cell",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "realmId": realm_id,
                "spaceId": space_id,
                "stackId": stack_id,
                "containers": [{"id": "main", "image": image}],
            },
        }
    )


def with_labels(res: Resource[Any, Any], labels: dict[str, str]) -> Resource[Any, Any]:
    return res.model_copy(update={"metadata": res.metadata.model_copy(update={"labels": labels})})
