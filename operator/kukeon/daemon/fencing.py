"""When a node fences itself: the rule the node agent's fencing watch follows.

A node that etcd has not confirmed its heartbeat lease to for ``fenceAfterSeconds`` stops
its scheduler-placed cells by itself (docs/fleet.md), before the scheduler may place them
elsewhere (``nodeLeaseTtl + nodeLostTimeout``); a renewal unfences it. The seconds are
counted from the last confirmation of any of its leases: a lost lease is replaced by a new
one only once etcd answers, and until then the lost one's last confirmation still counts.

Before it fences, the node asks the peers it knew from its last view of the fleet
(``peerfence``) whether *they* reach etcd. It holds the fence (its cells run on) only when
every one of them answered and none does: etcd is then down for the whole fleet, and no
scheduler can move a cell (a move is an etcd write), so stopping them would turn an etcd
outage into a workload outage (Kubernetes' node lifecycle controller stops evicting in a
"full disruption" alike). A peer that does not answer, or one that reaches etcd, and it
fences as before: cut off from etcd and from its peers, the others may be moving its
cells. No peer known (a one-node fleet): it fences, as nothing vouches that nobody else
reaches etcd. It asks again at every look while it holds, and fences as soon as the rule
no longer holds; when a peer reaches etcd again after a hold, it first tries its own
heartbeat at once and fences only if that does not renew its lease within a short grace
(etcd back for one is most likely back for all: the leases survive an etcd restart).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .config import DaemonConfig

log = logging.getLogger(__name__)

FENCE_CHECKS_PER_PERIOD = 10
"""The fencing watch looks this many times per ``fenceAfterSeconds`` (at most once a second)."""
REGAIN_GRACE_MAX = 5.0
"""After a hold, how long a node whose peer reaches etcd again waits for its own lease's
renewal before it fences (a quarter of ``nodeLostTimeout`` at most: no move can come before
the node is NotReady that long)."""


class FenceStep(StrEnum):
    FENCE = "fence"
    UNFENCE = "unfence"


def fence_step(*, silent_for: float, fence_after: float, fenced: bool) -> FenceStep | None:
    """What the fencing watch does, ``silent_for`` seconds after the last renewal."""
    if not fenced and silent_for >= fence_after:
        return FenceStep.FENCE
    if fenced and silent_for < fence_after:
        return FenceStep.UNFENCE
    return None


@dataclass(frozen=True)
class PeerVerdict:
    """What the peers' answers allow: hold the fence, or fence; and why (for the log)."""

    hold: bool
    reason: str
    etcd_back: bool = False
    """Every peer answered and one reaches etcd: etcd is back (for it at least)."""


def peer_verdict(answers: Mapping[str, bool | None]) -> PeerVerdict:
    """The rule: hold only when every known peer answered (``True``: it reaches etcd,
    ``False``: it does not, ``None``: no answer) and none reaches etcd."""
    if not answers:
        return PeerVerdict(False, "no peer is known to vouch that etcd is down for all")
    unanswered = sorted(name for name, answer in answers.items() if answer is None)
    if unanswered:
        return PeerVerdict(False, f"peer(s) {', '.join(unanswered)} did not answer")
    reaching = sorted(name for name, answer in answers.items() if answer)
    if reaching:
        return PeerVerdict(False, f"peer(s) {', '.join(reaching)} reach etcd", etcd_back=True)
    return PeerVerdict(True, f"none of its peers ({', '.join(sorted(answers))}) reaches etcd")


def regain_grace(node_lost_timeout: float) -> float:
    return min(REGAIN_GRACE_MAX, node_lost_timeout / 4)


class FencedCells(Protocol):
    """What the watch stops and brings back (``controllers.Departures``)."""

    async def fence(self) -> int: ...

    async def unfence(self) -> None: ...


Ask = Callable[[], Awaitable[Mapping[str, bool | None]]]
"""Asks every known peer whether it reaches etcd (bounded): name -> answer."""


