"""`kukectl apply` of a manifest that carries a resourceVersion (a `get -o yaml` kept, edited
and applied later): applied only over that version, as kubectl's apply; over a newer one it
is a Conflict naming the field, nothing written. Without one, apply goes on as before."""

from __future__ import annotations

from typing import Any

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli.manifests import Applier, Document, Reporter, server_refusals
from kukeon.client.apiclient import ApiRequestError

STORED: dict[str, Any] = {
    "apiVersion": "kukeon.io/v1beta1",
    "kind": "Cell",
    "metadata": {"name": "web", "labels": {"app": "web"}, "resourceVersion": "9", "uid": "u"},
    "spec": {
        "realmId": "r",
        "spaceId": "s",
        "stackId": "st",
        "containers": [{"id": "main", "image": "busybox"}],
    },
}


class StoringClient:
    """A server holding one cell at resourceVersion 9; writes are counted."""

    def __init__(self) -> None:
        self.stored = parse_resource(STORED)
        self.writes: list[AnyResource] = []

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        return self.stored  # the cell, and a stand-in for its parents (only found matters)

    async def create(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        raise ApiRequestError(409, "AlreadyExists", "exists")

    async def update(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        assert res.metadata.resource_version == "9"
        if not dry_run:
            self.writes.append(res)
        return res


def _manifest(version: str | None, app: str) -> Document:
    metadata: dict[str, Any] = {"name": "web", "labels": {"app": app}}
    if version is not None:
        metadata["resourceVersion"] = version
    res = parse_resource({**STORED, "metadata": metadata})
    return Document(source="web.yaml", position=0, resource=res)


async def _apply(client: StoringClient, document: Document) -> tuple[bool, list[str]]:
    lines: list[str] = []
    applier = Applier(client=client, reporter=Reporter(ok=lines.append, error=lines.append))  # type: ignore[arg-type]
    return await applier.apply([document]), lines


async def test_a_stale_manifest_version_is_a_conflict_and_nothing_is_written() -> None:
    client = StoringClient()
    refusals = await server_refusals(client, [_manifest("5", "other")])  # type: ignore[arg-type]
    assert len(refusals) == 1
    assert "metadata.resourceVersion" in refusals[0], refusals
    assert "'5'" in refusals[0], refusals
    ok, lines = await _apply(client, _manifest("5", "other"))
    assert not ok
    assert client.writes == []
    assert "has been modified" in lines[-1], lines


async def test_the_current_version_or_none_is_applied() -> None:
    for version in ("9", None):
        client = StoringClient()
        ok, lines = await _apply(client, _manifest(version, "other"))
        assert ok, lines
        assert [w.metadata.labels for w in client.writes] == [{"app": "other"}]


async def test_a_stale_manifest_that_changes_nothing_is_unchanged() -> None:
    ok, lines = await _apply(StoringClient(), _manifest("5", "web"))
    assert ok
    assert lines == ["cell/web unchanged"], lines
