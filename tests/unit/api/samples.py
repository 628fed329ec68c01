"""Small builders of valid raw documents, so each test states only what it changes."""

from __future__ import annotations

import copy
from typing import Any


def realm_doc(name: str = "main", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": name}, "spec": spec}


def space_doc(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1beta1",
        "kind": "Space",
        "metadata": {"name": name},
        "spec": {"realmId": "default", **spec},
    }


def stack_doc(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1beta1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"realmId": "default", "spaceId": "default", **spec},
    }


def container(id: str = "app", **fields: Any) -> dict[str, Any]:
    return {"id": id, "image": "docker.io/library/busybox:latest", **fields}


def cell_doc(
    name: str = "web", containers: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1beta1",
        "kind": "Cell",
        "metadata": {"name": name},
        "spec": {
            "realmId": "default",
            "spaceId": "default",
            "stackId": "default",
            "containers": copy.deepcopy(containers) if containers is not None else [container()],
            **spec,
        },
    }


def egress_space(**egress: Any) -> dict[str, Any]:
    return space_doc(network={"egress": egress})
