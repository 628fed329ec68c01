"""What a cell in a user namespace (`hostUsers: false`) cannot have, checked on the raw document.

A container of such a cell is root only inside its user namespace; whatever would give it the
host's own ids, namespaces or devices back cannot be honoured there, so it is refused by
name (422) rather than accepted and quietly not done:

- `privileged`: every capability and device of the host, i.e. root on the host;
- `hostNetwork`, `hostPID`: the host's namespaces, owned by the host's user namespace (a
  process of the container could not administer them, and would see the host's processes);
- `hostCgroup`: the host's cgroup namespace, the cgroup hierarchy of the whole host;
- `devices`: a host device node is owned by a host id, a stranger to the namespace;
- `nestedCgroupRuntime`: the delegated cgroup would have to be given to the range's ids.

Host-path volumes are allowed: their files keep their host owners, which the container sees
as `nobody` (65534) unless the range owns them; kukeon never changes a host path's owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kukeon.api.cell import CellSpec

_CONTAINER_FIELDS: Final = (
    ("privileged", "privileged", "every capability and device of the host"),
    ("hostNetwork", "host_network", "the host's network namespace"),
    ("hostPID", "host_pid", "the host's PID namespace"),
    ("hostCgroup", "host_cgroup", "the host's cgroup namespace"),
)


def _given(doc: Mapping[str, Any], alias: str, name: str) -> Any:
    return doc.get(alias, doc.get(name))


def host_users_errors(spec: Mapping[str, Any], prefix: str = "spec") -> list[tuple[str, str]]:
    """Each field of a cell's raw spec that a user namespace cannot honour, when the spec
    asks for one (`hostUsers: false`); nothing otherwise. (field, reason) pairs: the caller,
    `api.validation`, makes them its FieldErrors (this module is imported by it)."""
    if _given(spec, "hostUsers", "host_users") is not False:
        return []
    why = "cannot be honoured in a user namespace (hostUsers: false)"
    errors: list[tuple[str, str]] = []
    if _given(spec, "nestedCgroupRuntime", "nested_cgroup_runtime") is True:
        errors.append(
            (
                f"{prefix}.nestedCgroupRuntime",
                f"{why}: the delegated cgroup is the host's ids'; set hostUsers: true",
            )
        )
    containers = spec.get("containers")
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, Mapping):
            continue
        path = f"{prefix}.containers[{index}]"
        for alias, name, what in _CONTAINER_FIELDS:
            if _given(container, alias, name) is True:
                errors.append((f"{path}.{alias}", f"{why}: {what}; set hostUsers: true"))
        devices = _given(container, "devices", "devices")
        if isinstance(devices, list) and devices:
            errors.append(
                (
                    f"{path}.devices",
                    f"{why}: a host device node is owned by host ids; set hostUsers: true",
                )
            )
    return errors


def host_users_change(before: CellSpec, after: CellSpec) -> tuple[str, str] | None:
    """(field, reason) when a cell's update changes whether it runs in a user namespace:
    its network namespace is owned by the user namespace it was made for (or by the
    host's), and neither can be swapped under a running cell (the stored cell's spec, then
    the write's)."""
    if before.in_user_namespace() == after.in_user_namespace():
        return None
    return (
        "spec.hostUsers",
        "cannot change on an existing cell (its network namespace belongs to the user "
        "namespace it was made for): delete the cell and create it again",
    )
