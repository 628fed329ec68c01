"""Where a resource's cgroup lives: ``<root>/<realm>[/<space>[/<stack>[/<cell>[/<container>]]]]``.

The kukeon root (default ``/kukeon``) is configurable so that several kukeond, or several
test runs, share one host without touching each other's trees. Components are validated
here, once, so that no caller can escape the root with ``..`` or a slash.
"""

from __future__ import annotations

from dataclasses import dataclass

from kukeon.runtime.cgroups.errors import InvalidCgroupPathError

DEFAULT_ROOT = "/kukeon"

LOG_COPIERS = "kukeon.loggers"
"""The child of each realm's cgroup that its cells' log copiers join (``crilog``), so that
what they copy counts in the realm's CPU share: a dot no space's name (a DNS label) has."""

# realm, space, stack, cell, container
MAX_DEPTH = 5
LEVEL_NAMES = ("realm", "space", "stack", "cell", "container")


def _check_component(component: str, *, what: str) -> str:
    if not component:
        raise InvalidCgroupPathError(f"{what} name is empty")
    if component in {".", ".."} or "/" in component or "\0" in component:
        raise InvalidCgroupPathError(f"{what} name {component!r} cannot name a cgroup directory")
    if component.startswith("cgroup."):
        # would collide with the core interface files of every cgroup
        raise InvalidCgroupPathError(f"{what} name {component!r} collides with cgroup.* files")
    if len(component.encode()) > 255:
        raise InvalidCgroupPathError(f"{what} name {component[:20]!r}... is longer than 255 bytes")
    return component


def normalize_root(root: str) -> tuple[str, ...]:
    """Split and validate the kukeon root (``/kukeon`` -> ``("kukeon",)``); it may not be ``/``."""
    parts = tuple(part for part in root.split("/") if part)
    if not parts:
        raise InvalidCgroupPathError(
            f"kukeon cgroup root {root!r} must name a directory below the hierarchy root"
        )
    for part in parts:
        _check_component(part, what="kukeon root component")
    return parts


@dataclass(frozen=True, slots=True)
class CgroupPath:
    """A resource's place below the kukeon root: 1 (realm) to 5 (container) components."""

    parts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.parts) <= MAX_DEPTH:
            raise InvalidCgroupPathError(
                f"a kukeon cgroup path has 1 to {MAX_DEPTH} components "
                f"(realm/space/stack/cell/container), got {len(self.parts)}"
            )
        for level, part in zip(LEVEL_NAMES, self.parts, strict=False):
            _check_component(part, what=level)

    @classmethod
    def of(
        cls,
        realm: str,
        space: str | None = None,
        stack: str | None = None,
        cell: str | None = None,
        container: str | None = None,
    ) -> CgroupPath:
        """Build a path from named levels; a level may be given only if its parent is."""
        levels = (space, stack, cell, container)
        parts = [realm]
        for value in levels:
            if value is None:
                break
            parts.append(value)
        given = sum(1 for value in levels if value is not None)
        if given != len(parts) - 1:
            missing = LEVEL_NAMES[len(parts)]
            raise InvalidCgroupPathError(
                f"cgroup path needs a {missing} name before the levels below it"
            )
        return cls(tuple(parts))

    @property
    def parent(self) -> CgroupPath | None:
        return CgroupPath(self.parts[:-1]) if len(self.parts) > 1 else None

    def child(self, name: str) -> CgroupPath:
        return CgroupPath((*self.parts, name))

    def __str__(self) -> str:
        return "/".join(self.parts)


def log_copiers_path(realm: str) -> CgroupPath:
    """The cgroup of the realm's log copiers (:data:`LOG_COPIERS`)."""
    return CgroupPath((realm, LOG_COPIERS))
