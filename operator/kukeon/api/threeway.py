"""kubectl's three-way merge of a manifest over a live object, on JSON documents.

Three documents: what the last apply named (``original``, None when nothing was recorded),
what the manifest names now (``modified``) and the object as stored (``live``). The result is
``live`` with

- every field ``modified`` names set to its value (objects merged field by field, the
  fields below too);
- every field ``original`` named and ``modified`` no longer names removed (the model's
  default then fills it); of a map (labels, annotations, a container's resources) only the
  keys ``original`` named go, what others added to it stays (a `kukeon.io/` annotation of
  the scheduler's or of `kukectl restart`);
- every other field of ``live`` kept as it is: what another command wrote (`kukectl
  label`, `stop`, `set env`) and the apply never named.

Lists are replaced whole, as kubectl does for a list without a merge key, except the ones
kubectl's strategic merge keys (``LIST_KEYS``): a cell's containers by id, a container's
environment by variable name and its published ports by entry. Their items are matched by
key and merged as objects are: an item the manifest names is set (a container merged field
by field), one the last apply named and the manifest no longer does is removed, one only
the live list has (added by someone else) is kept after the manifest's. A list whose keys
repeat is replaced whole. A probe is replaced whole too (``ATOMIC_FIELDS``): it holds
exactly one of exec, httpGet and tcpSocket, and a field kept from the live probe could give
it two.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any


def _container_id(item: Any) -> Hashable:
    return item.get("id") if isinstance(item, Mapping) else None


def _variable_name(item: Any) -> Hashable:
    return item.partition("=")[0] if isinstance(item, str) else None


def _entry(item: Any) -> Hashable:
    return item if isinstance(item, str) else None


LIST_KEYS: dict[str, Callable[[Any], Hashable]] = {
    "containers": _container_id,
    "env": _variable_name,
    "ports": _entry,
}
"""The lists merged item by item, by field name, and how an item's key is read."""

ATOMIC_FIELDS = frozenset({"startupProbe", "readinessProbe", "livenessProbe"})
"""Objects replaced whole when the manifest names them (one of their fields excludes others)."""


def three_way(
    original: Mapping[str, Any] | None, modified: Mapping[str, Any], live: Mapping[str, Any]
) -> dict[str, Any]:
    """``live`` with the manifest's fields applied and the ones it dropped since ``original``
    removed (see the module)."""
    before = original if isinstance(original, Mapping) else {}
    merged = dict(live)
    for field in before:
        if field not in modified and field in live:
            kept = _dropped(field, before[field], live[field])
            if kept:
                merged[field] = kept
            else:
                merged.pop(field)
    for field, value in modified.items():
        merged[field] = _merged_value(field, before.get(field), value, live.get(field))
    return merged


def _merged_value(field: str, original: Any, modified: Any, live: Any) -> Any:
    if field in ATOMIC_FIELDS:
        return modified
    if isinstance(modified, Mapping) and isinstance(live, Mapping):
        return three_way(original if isinstance(original, Mapping) else None, modified, live)
    key = LIST_KEYS.get(field)
    if key is not None and isinstance(modified, list) and isinstance(live, list):
        return _merged_list(key, original if isinstance(original, list) else [], modified, live)
    return modified


def _dropped(field: str, original: Any, live: Any) -> Any:
    """What stays of a field the last apply named and the manifest no longer names: of a map
    (or a keyed list), what others added to it; nothing of anything else."""
    if field in ATOMIC_FIELDS:
        return None
    if isinstance(original, Mapping) and isinstance(live, Mapping):
        return three_way(original, {}, live)
    key = LIST_KEYS.get(field)
    if key is not None and isinstance(original, list) and isinstance(live, list):
        return _merged_list(key, original, [], live)
    return None


def _by_key(key: Callable[[Any], Hashable], items: Sequence[Any]) -> dict[Hashable, Any] | None:
    """The items by key; None when one has no key or two share one (replaced whole then)."""
    found: dict[Hashable, Any] = {}
    for item in items:
        name = key(item)
        if name is None or name in found:
            return None
        found[name] = item
    return found


def _merged_list(
    key: Callable[[Any], Hashable], original: list[Any], modified: list[Any], live: list[Any]
) -> list[Any]:
    named, stored, before = _by_key(key, modified), _by_key(key, live), _by_key(key, original)
    if named is None or stored is None:
        return modified
    before = before or {}
    merged = [
        _merged_item(before.get(name), item, stored[name]) if name in stored else item
        for name, item in named.items()
    ]
    # What someone else added (neither this manifest nor the last apply named it) stays.
    merged += [item for name, item in stored.items() if name not in named and name not in before]
    return merged


def _merged_item(original: Any, modified: Any, live: Any) -> Any:
    if isinstance(modified, Mapping) and isinstance(live, Mapping):
        return three_way(original if isinstance(original, Mapping) else None, modified, live)
    return modified
