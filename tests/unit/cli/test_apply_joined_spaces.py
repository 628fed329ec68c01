"""`kukectl apply`'s server dry run of a cell that joins a space the same manifests create:
the server refuses it (the space does not exist yet) and the dry run takes that for a pass,
since the server checks the joined spaces last."""

from __future__ import annotations

from typing import Any

from kukeon.api import AnyResource, Cell, CellSet, Kind, parse_resource
from kukeon.cli.manifests import Document, server_refusals
from kukeon.client.apiclient import ApiRequestError, StatusCause


class FakeClient:
    """An empty server whose cell dry runs are refused for the joined spaces it lacks."""

    def __init__(self) -> None:
        self.spaces: set[tuple[str, ...]] = set()

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        raise ApiRequestError(404, "NotFound", f"{kind.value} {key} not found")

    async def create(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        containers, prefix = [], "spec."
        if isinstance(res, Cell):
            containers = res.spec.containers
        elif isinstance(res, CellSet) and res.spec.template.spec is not None:
            containers, prefix = res.spec.template.spec.containers, "spec.template.spec."
        causes = [
            StatusCause(f"{prefix}containers[{i}].networks[{j}]", f"no space {name!r}")
            for i, container in enumerate(containers)
            for j, name in enumerate(container.networks)
            if (res.spec.realm_id, name) not in self.spaces
        ]
        if causes:
            raise ApiRequestError(422, "Invalid", "refused", causes=causes)
        return res


def _doc(document: dict[str, Any]) -> Document:
    res = parse_resource({"apiVersion": "kukeon.io/v1beta1", **document})
    return Document(source="m.yaml", position=0, resource=res)


def _manifests(*spaces: str) -> list[Document]:
    docs = [_doc({"kind": "Realm", "metadata": {"name": "r"}, "spec": {}})]
    docs += [
        _doc({"kind": "Space", "metadata": {"name": name}, "spec": {"realmId": "r"}})
        for name in spaces
    ]
    container = {"id": "main", "image": "busybox", "networks": ["back"]}
    cell = {"realmId": "r", "spaceId": "front", "stackId": "web", "containers": [container]}
    docs.append(_doc({"kind": "Cell", "metadata": {"name": "api"}, "spec": cell}))
    return docs


async def test_a_joined_space_created_by_the_same_apply_passes_the_dry_run() -> None:
    refusals = await server_refusals(FakeClient(), _manifests("front", "back"))  # type: ignore[arg-type]
    assert refusals == []


async def test_a_joined_space_nobody_creates_is_refused() -> None:
    refusals = await server_refusals(FakeClient(), _manifests("front"))  # type: ignore[arg-type]
    assert len(refusals) == 1
    assert "spec.containers[0].networks[0]" in refusals[0]


def _set_manifests(*spaces: str) -> list[Document]:
    docs = _manifests(*spaces)[:-1]
    container = {"id": "main", "image": "busybox", "networks": ["back"]}
    cellset = {
        "realmId": "r",
        "spaceId": "front",
        "stackId": "web",
        "selector": {"matchLabels": {"app": "api"}},
        "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [container]}},
    }
    docs.append(_doc({"kind": "CellSet", "metadata": {"name": "api"}, "spec": cellset}))
    return docs


async def test_a_set_joining_a_space_of_the_same_apply_passes_the_dry_run() -> None:
    """The server checks a set's template's joined spaces too (as its cells'): a space the
    same apply creates is not there yet in a dry run."""
    refusals = await server_refusals(FakeClient(), _set_manifests("front", "back"))  # type: ignore[arg-type]
    assert refusals == []
    refusals = await server_refusals(FakeClient(), _set_manifests("front"))  # type: ignore[arg-type]
    assert len(refusals) == 1
    assert "spec.template.spec.containers[0].networks[0]" in refusals[0]
