"""The realm/space/stack orphan collector's pass over a fake host: the cgroups, namespaces,
networks and files of levels this node does not need go; what a document or a cell of this
node still needs, another node's namespace, or a realm that lives, stays."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.api import Kind, parse_resource
from kukeon.controllers.layergc import collect_layer_orphans, list_layers
from kukeon.controllers.layers import HostLocks
from kukeon.controllers.realm import namespace_node_label
from kukeon.controllers.space import conflist_note
from kukeon.runtime.cgroups import LOG_COPIERS
from kukeon.runtime.containerd.containers import LABEL_MANAGED, LABEL_REALM
from kukeon.runtime.network import render_space_conflist
from kukeon.runtime.network.space import space_conflist_path
from kukeon.runtime.network.subnets import SubnetStoreCorruptError
from kukeon.store import StoreError
from tests.unit.api.samples import realm_doc, space_doc

from .hostfakes import FakeHost, ScopedStore, cell, make_host

LEVELS = [("r",), ("r", "s"), ("r", "s", "st")]


def leave_on_host(fake: FakeHost) -> Path:
    """Everything of r/s/st on the host, as a node that ran a cell there leaves it."""
    fake.cgroups.present.update(LEVELS)
    fake.cgroups.present.add(("cgroup.stray",))  # no realm can be named so
    state = fake.host.settings.state_dir
    state.joinpath("cells", "r", "s", "st").mkdir(parents=True)
    fake.networks.subnets.assigned["r/s"] = IPv4Network("10.88.3.0/24")
    fake.containerd.namespaces.items["r.kukeon.io"] = {
        LABEL_MANAGED: "true",
        LABEL_REALM: "r",
        namespace_node_label("n1"): "true",
    }
    ipam = fake.networks.settings.ipam_dir
    conflist = render_space_conflist(
        network_name="kk-r-s",
        bridge="kk-r-s",
        subnet=IPv4Network("10.88.3.0/24"),
        ipam_data_dir=ipam,
    ).to_json()
    default = space_conflist_path(
        conf_dir=fake.host.settings.cni_conf_dir, realm="r", space="s", instance=""
    )
    default.parent.mkdir(parents=True)
    default.write_text(conflist)
    custom = fake.host.settings.state_dir.parent / "custom" / "r-s.conflist"
    custom.parent.mkdir(parents=True)
    custom.write_text(conflist)
    conflist_note(state, "r", "s").write_text(str(custom))
    return custom


async def collect(fake: FakeHost, store: ScopedStore) -> list[str]:
    return await collect_layer_orphans(
        host=fake.host,
        registry=cast(Any, store),
        locks=HostLocks(),
        runs_here=lambda c: c.spec.node_name == "n1",
    )


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    return make_host(tmp_path)


async def test_levels_without_documents_go_entirely(fake: FakeHost) -> None:
    custom = leave_on_host(fake)
    removed = await collect(fake, ScopedStore())
    assert sorted(fake.cgroups.removed) == sorted(LEVELS)
    assert fake.containerd.namespaces.purged == ["r.kukeon.io"]
    (network,) = fake.networks.removed
    # The noted conflist is the one CNI DEL uses; the default-place copy goes as well.
    assert network["cni_config_path"] == custom
    assert not space_conflist_path(
        conf_dir=fake.host.settings.cni_conf_dir, realm="r", space="s", instance=""
    ).exists()
    assert not fake.host.settings.state_dir.joinpath("cells", "r").exists()
    assert "containerd namespace r.kukeon.io of realm r" in removed
    assert "network of space r/s" in removed


async def test_a_living_realm_keeps_its_namespace_as_an_image_cache(fake: FakeHost) -> None:
    leave_on_host(fake)
    store = ScopedStore()
    await store.create(parse_resource(realm_doc("r")))
    await store.create(parse_resource(space_doc("s", realmId="r")))
    removed = await collect(fake, store)
    assert fake.containerd.namespaces.purged == []
    assert ("r",) in fake.cgroups.removed
    assert not any("namespace" in what for what in removed)


async def test_a_namespace_with_containers_stays(fake: FakeHost) -> None:
    leave_on_host(fake)
    fake.containerd.add("r.kukeon.io", "leftover")
    await collect(fake, ScopedStore())
    assert fake.containerd.namespaces.purged == []


async def test_what_a_cell_of_this_node_needs_stays(fake: FakeHost) -> None:
    leave_on_host(fake)
    store = ScopedStore()
    await store.create(cell("c"))
    assert await collect(fake, store) == []
    assert fake.cgroups.removed == []


async def test_a_realms_log_copiers_cgroup_is_no_orphan_space(fake: FakeHost) -> None:
    leave_on_host(fake)
    fake.cgroups.present.add(("r", LOG_COPIERS))
    store = ScopedStore()
    await store.create(cell("c"))
    assert await collect(fake, store) == []
    assert fake.cgroups.removed == []


async def test_one_level_that_cannot_go_does_not_stop_the_others(
    fake: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    leave_on_host(fake)
    fake.cgroups.failing.add(("r", "s"))
    removed = await collect(fake, ScopedStore())
    assert "cgroup of space r/s" not in removed
    assert "cgroup of realm r" in removed
    assert "next pass tries again" in caplog.text


async def test_a_level_that_cannot_be_read_is_left(
    fake: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    leave_on_host(fake)

    class Failing(ScopedStore):
        async def get(self, kind: Kind, key: tuple[str, ...]) -> Any:
            raise StoreError("etcd unavailable")

    assert await collect(fake, Failing()) == []
    assert "could not check" in caplog.text


async def test_the_inventory_lists_only_this_nodes_namespaces(fake: FakeHost) -> None:
    fake.containerd.namespaces.items["other.kukeon.io"] = {
        LABEL_MANAGED: "true",
        LABEL_REALM: "other",
        namespace_node_label("n2"): "true",
    }
    fake.networks.subnets.error = SubnetStoreCorruptError("not JSON")
    found = await list_layers(fake.host)
    assert found.namespaces == {}
    assert found.subnets == set()
    assert await collect(fake, ScopedStore()) == []


async def test_idle_bridges_of_spaces_that_exist_nowhere_are_swept(fake: FakeHost) -> None:
    """A bridge an earlier kukeond left without anything else of its space (no level is a
    candidate then) goes; one of a space that exists stays."""
    store = ScopedStore()
    await store.create(parse_resource(realm_doc("r")))
    await store.create(parse_resource(space_doc("s", realmId="r")))
    fake.networks.idle = {"kk-r-s", "kk-r-gone"}
    removed = await collect(fake, store)
    assert removed == ["orphaned bridge kk-r-gone"]
    assert fake.networks.idle == {"kk-r-s"}