class FencingWatch:
    """Compares the time since the last renewal with ``fenceAfterSeconds``, asks the peers
    before it fences, and fences, holds or unfences the node's cells."""

    def __init__(
        self,
        *,
        node_name: str,
        fence_after: float,
        grace: float,
        silent_for: Callable[[], float],
        cells: FencedCells,
        retry_heartbeat: Callable[[], None],
    ) -> None:
        self.node_name = node_name
        self.fence_after = fence_after
        self.grace = grace
        self.silent_for = silent_for
        self.cells = cells
        self.retry_heartbeat = retry_heartbeat
        """Cuts the heartbeat loop's back-off short: a peer reaches etcd again."""
        self.ask: Ask | None = None
        """Set once the API can ask the other nodes (``peerfence.PeerCheck``); None: it fences."""
        self.fenced = False
        self.held = False
        """The fence is due, but every peer says etcd is down for it too."""
        self._regain_deadline: float | None = None

    async def look(self) -> None:
        """One look: fence, hold, release or unfence as the time and the peers say."""
        silent = self.silent_for()
        step = fence_step(silent_for=silent, fence_after=self.fence_after, fenced=self.fenced)
        if step is FenceStep.UNFENCE:
            await self._unfence()
        elif step is FenceStep.FENCE:
            if await self._holds():
                return
            log.warning(
                "node %s: heartbeat lease not renewed for %.1fs (fenceAfterSeconds %g): fencing",
                self.node_name,
                silent,
                self.fence_after,
            )
            self.fenced = True
            await self.cells.fence()
        elif self.held:
            self._release("its heartbeat lease is renewed again")

    async def _unfence(self) -> None:
        try:
            await self.cells.unfence()
        except Exception as error:  # etcd not answering yet: next look
            log.info("node %s: unfencing postponed (%r)", self.node_name, error)
            return
        self.fenced = False
        log.info("node %s: heartbeat lease renewed again, unfenced", self.node_name)

    async def _holds(self) -> bool:
        """Whether the fence due now is held (the peers' answers), saying when it starts
        and ends."""
        if self.ask is None:
            verdict = PeerVerdict(False, "this node cannot ask its peers (no API to ask with)")
        else:
            verdict = peer_verdict(await self.ask())
        if verdict.hold:
            self._regain_deadline = None
            if not self.held:
                self.held = True
                log.warning(
                    "node %s: heartbeat lease not renewed for %.1fs, but %s: etcd is down "
                    "for the whole fleet, so no cell can be moved; holding the fence (its "
                    "cells run on) and asking again at every look",
                    self.node_name,
                    self.silent_for(),
                    verdict.reason,
                )
            return True
        if self.held and verdict.etcd_back:
            now = time.monotonic()
            if self._regain_deadline is None:
                self._regain_deadline = now + self.grace
                log.info(
                    "node %s: %s again: renewing its own lease now (fencing in %gs otherwise)",
                    self.node_name,
                    verdict.reason,
                    self.grace,
                )
                self.retry_heartbeat()
            if now < self._regain_deadline:
                return True
        if self.held:
            self._release(f"{verdict.reason}; fencing")
        else:
            log.warning("node %s: not holding the fence: %s", self.node_name, verdict.reason)
        return False

    def _release(self, why: str) -> None:
        self.held = False
        self._regain_deadline = None
        log.warning("node %s: fence hold released: %s", self.node_name, why)

    async def run(self, is_open: Callable[[], bool]) -> None:
        """Look every ``fenceAfterSeconds / FENCE_CHECKS_PER_PERIOD`` (at most a second),
        while this process holds the node's name (``is_open``)."""
        period = min(1.0, self.fence_after / FENCE_CHECKS_PER_PERIOD)
        while True:
            await asyncio.sleep(period)
            if is_open():  # else not this process's node to fence or bring back
                await self.look()


def fencing_watch(
    config: DaemonConfig,
    cells: FencedCells | None,
    silent_for: Callable[[], float],
    retry_heartbeat: Callable[[], None],
) -> FencingWatch | None:
    """The node agent's fencing watch; None when it does not fence (no cells, or the
    embedded etcd: ``DaemonConfig.fences``)."""
    if cells is None or not config.fences:
        return None
    return FencingWatch(
        node_name=config.node_name,
        fence_after=config.fence_after,
        grace=regain_grace(config.node_lost_timeout),
        silent_for=silent_for,
        cells=cells,
        retry_heartbeat=retry_heartbeat,
    )
