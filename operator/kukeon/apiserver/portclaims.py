"""A cell's `ports`: what the API accepts, and which host ports another cell already holds.

A container's ``ports`` entry (docker's ``[hostIP:]hostPort:containerPort[/tcp|udp]``) is
published by the cell's node as DNAT to the cell's address (``runtime.network.ports``).
Before a write is stored:

- ``port_causes`` refuses (422, naming each entry) what kukeond cannot publish
  (``kukeon.api.portrules``, which kukectl checks too): an entry without a host port, an
  IPv6 host address, a container in the host's network, two entries of the cell claiming
  one host port.
- ``check_port_claims`` refuses (409 ``PortConflict``, naming the cell that holds it) a host
  port another cell publishes: same protocol and port, and the same host address or either
  of them every address (``0.0.0.0``). Host ports are per node, so two cells pinned to
  different nodes (``spec.nodeName``) do not conflict; a cell not placed yet may land
  anywhere, so it conflicts with every other.

The check reads the stored cells, so two writes racing past it can both be stored; the
node decides between them (the first one published holds the port, the other fails with
``NetworkFailed`` naming the holder, see ``controllers.cellports``).
"""

from __future__ import annotations

from kukeon.api import AnyResource, Cell, Kind, key_of
from kukeon.api.portrules import claims, port_errors
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.status import ApiError, Cause
from kukeon.client.paths import display_key


def _publishing_view(cell: Cell) -> list[tuple[list[str], bool]]:
    return [(list(c.ports), c.host_network) for c in cell.spec.containers]


def port_causes(res: AnyResource, current: AnyResource | None) -> list[Cause]:
    """What kukeond could not publish in a cell's ``ports``, one Cause per entry
    (``kukeon.api.portrules``).

    A write that leaves every container's ports (and hostNetwork) as stored is not
    checked, so a document stored before these rules stays writable.
    """
    if not isinstance(res, Cell):
        return []
    if isinstance(current, Cell) and _publishing_view(current) == _publishing_view(res):
        return []
    return [Cause(error.field, error.message) for error in port_errors(res)]


def _may_share_a_node(one: Cell, other: Cell) -> bool:
    mine, theirs = one.spec.node_name, other.spec.node_name
    return not (mine and theirs and mine != theirs)


async def check_port_claims(
    registry: RegistryApi, res: AnyResource, current: AnyResource | None
) -> None:
    """Refuse (409) a cell whose ports another cell of its node already publishes."""
    if not isinstance(res, Cell):
        return
    mine = claims(res)
    if not mine:
        return
    if (
        isinstance(current, Cell)
        and current.spec.node_name == res.spec.node_name
        and claims(current) == mine
    ):
        return  # nothing new is claimed (a metadata write, a restart, another field)
    key = key_of(res)
    stored = await registry.list(Kind.CELL)
    causes: list[Cause] = []
    for other in stored.items:
        if not isinstance(other, Cell) or key_of(other) == key:
            continue
        if other.metadata.deletion_timestamp is not None or not _may_share_a_node(res, other):
            continue
        for claim in mine:
            held = next((c for c in claims(other) if c.overlaps(claim)), None)
            if held is not None:
                why = (
                    f"host port {claim.describe()} is already published by cell "
                    f'"{display_key(key_of(other))}" ({held.field}: {held.entry})'
                )
                causes.append(Cause(claim.field, why))
    if causes:
        raise ApiError(
            409,
            f'Cell "{display_key(key)}": ' + "; ".join(f"{c.field}: {c.message}" for c in causes),
            reason="PortConflict",
            kind=Kind.CELL.value,
            name=res.metadata.name,
            causes=causes,
        )
