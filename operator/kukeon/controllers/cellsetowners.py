"""Which cells a set owns: released when the set is deleted with ``propagationPolicy=Orphan``,
adopted by a set whose selector matches them.

A set owns the cells labelled ``kukeon.io/cellset=<set>`` in its stack (the label is the
owner reference). ``DELETE`` of a set with ``propagationPolicy=Orphan`` adds the
``kukeon.io/orphan`` finalizer before marking it; the set controller then takes the label
off each of the set's cells (they keep running, and their ``kukeon.io/template-hash``) and
drops the finalizer, so the set goes and its cells stay. A cell without an owner that
carries a template hash (it was made by a set) and matches a live set's selector in the
same stack is adopted: the set's label is put back, and the set counts it from its next
pass (an old template's cell is then rolled like any old cell).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from kukeon.api import CELLSET_LABEL, TEMPLATE_HASH_LABEL, Cell, CellSet, Kind, key_of
from kukeon.api.cellset import ORPHAN_FINALIZER
from kukeon.store import Conflict, NotFound, Registry

log = logging.getLogger(__name__)

StackOf = tuple[str, str, str]


def stack_of(cell: Cell) -> StackOf:
    return (cell.spec.realm_id, cell.spec.space_id, cell.spec.stack_id)


def is_adoptable(cell: Cell) -> bool:
    """Made by a set (it has a template hash), owned by none, not being deleted."""
    labels = cell.metadata.labels
    return (
        CELLSET_LABEL not in labels
        and TEMPLATE_HASH_LABEL in labels
        and cell.metadata.deletion_timestamp is None
    )


def adoptable_by(cellset: CellSet, unowned: Mapping[StackOf, Sequence[Cell]]) -> list[Cell]:
    """The unowned cells of ``cellset``'s stack its selector matches."""
    selector = cellset.spec.selector.match_labels
    stack = (cellset.spec.realm_id, cellset.spec.space_id, cellset.spec.stack_id)
    return [
        cell
        for cell in unowned.get(stack, ())
        if selector and all(cell.metadata.labels.get(k) == v for k, v in selector.items())
    ]


def _relabelled(cell: Cell, owner: str | None) -> Cell:
    labels = {k: v for k, v in cell.metadata.labels.items() if k != CELLSET_LABEL}
    if owner is not None:
        labels[CELLSET_LABEL] = owner
    return cell.model_copy(update={"metadata": cell.metadata.model_copy(update={"labels": labels})})


async def _write_owner(registry: Registry, cells: Iterable[Cell], owner: str | None) -> bool:
    """Set (or, with None, take off) each cell's owner label; False if one changed meanwhile."""
    done = True
    for cell in cells:
        try:
            await registry.update(_relabelled(cell, owner))
        except (Conflict, NotFound):
            done = False  # the next pass sees its new version
    return done


async def adopt(registry: Registry, cellset: CellSet, cells: Sequence[Cell]) -> None:
    for cell in cells:
        log.info("cell set %s adopts cell %s", "/".join(key_of(cellset)), cell.metadata.name)
    await _write_owner(registry, cells, cellset.metadata.name)


async def orphan(registry: Registry, cellset: CellSet, cells: Sequence[Cell]) -> None:
    """Release ``cells`` from ``cellset`` (being deleted), then let the set go."""
    log.info("cell set %s deleted, orphaning %d cells", "/".join(key_of(cellset)), len(cells))
    if await _write_owner(registry, cells, None):
        try:
            await registry.remove_finalizer(Kind.CELL_SET, key_of(cellset), ORPHAN_FINALIZER)
        except NotFound:
            return


def orphaning(cellset: CellSet) -> bool:
    """The set is being deleted and its cells are to stay."""
    meta = cellset.metadata
    return meta.deletion_timestamp is not None and ORPHAN_FINALIZER in meta.finalizers
