"""The runtime spec of a `hostUsers: false` container: its user namespace, mappings, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.controllers.cellbuild import BuiltContainer
from kukeon.controllers.cellusers import host_id
from kukeon.runtime.containerd.spec import RuntimeSpecError
from kukeon.runtime.idranges import IdRange
from tests.unit.runtime.test_spec import build, make_container

RANGE = IdRange(0x70010000)
USERNS = "/run/netns/.userns/cell"
PASSWD = "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
GROUP = "root:x:0:\nuser:x:1000:\nwheel:x:10:user\n"


def in_userns(container: Any = None, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id_range": RANGE,
        "userns_path": USERNS,
        "netns_path": "/run/netns/cell",
        "passwd": PASSWD,
        "group": GROUP,
    }
    return build(container, **{**fields, **overrides})


def test_the_container_joins_the_cells_user_namespace_with_the_ranges_mappings() -> None:
    spec = in_userns(make_container(user="user"))
    namespaces = spec["linux"]["namespaces"]
    assert {"type": "user", "path": USERNS} in namespaces
    assert {"type": "network", "path": "/run/netns/cell"} in namespaces
    mapping = [{"containerID": 0, "hostID": RANGE.base, "size": 65536}]
    assert spec["linux"]["uidMappings"] == mapping
    assert spec["linux"]["gidMappings"] == mapping
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10]}


def test_without_a_path_runc_makes_the_user_namespace() -> None:
    spec = in_userns(userns_path=None)
    assert {"type": "user"} in spec["linux"]["namespaces"]


def test_the_hosts_users_have_no_user_namespace() -> None:
    spec = build()
    assert all(ns["type"] != "user" for ns in spec["linux"]["namespaces"])
    assert "uidMappings" not in spec["linux"]


@pytest.mark.parametrize("user", ["70000", "1000:65536", "0:70000"])
def test_a_user_the_namespace_does_not_map_is_refused_by_name(user: str) -> None:
    with pytest.raises(RuntimeSpecError) as refused:
        in_userns(make_container(user=user))
    assert refused.value.field == "user"
    assert "outside the user namespace's 0-65535" in str(refused.value)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"privileged": True}, "privileged"),
        ({"hostNetwork": True}, "hostNetwork"),
        ({"hostPID": True}, "hostPID"),
        ({"hostCgroup": True}, "hostCgroup"),
        ({"devices": ["/dev/kvm"]}, "devices"),
    ],
)
def test_what_a_user_namespace_cannot_honour_is_refused_on_the_node_too(
    fields: dict[str, Any], name: str
) -> None:
    with pytest.raises(RuntimeSpecError) as refused:
        in_userns(make_container(**fields))
    assert refused.value.field == name


def test_kukeond_owns_files_by_the_host_ids_the_containers_user_maps_to() -> None:
    spec = in_userns(make_container(user="1000:10"))
    built = BuiltContainer(
        effective=make_container(), name="c", image="i", spec=spec, digest="d", wrapped=False
    )
    assert built.user == (1000, 10)
    assert built.host_user == (RANGE.base + 1000, RANGE.base + 10)
    hosts = BuiltContainer(
        effective=make_container(), name="c", image="i", spec=build(), digest="d", wrapped=False
    )
    assert hosts.host_user == hosts.user
    with pytest.raises(ValueError, match="not mapped"):
        host_id(70000, RANGE.oci_mappings())
