"""A Warning on the realm write that lowers its security level, naming the cells it leaves
running though the new level forbids them.

Admission checks what is asked, when it is asked: lowering a level stops nothing already
running (as Kubernetes leaves running pods alone at a Pod Security level change, and warns
of them when the namespace's label is changed). The cells named are those the new level
refuses and the old one did not (a cell an admin made beyond both is not news), each checked
as admission checks it, with its space's defaults merged in. A set's cells made later are
checked when they are made (``Admission.cell_refusal``).

This module imports only ``kukeon.api`` and the API server's own modules.
"""

from __future__ import annotations

import logging
from typing import Final

from kukeon.api import AnyResource, Cell, Realm, Space, key_of
from kukeon.api.meta import Kind
from kukeon.apiserver.admission import HostAllowances, check_cell
from kukeon.apiserver.protocols import RegistryApi
from kukeon.client.paths import display_key

log = logging.getLogger(__name__)

NAMED_AT_MOST: Final = 10
"""Cells a warning names; more are counted (a header of thousands of names helps no one)."""


async def lowered_level_warnings(
    registry: RegistryApi,
    allowances: HostAllowances,
    res: AnyResource,
    current: AnyResource | None,
) -> list[str]:
    """The warning for a write of realm ``res`` over ``current`` whose level forbids cells
    of the realm the stored level allowed, none for any other write."""
    if not isinstance(res, Realm) or not isinstance(current, Realm):
        return []
    new, old = res.spec.level, current.spec.level
    if new == old:
        return []
    realm = res.metadata.name
    spaces = {
        s.metadata.name: s
        for s in (await registry.list(Kind.SPACE, (realm,))).items
        if isinstance(s, Space)
    }
    beyond: list[str] = []
    for cell in (await registry.list(Kind.CELL, (realm,))).items:
        if not isinstance(cell, Cell) or cell.metadata.deletion_timestamp is not None:
            continue
        space = spaces.get(cell.spec.space_id)
        if check_cell(cell, level=new, allowances=allowances, space=space) and not check_cell(
            cell, level=old, allowances=allowances, space=space
        ):
            beyond.append(display_key(key_of(cell)))
    if not beyond:
        return []
    log.info("realm %s lowered to %s leaves %d cells beyond it", realm, new.value, len(beyond))
    shown = ", ".join(beyond[:NAMED_AT_MOST])
    if len(beyond) > NAMED_AT_MOST:
        shown += f" and {len(beyond) - NAMED_AT_MOST} more"
    return [
        f"{len(beyond)} cells of realm {realm!r} ask for more than security level "
        f"{new.value} allows and run on until deleted (admission refuses what is asked from "
        f"now on, a CellSet's new cells included): {shown}"
    ]
