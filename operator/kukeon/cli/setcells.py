"""One cell of a CellSet, for the commands that act on a cell: kubectl's ``logs deploy/web``.

``kukectl logs|exec|attach cellset/NAME`` act on one of the set's cells, picked as kubectl
picks a pod of a deployment: a Ready one first, then the oldest (the one most likely to
have what the user looks for), and say which on stderr when the set has more than one.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from kukeon.api import Cell, CellState, Kind
from kukeon.api.cellset import CELLSET_LABEL
from kukeon.client.apiclient import ApiClient

from .runner import fail


async def cell_of_set(client: ApiClient, scope: Sequence[str], name: str) -> str:
    """The name of the cell of set ``name`` (in ``scope``) a command acts on; exit 1 when the
    set has none (or does not exist: the server's 404, in its words)."""
    await client.get(Kind.CELL_SET, (*scope, name))
    listed = await client.list(Kind.CELL, tuple(scope), label_selector=f"{CELLSET_LABEL}={name}")
    cells = [
        cell
        for cell in listed.items
        if isinstance(cell, Cell) and cell.metadata.deletion_timestamp is None
    ]
    if not cells:
        fail(f"cellset/{name} has no cell in {'/'.join(scope)}")
    chosen = min(cells, key=_preference)
    if len(cells) > 1:
        click.echo(f"Found {len(cells)} cells, using cell/{chosen.metadata.name}", err=True)
    return chosen.metadata.name


def _preference(cell: Cell) -> tuple[bool, float, str]:
    created = cell.metadata.creation_timestamp
    return (
        cell.status.state != CellState.READY,
        created.timestamp() if created is not None else 0.0,
        cell.metadata.name,
    )
