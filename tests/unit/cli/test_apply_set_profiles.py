"""`kukectl apply` of a CellSet naming a CellProfile: the set goes after the profiles whatever
the file order; its server dry run, refused only for a profile the same apply creates (in
the set's stack, space or realm), is a pass; an update the server resolves to the stored
set is reported `unchanged`."""

from __future__ import annotations

from typing import Any

from kukeon.api import AnyResource, CellSet, Kind, parse_resource
from kukeon.cli.manifests import Applier, Document, Reporter, apply_order, server_refusals
from kukeon.client.apiclient import ApiRequestError, StatusCause


class FakeClient:
    """An empty server that refuses a set naming a profile it does not have."""

    def __init__(self, stored: AnyResource | None = None) -> None:
        self.stored = stored

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        if self.stored is not None and kind == Kind.CELL_SET:
            return self.stored
        raise ApiRequestError(404, "NotFound", f"{kind.value} {key} not found")

    async def create(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        if isinstance(res, CellSet):
            causes = [StatusCause("spec.profile", "cell profile 'web' not found")]
            raise ApiRequestError(422, "Invalid", "refused", causes=causes)
        return res

    async def update(self, res: AnyResource, *, dry_run: bool = False) -> AnyResource:
        assert self.stored is not None
        return self.stored  # the server resolved the profile to what it had


def _doc(document: dict[str, Any]) -> Document:
    res = parse_resource({"apiVersion": "kukeon.io/v1beta1", **document})
    return Document(source="m.yaml", position=0, resource=res)


def _set(**spec: Any) -> Document:
    return _doc(
        {
            "kind": "CellSet",
            "metadata": {"name": "web"},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}},
                "profile": "web",
                **spec,
            },
        }
    )


def _profile(**scope: str) -> Document:
    cell = {"containers": [{"id": "main", "image": "busybox"}]}
    metadata = {"name": "web", "realm": "r", **scope}
    return _doc({"kind": "CellProfile", "metadata": metadata, "spec": {"cell": cell}})


async def test_a_profile_of_the_same_apply_passes_the_sets_dry_run() -> None:
    for profile in (_profile(), _profile(space="s"), _profile(space="s", stack="st")):
        documents = [_set(), profile]
        assert [d.resource.kind for d in apply_order(documents)] == ["CellProfile", "CellSet"]
        refusals = await server_refusals(FakeClient(), documents)  # type: ignore[arg-type]
        assert refusals == []


async def test_a_profile_nobody_creates_is_refused() -> None:
    for documents in ([_set()], [_set(), _profile(space="other")]):
        refusals = await server_refusals(FakeClient(), documents)  # type: ignore[arg-type]
        assert len(refusals) == 1
        assert "spec.profile" in refusals[0]


async def test_a_set_the_server_resolves_to_what_it_had_is_unchanged() -> None:
    containers = [{"id": "main", "image": "busybox"}]
    stored = _set(
        template={"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
    )
    lines: list[str] = []
    applier = Applier(
        client=FakeClient(stored.resource),  # type: ignore[arg-type]
        reporter=Reporter(ok=lines.append, error=lines.append),
    )
    assert await applier.apply([_set()])
    assert lines[-1] == "cellset/web unchanged", lines
