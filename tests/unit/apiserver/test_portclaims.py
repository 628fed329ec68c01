"""What the API accepts in a cell's `ports`, and the host ports another cell already holds."""

from __future__ import annotations

from typing import Any, cast

import pytest

from kukeon.api import AnyResource, Cell, Kind, parse_resource
from kukeon.api.portrules import claims
from kukeon.apiserver import ApiError
from kukeon.apiserver.portclaims import check_port_claims, port_causes
from kukeon.store import ResourceList
from tests.unit.api.samples import cell_doc


def cell(name: str = "web", *ports: str, node: str = "", **container: Any) -> Cell:
    doc = cell_doc(name, [{"id": "app", "image": "busybox", "ports": list(ports), **container}])
    if node:
        doc["spec"]["nodeName"] = node
    parsed = parse_resource(doc)
    assert isinstance(parsed, Cell)
    return parsed


class Cells:
    """The registry's list of cells, as the check reads it."""

    def __init__(self, *cells: Cell) -> None:
        self.cells = list(cells)

    async def list(self, kind: Kind, scope: tuple[str, ...] = (), **_: Any) -> ResourceList:
        assert kind == Kind.CELL
        return ResourceList(items=cast(list[AnyResource], self.cells), resource_version=1)


def fields(causes: list[Any]) -> list[str]:
    return [cause.field for cause in causes]


def test_publishable_entries_pass() -> None:
    assert (
        port_causes(cell("web", "8080:80", "127.0.0.1:53:53/udp", "10.0.0.1:8081:80"), None) == []
    )


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("80", "gives no host port"),
        ("127.0.0.1::80", "gives no host port"),
        ("[::1]:8080:80", "only IPv4"),
    ],
)
def test_what_cannot_be_published_is_refused_naming_the_entry(entry: str, why: str) -> None:
    causes = port_causes(cell("web", "9090:90", entry), None)
    assert fields(causes) == ["spec.containers[0].ports[1]"]
    assert why in causes[0].message


def test_a_host_network_container_publishes_nothing() -> None:
    causes = port_causes(cell("web", "8080:80", hostNetwork=True), None)
    assert fields(causes) == ["spec.containers[0].ports[0]"]
    assert "hostNetwork" in causes[0].message


def test_two_entries_of_one_cell_claiming_one_port() -> None:
    doc = cell_doc(
        "web",
        [
            {"id": "a", "image": "busybox", "ports": ["8080:80", "53:53/udp"]},
            {"id": "b", "image": "busybox", "ports": ["127.0.0.1:8080:81", "53:53"]},
        ],
    )
    parsed = parse_resource(doc)
    causes = port_causes(parsed, None)
    assert fields(causes) == ["spec.containers[1].ports[0]"]
    assert "spec.containers[0].ports[0]" in causes[0].message


def test_a_write_leaving_ports_as_stored_is_not_checked() -> None:
    stored = cell("web", "80", hostNetwork=True)
    assert port_causes(stored.model_copy(deep=True), stored) == []


def test_claims_normalise_every_address() -> None:
    found = claims(cell("web", "0.0.0.0:8080:80", "8081:80/udp", "127.0.0.1:8082:80"))
    assert [(c.protocol, c.host_port, c.host_ip) for c in found] == [
        ("tcp", 8080, None),
        ("udp", 8081, None),
        ("tcp", 8082, "127.0.0.1"),
    ]


async def test_a_port_another_cell_holds_is_a_409_naming_it() -> None:
    registry = Cells(cell("db", "127.0.0.1:8080:5432"), cell("other", "8080:80/udp"))
    with pytest.raises(ApiError) as raised:
        await check_port_claims(cast(Any, registry), cell("web", "8080:80"), None)
    error = raised.value
    assert error.code == 409
    assert error.reason == "PortConflict"
    assert fields(error.causes) == ["spec.containers[0].ports[0]"]
    assert 'cell "default/default/default/db"' in error.message
    assert "127.0.0.1:8080:5432" in error.message


@pytest.mark.parametrize(
    ("held", "asked"),
    [
        (cell("db", "127.0.0.1:8080:80"), cell("web", "10.0.0.1:8080:80")),
        (cell("db", "8080:80/udp"), cell("web", "8080:80")),
        (cell("db", "8080:80", node="n1"), cell("web", "8080:80", node="n2")),
        (cell("web", "8080:80"), cell("web", "8080:90")),  # itself
    ],
)
async def test_no_conflict(held: Cell, asked: Cell) -> None:
    await check_port_claims(cast(Any, Cells(held)), asked, None)


async def test_a_cell_being_deleted_no_longer_holds_its_ports() -> None:
    going = cell("db", "8080:80")
    going.metadata.deletion_timestamp = "2026-01-01T00:00:00Z"  # type: ignore[assignment]
    await check_port_claims(cast(Any, Cells(going)), cell("web", "8080:80"), None)


async def test_an_unplaced_cell_conflicts_with_every_node() -> None:
    with pytest.raises(ApiError):
        await check_port_claims(
            cast(Any, Cells(cell("db", "8080:80", node="n1"))), cell("web", "8080:80"), None
        )


async def test_unchanged_claims_are_not_read_again() -> None:
    class Unreadable(Cells):
        async def list(self, kind: Kind, scope: tuple[str, ...] = (), **_: Any) -> ResourceList:
            raise AssertionError("listed")

    stored = cell("web", "8080:80")
    await check_port_claims(cast(Any, Unreadable()), stored.model_copy(deep=True), stored)
