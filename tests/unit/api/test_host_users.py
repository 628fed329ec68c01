"""`hostUsers: false`: accepted alone, refused (naming the field) with what it cannot honour."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import Cell, InvalidResource, Kind
from kukeon.api.kinds import parse_resource


def cell_doc(spec: dict[str, Any], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"id": "app", "image": "busybox", **container}], **spec},
    }


def causes(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(doc)
    return [(cause.field, cause.message) for cause in caught.value.causes]


def test_host_users_unset_is_the_hosts_and_false_is_kept() -> None:
    default = parse_resource(cell_doc({}))
    assert isinstance(default, Cell)
    assert default.spec.host_users is None
    assert not default.spec.in_user_namespace()
    own = parse_resource(cell_doc({"hostUsers": False}, volumes=[]))
    assert isinstance(own, Cell)
    assert own.spec.host_users is False
    assert own.model_dump(by_alias=True)["spec"]["hostUsers"] is False


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({"privileged": True}, "spec.containers[0].privileged"),
        ({"hostNetwork": True}, "spec.containers[0].hostNetwork"),
        ({"hostPID": True}, "spec.containers[0].hostPID"),
        ({"hostCgroup": True}, "spec.containers[0].hostCgroup"),
        ({"devices": ["/dev/kvm"]}, "spec.containers[0].devices"),
    ],
)
def test_what_a_user_namespace_cannot_honour_is_refused_by_name(
    container: dict[str, Any], field: str
) -> None:
    found = causes(cell_doc({"hostUsers": False}, **container))
    assert [name for name, _ in found] == [field]
    assert "user namespace (hostUsers: false)" in found[0][1]
    assert parse_resource(cell_doc({}, **container))  # with the host's users: accepted


def test_nested_cgroup_runtime_and_every_mistake_at_once() -> None:
    found = causes(
        cell_doc(
            {"hostUsers": False, "nestedCgroupRuntime": True}, privileged=True, hostNetwork=True
        )
    )
    # in the document's order: its containers come before nestedCgroupRuntime
    assert [name for name, _ in found] == [
        "spec.containers[0].privileged",
        "spec.containers[0].hostNetwork",
        "spec.nestedCgroupRuntime",
    ]


def test_a_profiles_and_a_sets_template_are_held_to_it() -> None:
    template = {"hostUsers": False, "containers": [{"id": "a", "image": "x", "hostPID": True}]}
    profile = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellProfile",
        "metadata": {"name": "p", "realm": "default"},
        "spec": {"cell": template},
    }
    assert [name for name, _ in causes(profile)] == ["spec.cell.containers[0].hostPID"]
    cellset = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "s", "realm": "default", "space": "default", "stack": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"app": "s"},
            "template": {"metadata": {"labels": {"app": "s"}}, "spec": template},
        },
    }
    assert "spec.template.spec.containers[0].hostPID" in [name for name, _ in causes(cellset)]


def test_an_update_may_not_change_it_a_new_cell_may_set_it() -> None:
    from kukeon.apiserver.status import ApiError
    from kukeon.apiserver.target import Target
    from kukeon.apiserver.writerules import check_acted_on

    target = Target(Kind.CELL, ("default", "default", "default"), "web", None)
    hosts, own = parse_resource(cell_doc({})), parse_resource(cell_doc({"hostUsers": False}))
    explicit = parse_resource(cell_doc({"hostUsers": True}))
    check_acted_on(target, own, None)  # created so: fine
    check_acted_on(target, own, own)  # kept: fine
    check_acted_on(target, explicit, hosts)  # unset and true are one
    for before, after in ((hosts, own), (own, hosts), (own, explicit)):
        with pytest.raises(ApiError) as refused:
            check_acted_on(target, after, before)
        assert refused.value.code == 422
        assert [cause.field for cause in refused.value.causes] == ["spec.hostUsers"]
