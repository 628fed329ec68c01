"""Whether a task create runc failed failed because a pids cgroup above the container was
at its limit: the kukeon root (``hostReservedPids``), the realm's ``spec.limits.pids``, or
a space's, stack's or cell's ``pids.max``.

runc's own message says nothing of it (its init dies creating its Go threads: "read
init-p: connection reset by peer", which has other causes), and the kernel counts the
refused fork (``pids.events`` ``max``) in the forking task's cgroup on v1 and on v2 before
Linux 6.13: the container's, which runc removes with the failed task. So the counters of
every level are read before the create and compared after it: a level's ``max`` count that
grew (v2 since 6.13), its ``pids.peak`` that rose to its limit during the create, or a
level at its limit before (its peak there) with less room than runc's init needs."""

from __future__ import annotations

import logging
from typing import Protocol

from kukeon.api import ContainerSpec
from kukeon.runtime.cgroups import CgroupError, CgroupPath, PidsCount

logger = logging.getLogger(__name__)

INIT_PIDS = 6
"""The tasks runc's init holds while it starts a container (its Go threads; 4 free failed,
6 started one on a 2-core host, as ``REALM_PIDS_START_MIN`` says)."""

_LEVELS = ("the kukeon root's (hostReservedPids)", "the realm's", "the space's", "the stack's")


class PidsReader(Protocol):
    """What is read here of a cgroup driver (``CgroupDriver.pids_counts``)."""

    async def pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]: ...


class PidsLimitReachedError(Exception):
    """A container's task could not be created: a pids cgroup above it was at its limit.
    Retried with back-off: it starts once other containers below that cgroup exit or the
    limit is raised."""

    def __init__(
        self, container: ContainerSpec, full: PidsCount, *, level: str, before: int, detail: str
    ) -> None:
        self.cgroup = full.cgroup
        self.limit = full.limit
        super().__init__(
            f"container {container.id!r} could not start: {level} pids limit is reached "
            f"(cgroup {full.cgroup}: pids.max {full.limit}, pids.current {before} before the "
            f"start, {full.current} now; runc's init needs up to {INIT_PIDS}); it starts "
            f"once other containers there exit or the limit is raised (runc: {detail[:300]})"
        )


def _at_limit(before: PidsCount, after: PidsCount) -> bool:
    limit = after.limit
    if limit is None:
        return False
    if after.refused > before.refused or after.current >= limit:
        return True
    peak = after.peak
    if peak is None or peak < limit:
        return False
    # Reached during the create, or reached before and too little room left for the init.
    return (before.peak or 0) < limit or limit - before.current < INIT_PIDS


def full_level(
    before: tuple[PidsCount, ...], after: tuple[PidsCount, ...]
) -> tuple[int, PidsCount, PidsCount] | None:
    """The innermost level (0: the kukeon root) found at its limit across a failed create,
    with its counters before and after; None when none was."""
    earlier = {count.cgroup: count for count in before}
    for depth in range(len(after) - 1, -1, -1):
        count = after[depth]
        was = earlier.get(count.cgroup)
        if was is not None and _at_limit(was, count):
            return depth, was, count
    return None


async def read_pids(cgroups: PidsReader, path: CgroupPath) -> tuple[PidsCount, ...]:
    """The pids counters from the kukeon root down to ``path`` (none when unreadable: the
    create goes on, and a failure is then left as runc said it)."""
    try:
        return await cgroups.pids_counts(path)
    except (CgroupError, OSError) as error:
        logger.warning("pids counters of %s not read: %s", path, error)
        return ()


async def pids_limit_error(
    cgroups: PidsReader,
    path: CgroupPath,
    before: tuple[PidsCount, ...],
    container: ContainerSpec,
    detail: str,
) -> PidsLimitReachedError | None:
    """The failed create of ``container`` (below the cell cgroup ``path``, counters
    ``before`` it) as a pids limit reached, when a level shows it; else None."""
    if not before:
        return None
    found = full_level(before, await read_pids(cgroups, path))
    if found is None:
        return None
    depth, was, full = found
    level = _LEVELS[depth] if depth < len(_LEVELS) else "the cell's"
    return PidsLimitReachedError(container, full, level=level, before=was.current, detail=detail)
