"""Cells whose binding to a node the store refused: said once, not tried again until they
change.

A cell created within a few hundred bytes of the document limit cannot take its binding
(``nodeName``, the scheduler's annotation, the node's finalizer push it over): the store
refuses the write (``DocumentTooLarge``), and would at every pass. Unhandled, the refusal
ended every scheduling pass, each second, with a warning, before the release of lost
nodes, and the cell was tried again at each. The scheduler now asks ``due`` before it
places a cell, and hands a refusal to ``said``: one warning line (debug when the same cell
is refused again after a change), ``BindingRefused`` in the cell's status when that write
fits, and the cell's resourceVersion remembered so the next passes leave it alone.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from kukeon.api import Cell, CellState, Kind, key_of
from kukeon.framework import patch_status
from kukeon.store import Invalid, Registry, StoreError

from .hierarchy import describe

log = logging.getLogger(__name__)

BINDING_REFUSED = "BindingRefused"


class RefusedBindings:
    """The refused cells, by key, with the resourceVersion they were refused at (after
    the mark in their status)."""

    def __init__(self) -> None:
        self._at: dict[tuple[str, ...], str | None] = {}

    def due(self, cell: Cell) -> bool:
        """Whether ``cell`` may be placed: never refused, or changed since."""
        return self._at.get(key_of(cell), "") != cell.metadata.resource_version

    def keep_only(self, keys: Collection[tuple[str, ...]]) -> None:
        """Forget the cells that are gone (``keys``: every cell listed now)."""
        self._at = {key: at for key, at in self._at.items() if key in keys}

    async def said(self, registry: Registry, cell: Cell, node: str, error: Invalid) -> Cell | None:
        """Say the refusal of ``cell``'s binding to ``node``; the cell as its status was
        written, None when nothing was written."""
        key = key_of(cell)
        log.log(
            logging.DEBUG if key in self._at else logging.WARNING,
            "%s: the store refused its binding to node %s: %s",
            describe(Kind.CELL, key),
            node,
            error,
        )
        self._at[key] = cell.metadata.resource_version
        message = f"the store refused its binding to node {node}: {error}"
        if cell.status.reason == BINDING_REFUSED and cell.status.message == message:
            return None
        try:
            written = await patch_status(
                registry,
                cell,
                observe=False,
                max_conflicts=1,
                state=CellState.PENDING,
                reason=BINDING_REFUSED,
                message=message,
                node_name=None,
            )
        except StoreError as refused:  # a status that does not fit either: logged above
            log.debug("%s: its status not written either: %s", describe(Kind.CELL, key), refused)
            return None
        if not isinstance(written, Cell):
            return None
        self._at[key] = written.metadata.resource_version
        return written
