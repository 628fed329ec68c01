"""Whether a task create runc failed because a pids cgroup above the container was
at its limit: the kukeon root (``hostReservedPids``), the realm's ``spec.limits.pids``, or
a space's, stack's or cell's ``pids.max``.

runc's own message says nothing of it (its init dies creating its Go threads: "read
init-p: connection reset by peer", which has other causes). The counters of every level
are read only after a create failed (a start that succeeds reads none: they were ~1 ms of
kukeond's CPU per start when read before every create): a level is full when it is at its
limit now, or when its limit was reached (its ``pids.peak`` at it, or a fork refused there,
``pids.events`` ``max``) and it has less room than runc's init needs. A level that reached
its limit once and has room now is another cause. Without a before, a level filled only
for the moment of the create by another container's start at once (its init gone by the
read) is not told: runc's word stands and the create is retried as any."""

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
        self, container: ContainerSpec, full: PidsCount, *, level: str, detail: str
    ) -> None:
        self.cgroup = full.cgroup
        self.limit = full.limit
        super().__init__(
            f"container {container.id!r} could not start: {level} pids limit is reached "
            f"(cgroup {full.cgroup}: pids.max {full.limit}, pids.current {full.current} after the "
            f"failed start; runc's init needs up to {INIT_PIDS}); it starts "
            f"once other containers there exit or the limit is raised (runc: {detail[:300]})"
        )


def _at_limit(count: PidsCount) -> bool:
    limit = count.limit
    if limit is None:
        return False
    if count.current >= limit:
        return True
    reached = (count.peak is not None and count.peak >= limit) or count.refused > 0
    return reached and limit - count.current < INIT_PIDS


def full_level(counts: tuple[PidsCount, ...]) -> tuple[int, PidsCount] | None:
    """The innermost level (0: the kukeon root) found at its limit after a failed create,
    with its counters; None when none was."""
    for depth in range(len(counts) - 1, -1, -1):
        if _at_limit(counts[depth]):
            return depth, counts[depth]
    return None


async def read_pids(cgroups: PidsReader, path: CgroupPath) -> tuple[PidsCount, ...]:
    """The pids counters from the kukeon root down to ``path`` (none when unreadable: a
    failure is then left as runc said it)."""
    try:
        return await cgroups.pids_counts(path)
    except (CgroupError, OSError) as error:
        logger.warning("pids counters of %s not read: %s", path, error)
        return ()


async def pids_limit_error(
    cgroups: PidsReader, path: CgroupPath, container: ContainerSpec, detail: str
) -> PidsLimitReachedError | None:
    """The failed create of ``container`` (below the cell cgroup ``path``) as a pids limit
    reached, when a level shows it; else None."""
    found = full_level(await read_pids(cgroups, path))
    if found is None:
        return None
    depth, full = found
    level = _LEVELS[depth] if depth < len(_LEVELS) else "the cell's"
    return PidsLimitReachedError(container, full, level=level, detail=detail)
