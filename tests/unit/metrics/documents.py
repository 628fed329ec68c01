"""Builders of realm/space/stack/cell models with a given status, for the metrics tests."""

from __future__ import annotations

from typing import Any

from kukeon.api import Cell, Realm, Space, Stack, parse_resource


def _status(state: str, controllers: list[str], **extra: Any) -> dict[str, Any]:
    return {"state": state, "subtreeControllers": controllers, **extra}


def realm(name: str, *, state: str = "Ready", controllers: list[str] | None = None) -> Realm:
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Realm",
        "metadata": {"name": name, "resourceVersion": "1"},
        "status": _status(state, controllers or []),
    }
    parsed = parse_resource(document)
    assert isinstance(parsed, Realm)
    return parsed


def space(
    realm_name: str, name: str, *, state: str = "Ready", controllers: list[str] | None = None
) -> Space:
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Space",
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"realmId": realm_name},
        "status": _status(state, controllers or []),
    }
    parsed = parse_resource(document)
    assert isinstance(parsed, Space)
    return parsed


def stack(
    realm_name: str,
    space_name: str,
    name: str,
    *,
    state: str = "Ready",
    controllers: list[str] | None = None,
) -> Stack:
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Stack",
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"realmId": realm_name, "spaceId": space_name},
        "status": _status(state, controllers or []),
    }
    parsed = parse_resource(document)
    assert isinstance(parsed, Stack)
    return parsed


def cell(
    realm_name: str,
    space_name: str,
    stack_name: str,
    name: str,
    *,
    state: str = "Ready",
    ready_observed: bool = True,
    controllers: list[str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    spec_node: str | None = None,
    status_node: str | None = None,
    revision: int = 1,
) -> Cell:
    ids = dict.fromkeys(c["id"] for c in containers or [{"id": "main"}])
    container_specs = [{"id": container_id, "image": "busybox:latest"} for container_id in ids]
    status = _status(
        state,
        controllers or [],
        readyObserved=ready_observed,
        containers=containers or [],
    )
    if status_node is not None:
        status["nodeName"] = status_node
    spec: dict[str, Any] = {
        "realmId": realm_name,
        "spaceId": space_name,
        "stackId": stack_name,
        "containers": container_specs,
    }
    if spec_node is not None:
        spec["nodeName"] = spec_node
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": name, "resourceVersion": str(revision)},
        "spec": spec,
        "status": status,
    }
    parsed = parse_resource(document)
    assert isinstance(parsed, Cell)
    return parsed
