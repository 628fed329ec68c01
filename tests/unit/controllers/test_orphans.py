"""The orphan collector's pass over a host (fakes of containerd, CNI and cgroups): what
goes, what stays, and that one orphan that cannot go never stops the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.api import Space, parse_resource
from kukeon.controllers import gc
from kukeon.controllers.cell import network_id
from kukeon.runtime.containerd.containers import (
    LABEL_CELL,
    LABEL_REALM,
    LABEL_SPACE,
    LABEL_STACK,
)
from kukeon.runtime.network import bridge_name
from tests.unit.api.samples import space_doc

from .hostfakes import FakeHost, ScopedStore, cell, make_host

MINE = ("r", "s", "st", "mine")
GONE = ("r", "s", "st", "gone")


class FakeCells:
    def __init__(self) -> None:
        self.removed: list[tuple[str, str]] = []

    async def remove_container(self, namespace: str, container_id: str) -> None:
        if container_id == "stuck":
            raise OSError("task will not die")
        self.removed.append((namespace, container_id))


def labels(key: tuple[str, ...]) -> dict[str, str]:
    return dict(zip((LABEL_REALM, LABEL_SPACE, LABEL_STACK, LABEL_CELL), key, strict=True))


async def registry_with(*cells: Any) -> ScopedStore:
    store = ScopedStore()
    space = parse_resource(space_doc("s", realmId="r"))
    assert isinstance(space, Space)
    await store.create(space)
    for one in cells:
        await store.create(one)
    return store


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    layer_calls: list[dict[str, Any]] = []

    async def no_layers(**kwargs: Any) -> list[str]:
        layer_calls.append(kwargs)
        return ["realm leftover"]

    monkeypatch.setattr(gc, "collect_layer_orphans", no_layers)
    return make_host(tmp_path)


async def collect(fake: FakeHost, store: ScopedStore, cells: FakeCells) -> list[str]:
    return await gc.collect_orphans(
        host=fake.host, registry=cast(Any, store), cells=cast(Any, cells)
    )


async def test_containers_of_cells_not_run_here_go_the_others_stay(fake: FakeHost) -> None:
    fake.containerd.add("r.kukeon.io", "keep", **labels(MINE))
    fake.containerd.add("r.kukeon.io", "orphan", **labels(GONE))
    fake.containerd.add("r.kukeon.io", "elsewhere", **labels(("r", "s", "st", "theirs")))
    store = await registry_with(cell("mine", node="n1"), cell("theirs", node="n2"))
    cells = FakeCells()
    removed = await collect(fake, store, cells)
    # A cell assigned to another node is not run here: its container here is an orphan.
    assert sorted(cells.removed) == [("r.kukeon.io", "elsewhere"), ("r.kukeon.io", "orphan")]
    assert "container r.kukeon.io/orphan" in removed
    assert removed[-1] == "realm leftover"


async def test_a_container_that_cannot_go_is_left_for_the_next_pass(
    fake: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    fake.containerd.add("ns", "stuck", **labels(GONE))
    fake.containerd.add("ns", "other", **labels(GONE))
    cells = FakeCells()
    removed = await collect(fake, await registry_with(), cells)
    assert cells.removed == [("ns", "other")]
    assert "container ns/stuck" not in removed
    assert "next pass tries again" in caplog.text


async def test_cell_directories_go_with_network_cgroup_and_files(fake: FakeHost) -> None:
    state = fake.host.settings.state_dir
    for key in (MINE, GONE):
        (state.joinpath("cells", *key) / "logs").mkdir(parents=True)
    removed = await collect(fake, await registry_with(cell("mine")), FakeCells())
    assert "cell r/s/st/gone" in removed
    assert not state.joinpath("cells", *GONE).exists()
    assert state.joinpath("cells", *MINE).exists()
    assert fake.cgroups.removed == [GONE]
    conflist = fake.host.settings.cni_conf_dir
    (cell_id, path) = fake.networks.detached[0]
    assert cell_id == network_id(GONE, "")
    assert path is not None  # the space's conflist, for CNI DEL
    assert path.parent == conflist


async def test_stray_attachments_and_netns_are_detached_once(fake: FakeHost) -> None:
    records = fake.networks.settings.attachments_dir
    records.mkdir(parents=True)
    gone_id, mine_id = network_id(GONE, ""), network_id(MINE, "")
    (records / f"{gone_id}.json").write_text("{}")
    (records / f"{mine_id}.json").write_text("{}")
    other_id = network_id(("r", "s", "st", "other"), "")
    fake.networks.netns.names = {other_id, "someone-elses"}
    fake.networks.owned = {other_id, "vanished"}
    marks = fake.networks.settings.owned_netns_dir
    marks.mkdir(parents=True)
    (marks / "vanished").write_text("")
    removed = await collect(fake, await registry_with(cell("mine")), FakeCells())
    assert sorted(c for c, _ in fake.networks.detached) == sorted([gone_id, other_id])
    assert f"attachment {gone_id}" in removed
    assert not (marks / "vanished").exists(), "a mark of a namespace that is gone is dropped"


async def test_a_netns_named_by_any_cell_document_stays(fake: FakeHost) -> None:
    theirs = network_id(("r", "s", "st", "theirs"), "")
    fake.networks.netns.names = {theirs}
    fake.networks.owned = {theirs}
    await collect(fake, await registry_with(cell("theirs", node="n2")), FakeCells())
    assert fake.networks.detached == []


async def test_leases_of_gone_cells_are_released_and_removed(fake: FakeHost) -> None:
    network = bridge_name("r", "s")
    ipam = fake.networks.settings.ipam_dir / network
    ipam.mkdir(parents=True)
    gone_id = network_id(GONE, "")
    (ipam / "10.88.3.5").write_text(f"{gone_id}\neth0")
    (ipam / "10.88.3.6").write_text(f"{gone_id}\neth0")
    (ipam / "10.88.3.7").write_text(f"{network_id(MINE, '')}\neth0")
    (ipam / "10.88.3.8").write_text("not-kukeon\neth0")
    fake.networks.failing_detach = {gone_id}  # CNI DEL fails: the leases go by hand
    removed = await collect(fake, await registry_with(cell("mine")), FakeCells())
    assert sorted(p.name for p in ipam.iterdir()) == ["10.88.3.7", "10.88.3.8"]
    assert f"lease {network}/10.88.3.5 of {gone_id}" in removed


async def test_a_failing_layer_collection_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(**kwargs: Any) -> list[str]:
        raise RuntimeError("etcd went away")

    monkeypatch.setattr(gc, "collect_layer_orphans", broken)
    fake = make_host(tmp_path)
    assert await collect(fake, await registry_with(), FakeCells()) == []
    assert "etcd went away" in caplog.text


async def test_runs_here_decides_which_cells_are_wanted(fake: FakeHost) -> None:
    fake.containerd.add("ns", "x", **labels(("r", "s", "st", "theirs")))
    store = await registry_with(cell("theirs", node="n2"))
    cells = FakeCells()
    await gc.collect_orphans(
        host=fake.host,
        registry=cast(Any, store),
        cells=cast(Any, cells),
        runs_here=lambda c: True,
    )
    assert cells.removed == []


async def test_only_this_installations_containers_are_listed(tmp_path: Path) -> None:
    fake = make_host(tmp_path, instance="ab12cd")
    fake.containerd.add("ns", "ours", **labels(GONE), **{"kukeon.io/instance": "ab12cd"})
    fake.containerd.add("ns", "theirs", **labels(GONE))
    found = await gc.list_host(fake.host)
    assert [c.id for _, c in found.containers] == ["ours"]
