"""A cell's ports as the node publishes them: from the spec, into the status, and released."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.api import Cell, ContainerStatus, parse_resource
from kukeon.controllers import cellports
from kukeon.controllers.cellports import container_publications, publish_ports, release_ports
from kukeon.controllers.gc import remove_cell_host_side
from kukeon.runtime.containerd.specerrors import RuntimeSpecError
from kukeon.runtime.network import CellAttachment
from kukeon.runtime.network.ports import CellPorts, Publication
from tests.unit.api.samples import cell_doc
from tests.unit.controllers.hostfakes import make_host

ATTACHMENT = CellAttachment(
    cell_id="kukeon_default_default_default_web",
    netns_path=Path("/run/netns/x"),
    ifname="eth0",
    bridge_name="kk-default",
    network_name="kk-default",
    address=IPv4Interface("10.88.0.7/24"),
    gateway=IPv4Address("10.88.0.1"),
    result=cast(Any, None),
)


def cell(*containers: dict[str, Any]) -> Cell:
    parsed = parse_resource(cell_doc("web", list(containers)))
    assert isinstance(parsed, Cell)
    return parsed


class FakePorts:
    def __init__(self) -> None:
        self.published: list[CellPorts] = []
        self.released: list[str] = []

    async def publish(self, ports: CellPorts) -> None:
        self.published.append(ports)

    async def release(self, cell_id: str) -> bool:
        self.released.append(cell_id)
        return True


@pytest.fixture
def fake_ports(monkeypatch: pytest.MonkeyPatch) -> FakePorts:
    fake = FakePorts()
    monkeypatch.setattr(cellports, "ports_adapter", lambda table: fake)
    return fake


def test_every_containers_ports_go_to_the_cell() -> None:
    found = container_publications(
        cell(
            {"id": "a", "image": "busybox", "ports": ["8080:80", "0.0.0.0:8080:80"]},
            {"id": "b", "image": "busybox", "ports": ["127.0.0.1:53:5353/udp"]},
        )
    )
    assert found == {
        "a": (Publication("tcp", 8080, 80),),
        "b": (Publication("udp", 53, 5353, IPv4Address("127.0.0.1")),),
    }


def test_an_entry_without_a_host_port_is_an_invalid_spec() -> None:
    with pytest.raises(RuntimeSpecError, match=r"ports\[0\].*host port"):
        container_publications(cell({"id": "a", "image": "busybox", "ports": ["80"]}))


async def test_published_ports_reach_the_status_and_go_with_the_cell(
    tmp_path: Path, fake_ports: FakePorts
) -> None:
    host = make_host(tmp_path).host
    web = cell(
        {"id": "a", "image": "busybox", "ports": ["8080:80"]},
        {"id": "b", "image": "busybox"},
    )
    statuses = [ContainerStatus(id="a"), ContainerStatus(id="b")]
    reported = await publish_ports(host, web, ATTACHMENT, statuses)
    assert [s.model_dump(by_alias=True, include={"ports"}) for s in reported] == [
        {
            "ports": [
                {"hostIP": "0.0.0.0", "hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
            ]
        },
        {"ports": []},
    ]
    (published,) = fake_ports.published
    assert published.address == IPv4Address("10.88.0.7")
    assert published.bridge == "kk-default"
    assert published.owner == "cell default/default/default/web"
    assert await release_ports(host, ("default", "default", "default", "web"))
    assert fake_ports.released == [published.cell_id]
    # Released once: the marker went with the rules.
    assert not await release_ports(host, ("default", "default", "default", "web"))


async def test_a_cell_that_never_published_costs_no_nft_call(
    tmp_path: Path, fake_ports: FakePorts
) -> None:
    host = make_host(tmp_path).host
    web = cell({"id": "a", "image": "busybox"})
    reported = await publish_ports(host, web, ATTACHMENT, [ContainerStatus(id="a")])
    assert reported[0].ports == []
    assert not await release_ports(host, ("default", "default", "default", "web"))
    assert fake_ports.published == []
    assert fake_ports.released == []


async def test_ports_dropped_from_the_spec_are_released(
    tmp_path: Path, fake_ports: FakePorts
) -> None:
    host = make_host(tmp_path).host
    with_ports = cell({"id": "a", "image": "busybox", "ports": ["8080:80"]})
    await publish_ports(host, with_ports, ATTACHMENT, [ContainerStatus(id="a")])
    without = cell({"id": "a", "image": "busybox"})
    reported = await publish_ports(host, without, ATTACHMENT, [ContainerStatus(id="a")])
    assert reported[0].ports == []
    assert len(fake_ports.released) == 1


async def test_the_orphan_collector_releases_a_gone_cells_ports(
    tmp_path: Path, fake_ports: FakePorts
) -> None:
    host = make_host(tmp_path).host
    web = cell({"id": "a", "image": "busybox", "ports": ["8080:80"]})
    await publish_ports(host, web, ATTACHMENT, [ContainerStatus(id="a")])
    await remove_cell_host_side(host, ("default", "default", "default", "web"), conflist=None)
    assert fake_ports.released == [fake_ports.published[0].cell_id]
