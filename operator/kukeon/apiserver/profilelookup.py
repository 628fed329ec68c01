"""Where a CellProfile named by a write is found: the stack, then the space, then the realm.

A profile run (``profileruns``) and a CellSet naming ``spec.profile`` (``cellsetprofiles``)
look a profile up the same way, as a cell looks a Secret up (``api.secret.lookup_scopes``);
a profile being deleted is not found.
"""

from __future__ import annotations

from kukeon.api import CellProfile, Kind, lookup_scopes
from kukeon.api.meta import quote
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.status import from_store_error
from kukeon.store import NotFound, StoreError


async def find_profile(
    registry: RegistryApi, name: str, scope: tuple[str, str, str]
) -> CellProfile | None:
    """The profile ``name`` of the stack, else the space, else the realm of ``scope``
    (realm, space, stack); None when none of them has it. Other store errors are raised as
    API errors."""
    for place in lookup_scopes(*scope):
        try:
            found = await registry.get(Kind.CELL_PROFILE, (*place, name))
        except NotFound:
            continue
        except StoreError as exc:
            raise from_store_error(exc, kind=Kind.CELL_PROFILE.value, name=name) from None
        if isinstance(found, CellProfile) and found.metadata.deletion_timestamp is None:
            return found
    return None


def not_found(name: str, scope: tuple[str, str, str]) -> str:
    """Where ``find_profile`` looked, for the error of a profile it did not find."""
    realm, space, stack = scope
    return (
        f"cell profile {quote(name)} not found in stack {realm}/{space}/{stack}, "
        f"space {realm}/{space} or realm {realm}"
    )
