"""A CellSet's template from a CellProfile: the model's rules, the resolution at a write and
its errors, each naming its field (``kukeon.apiserver.cellsetprofiles``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kukeon.api import (
    PROFILE_ENV,
    PROFILE_LABEL,
    AnyResource,
    CellProfile,
    CellSet,
    InvalidResource,
    Kind,
    parse_resource,
    to_document,
)
from kukeon.apiserver.cellsetprofiles import resolve_profile
from kukeon.apiserver.status import ApiError
from kukeon.store import NotFound


class Store:
    """The reads a resolution makes: profiles by their full key."""

    def __init__(self, *profiles: CellProfile) -> None:
        self.objects: dict[tuple[str, ...], AnyResource] = {}
        self.reads: list[tuple[str, ...]] = []
        for profile in profiles:
            self.put(profile)

    def put(self, profile: CellProfile) -> None:
        meta = profile.metadata
        scope = (meta.realm or "-", meta.space or "-", meta.stack or "-")
        self.objects[(*scope, meta.name)] = profile

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        assert kind == Kind.CELL_PROFILE
        self.reads.append(key)
        try:
            return self.objects[key]
        except KeyError:
            raise NotFound(f"{key} not found") from None


def profile(
    image: str = "busybox:${VERSION}", *, space: str | None = None, **extra: Any
) -> CellProfile:
    metadata = {"name": "web", "realm": "team", **({"space": space} if space else {})}
    res = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellProfile",
            "metadata": metadata,
            "spec": {
                "parameters": [
                    {"name": "VERSION", "default": "1.36"},
                    {"name": "GREETING", "required": True},
                ],
                "cell": {
                    "containers": [
                        {"id": "main", "image": image, "env": ["GREETING=${GREETING}"], **extra}
                    ]
                },
            },
        }
    )
    assert isinstance(res, CellProfile)
    return res


def set_document(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "web"},
        "spec": {
            "realmId": "team",
            "spaceId": "s",
            "stackId": "st",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}},
            "profile": "web",
            "params": {"GREETING": "hello"},
            **spec,
        },
    }


def cellset(**spec: Any) -> CellSet:
    res = parse_resource(set_document(**spec))
    assert isinstance(res, CellSet)
    return res


def fields(error: ApiError) -> list[str]:
    return [cause.field for cause in error.causes]


async def resolved(store: Store, res: CellSet, current: CellSet | None = None) -> CellSet:
    out = await resolve_profile(store, res, current)  # type: ignore[arg-type]
    assert isinstance(out, CellSet)
    return out


async def refusal(store: Store, res: CellSet, current: CellSet | None = None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await resolve_profile(store, res, current)  # type: ignore[arg-type]
    assert caught.value.code == 422
    return caught.value


# --- the model ------------------------------------------------------------------------------


def test_a_profile_replaces_the_template_spec_and_params_need_one() -> None:
    res = cellset()
    assert res.spec.template.spec is None
    assert res.spec.params == {"GREETING": "hello"}
    with pytest.raises(InvalidResource) as caught:
        parse_resource(set_document(profile=None))
    assert {c.field for c in caught.value.causes} == {"spec.template.spec", "spec.params"}
    with pytest.raises(ValueError, match="never resolved"):
        res.cell_document("web-1", res.template_hash())


# --- the resolution -------------------------------------------------------------------------


async def test_the_template_is_the_profiles_cell_with_the_values() -> None:
    store = Store(profile())
    out = await resolved(store, cellset())
    assert store.reads == [
        ("team", "s", "st", "web"),
        ("team", "s", "-", "web"),
        ("team", "-", "-", "web"),
    ]
    template = out.spec.template
    assert template.metadata.labels == {"app": "web", PROFILE_LABEL: "web"}
    assert template.spec is not None
    container = template.spec.containers[0]
    assert container.image == "busybox:1.36"
    assert container.env == ["GREETING=hello", f"{PROFILE_ENV}=web"]
    assert container.realm_id is None  # the set's cells get their identity from the set
    cell = out.cell_document("web-abc", out.template_hash())
    assert cell["spec"]["stackId"] == "st"
    assert cell["metadata"]["labels"][PROFILE_LABEL] == "web"


async def test_the_nearest_scope_wins() -> None:
    store = Store(profile(), profile("busybox:space", space="s"))
    out = await resolved(store, cellset())
    assert out.spec.template.spec is not None
    assert out.spec.template.spec.containers[0].image == "busybox:space"


async def test_a_missing_profile_names_spec_profile() -> None:
    error = await refusal(Store(), cellset(profile="nope"))
    assert fields(error) == ["spec.profile"]
    assert "not found in stack team/s/st, space team/s or realm team" in error.message


async def test_bad_values_name_spec_params() -> None:
    store = Store(profile())
    error = await refusal(store, cellset(params={"OTHER": "x"}))
    assert sorted(fields(error)) == ["spec.params.GREETING", "spec.params.OTHER"]
    assert "is required by profile" in error.message
    store.put(profile("${VERSION}"))
    error = await refusal(store, cellset(params={"GREETING": "hi", "VERSION": ""}))
    assert fields(error) == ["spec.params.VERSION"]
    assert "makes spec.template.spec.containers[0].image: must not be empty" in error.message


async def test_the_set_s_own_rules_apply_to_the_profiles_cell() -> None:
    store = Store(profile())
    store.objects[("team", "-", "-", "web")].spec.cell.node_selector = {"disk": "ssd"}
    error = await refusal(store, cellset(nodeSelector={"disk": "hdd"}))
    assert fields(error) == ["spec.nodeSelector.disk"]


async def test_a_template_beside_the_profile_must_be_the_profiles() -> None:
    store = Store(profile())
    out = await resolved(store, cellset())
    document = to_document(out)
    again = parse_resource(copy.deepcopy(document))
    assert isinstance(again, CellSet)
    assert (await resolved(store, again)).template_hash() == out.template_hash()  # a re-create
    document["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:edited"
    edited = parse_resource(document)
    assert isinstance(edited, CellSet)
    error = await refusal(store, edited, out)
    assert fields(error) == ["spec.template.spec"]
    assert "remove spec.profile" in error.message


async def test_a_round_trip_keeps_the_template_and_a_manifest_resolves_again() -> None:
    store = Store(profile())
    stored = await resolved(store, cellset())
    store.put(profile("busybox:${VERSION}-new"))
    store.reads.clear()
    kept = await resolved(store, parse_as_set(to_document(stored)), stored)
    assert kept.spec.template == stored.spec.template
    assert store.reads == []  # nothing looked up: the profile's edit is not followed
    scaled = await resolved(store, parse_as_set({**to_document(stored)}), stored)
    assert scaled.template_hash() == stored.template_hash()
    rolled = await resolved(store, cellset(), stored)  # the manifest, applied again
    assert rolled.spec.template.spec is not None
    assert rolled.spec.template.spec.containers[0].image == "busybox:1.36-new"
    assert rolled.template_hash() != stored.template_hash()
    same = await resolved(store, cellset(), rolled)
    assert same.spec == rolled.spec  # applied twice: no change, no new revision


async def test_new_values_resolve_again_even_with_the_stored_template() -> None:
    store = Store(profile())
    stored = await resolved(store, cellset())
    document = to_document(stored)
    document["spec"]["params"]["VERSION"] = "1.37"
    out = await resolved(store, parse_as_set(document), stored)
    assert out.spec.template.spec is not None
    assert out.spec.template.spec.containers[0].image == "busybox:1.37"


async def test_other_kinds_and_inline_sets_are_left_alone() -> None:
    store = Store()
    inline = parse_as_set(
        set_document(
            profile=None,
            params=None,
            template={
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"id": "main", "image": "busybox"}]},
            },
        )
    )
    assert await resolved(store, inline) is inline
    assert store.reads == []


def parse_as_set(document: dict[str, Any]) -> CellSet:
    res = parse_resource({k: v for k, v in document.items() if k != "status"})
    assert isinstance(res, CellSet)
    return res


async def test_a_value_making_the_image_no_reference_names_its_parameter() -> None:
    """The write's image rule (``imagerules``) on the resolved template, blamed as the
    model's rules are: on the parameter whose value made it, else on the field with the
    profile's name; an image the stored template already had is let through."""
    store = Store(profile())
    error = await refusal(store, cellset(params={"GREETING": "hi", "VERSION": "-x"}))
    assert fields(error) == ["spec.params.VERSION"]
    assert "makes spec.template.spec.containers[0].image: invalid image reference" in (
        error.message
    )
    stored = await resolved(store, cellset())
    store.put(profile("Busybox:1"))  # a profile stored before the rule
    error = await refusal(store, cellset(), stored)
    assert fields(error) == ["spec.template.spec.containers[0].image"]
    assert "(in profile 'web')" in error.message
    old = stored.model_copy(deep=True)
    assert old.spec.template.spec is not None
    old.spec.template.spec.containers[0].image = "Busybox:1"
    kept = await resolved(store, cellset(), old)  # re-applied: the image is as it was
    assert kept.spec.template.spec is not None
    assert kept.spec.template.spec.containers[0].image == "Busybox:1"
