"""Which cells run on this node, by realm, space and stack: the follower that queues a level
when its first cell arrives here or its last one leaves (a level is materialised on a node
while it runs a cell of it), and answers `keys_below` for the levels' reconciles and the
wakers without an etcd read."""

from __future__ import annotations

from collections.abc import Callable

from kukeon.api import Cell, Kind, key_of
from kukeon.api.kinds import AnyResource

Trigger = Callable[[Kind, tuple[str, ...]], bool]
Joins = frozenset[tuple[str, ...]]

_LEVEL_KINDS = {3: Kind.STACK, 2: Kind.SPACE, 1: Kind.REALM}
"""A level's kind by the length of its key."""


class CellMembership:
    """Queues the stack, space and realm of a cell that is their first on this node or their
    last one to leave it."""

    def __init__(self, *, node: str, trigger: Trigger) -> None:
        self.node = node
        self.trigger = trigger
        self.here: set[tuple[str, ...]] = set()
        self._below: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
        """Realm, space and stack keys -> keys of this node's cells below them (a space's:
        and of those that join its network, ``CellSpec.joined_spaces``)."""
        self._joins: dict[tuple[str, ...], Joins] = {}

    def keys_below(self, scope: tuple[str, ...]) -> list[tuple[str, ...]]:
        return sorted(self._below.get(scope, ()))

    def _index(self, key: tuple[str, ...], *, add: bool) -> list[tuple[str, ...]]:
        """Add or remove ``key`` below its realm, space and stack; the scopes whose set of
        cells here became non-empty or empty (only those change what a level does here:
        it is materialised while it has a cell on this node, and `local_cells`' answer is
        used for nothing else)."""
        changed = []
        for depth in (1, 2, 3):
            prefix = key[:depth]
            if _toggle(self._below, prefix, key, add=add):
                changed.append(prefix)
        return changed

    def _parents(self, scopes: list[tuple[str, ...]]) -> None:
        for scope in sorted(scopes, key=len, reverse=True):  # stack, space, realm
            self.trigger(_LEVEL_KINDS[len(scope)], scope)

    def observe(
        self, key: tuple[str, ...], node: str | None, *, deleted: bool, joins: Joins = frozenset()
    ) -> None:
        """One cell version: queue its stack, space and realm when it is their first cell
        on this node or their last one left, and the spaces whose networks it joins
        (``joins``) when it is the first or last of their cells or joiners here.

        A cell arriving in a stack that already runs others here queues nothing: 50 cells
        created at once used to cost 150 passes of levels with nothing to do, competing
        with the cells' starts."""
        present = not deleted and node == self.node
        joined = joins if present else frozenset()
        before = self._joins.pop(key, frozenset())
        if joined:
            self._joins[key] = joined
        for scope in sorted(before ^ joined):
            if _toggle(self._below, scope, key, add=scope in joined):
                self.trigger(Kind.SPACE, scope)
        if present == (key in self.here):
            return
        if present:
            self.here.add(key)
        else:
            self.here.discard(key)
        self._parents(self._index(key, add=present))

    def changed(self, obj: AnyResource, deleted: bool) -> None:
        """A change listener of the operator's cell watch (``Operator.on_change``): every
        newer version of a cell, and its last one once deleted (or gone from a relist).
        No watch of its own: the operator's one list + watch of cells feeds it."""
        if isinstance(obj, Cell):
            self.observe(
                key_of(obj),
                obj.spec.node_name,
                deleted=deleted,
                joins=obj.spec.joined_space_keys(),
            )


def _toggle(
    below: dict[tuple[str, ...], set[tuple[str, ...]]],
    scope: tuple[str, ...],
    key: tuple[str, ...],
    *,
    add: bool,
) -> bool:
    """Add ``key`` to (or remove it from) ``below[scope]``; whether the set went from empty
    to not or back."""
    keys = below.setdefault(scope, set())
    was_empty = not keys
    if add:
        keys.add(key)
    else:
        keys.discard(key)
    if not keys:
        del below[scope]
    return was_empty != (not keys)


__all__ = ["CellMembership", "Joins", "Trigger"]
