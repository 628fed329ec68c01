"""Space defaults flowing into containers: the isolation envelope declared once per space.

Precedence, highest first: what the container sets, what the space's
`spec.defaults.container` sets, the built-in default (unset: the image's user and
capabilities, no limits). Inheritance is shallow: a container that sets `capabilities`
replaces the space's whole `capabilities` (its `add` and `drop` are not merged), and the
same for `tmpfs`, `securityOpts` and `resources`. As in kukeon, an empty string or empty
list counts as unset. The merge is a pure function, so applying it twice changes nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from kukeon.api.container import ContainerSpec, Resources
from kukeon.api.space import Space, SpaceContainerDefaults, SpaceSpec

# The container fields a space may default, by Python name.
DEFAULTABLE_FIELDS = (
    "user",
    "read_only_root_filesystem",
    "capabilities",
    "security_opts",
    "tmpfs",
    "resources",
)


def apply_realm_ephemeral_storage(container: ContainerSpec, ceiling: int | None) -> ContainerSpec:
    """The container's effective spec under its realm's `containerEphemeralStorageBytes`:
    that limit when it has none or a larger one (a LimitRange's default and max), else as
    it is. Pure: the argument is not modified."""
    if not ceiling:
        return container
    resources = container.resources or Resources()
    own = resources.ephemeral_storage_limit_bytes
    if own and own <= ceiling:
        return container
    held = resources.model_copy(update={"ephemeral_storage_limit_bytes": ceiling})
    return container.model_copy(update={"resources": held}, deep=True)


def _is_unset(value: Any) -> bool:
    return value is None or value == "" or value == []


def space_container_defaults(space: Space | SpaceSpec) -> SpaceContainerDefaults | None:
    spec = space.spec if isinstance(space, Space) else space
    return spec.defaults.container if spec.defaults is not None else None


def apply_space_defaults_to_container(
    space: Space | SpaceSpec, container: ContainerSpec
) -> ContainerSpec:
    """The container's effective spec: its own fields, the space's defaults for the unset ones.

    Returns a new model; neither argument is modified, and nothing is shared with the space
    (a later change to the space's lists cannot leak into the returned container).
    """
    defaults = space_container_defaults(space)
    if defaults is None:
        return container.model_copy(deep=True)
    update: dict[str, Any] = {}
    for field in DEFAULTABLE_FIELDS:
        default = getattr(defaults, field)
        if _is_unset(getattr(container, field)) and not _is_unset(default):
            update[field] = copy.deepcopy(default)
    return container.model_copy(update=update, deep=True)
