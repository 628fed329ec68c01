"""kukeond's nft table made whole again when something else changed it.

Debian's ``nftables.service`` runs ``flush ruleset`` at each start and reload, an operator
may type ``nft flush ruleset``, firewalld reloads: each takes kukeond's table (``inet
kukeon``) with it, and with it every space's egress chain and masquerade, the published
ports and ``ports-guard``, the chain that keeps a bridge with ``route_localnet=1`` from
reaching the host's loopback. Nothing in kukeond wrote the table again before the next
change of a space or cell, or the resync (``resyncInterval``, 300 s): until then cells
reached what their egress policy forbids, and the host's 127.0.0.1-only listeners.

:class:`NftKeeper` follows the kernel's notices of changes to the table (``runtime.network.
nftwatch``; no polling, nothing costs while nothing changes). It keeps the names of the
table's chains and sets up to date from kukeond's own changes (told apart by the pid of the
``nft`` that made them, ``nfttable.started_here``). When another process deletes or changes
anything in it:

1. the moment a notice says the table, ``ports-guard`` or its set of bridges went, before
   anything else, it sets ``route_localnet`` back to 0 on the node's bridges
   (``ports.close_open``); after a short settling (one flush is dozens of notices) it says
   what went and who did it (``nft``, pid) at warning level;
2. it sets ``route_localnet`` to 0 on the node's bridges a whole ``ports-guard`` does not
   cover, as the table shows it (``NftPorts.close_unguarded``): loopback publications stop
   answering, the safe way, until a cell publishing one has written the guard again and
   opened its bridge;
3. it requeues every space of the node (its reconcile writes the egress chain and
   masquerade again, and checks the FORWARD accepts, ``ForwardAccepts.forget``) and every
   cell that published ports (its pass publishes them again with the guard): the one path
   that writes them, no second copy here;
4. it waits (``RESTORE_SECONDS`` at most) for every chain and set that went to be back and
   says the outcome once per occurrence: a log line and a Warning Event on each space of
   the node, ``NetworkRulesRestored``, or ``NetworkRulesNotRestored`` naming what is still
   missing and the bridges left with ``route_localnet`` at 0.

Notices lost to a full receive buffer are made up for by a listing of the table: what the
names kukeond knew say should be there and is not counts as gone. A table changed again and
again (another program rewriting it) is restored with a growing pause between rounds, so
two writers do not spin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kukeon.api import EventReason, EventType, InvolvedObject, Kind
from kukeon.framework import ConvergeGate, EventRecorder
from kukeon.runtime.network.nfttable import FAMILY, NftTable, started_here
from kukeon.runtime.network.nftwatch import NftWatch, Notice
from kukeon.runtime.network.ports import BRIDGE_SET as PORTS_BRIDGE_SET
from kukeon.runtime.network.ports import GUARD_CHAIN, close_open

from .cellports import ports_adapter, publishing_cells
from .host import Host

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.3
"""How long notices gather before they are looked at: one ``flush ruleset`` is dozens."""
RESTORE_SECONDS = 30.0
"""How long the spaces' and cells' passes have to write what went before it is said missing."""
VERIFY_STEP_SECONDS = 0.25
CALM_SECONDS = 30.0
"""A round starting this soon after the last one waits first (doubling, up to MAX_PAUSE)."""
MAX_PAUSE_SECONDS = 60.0
_NAMED = ("chain", "set")
"""What the kept names are of (an nft map is a set to the kernel)."""

_GUARDING = {
    ("chain", GUARD_CHAIN),
    ("rule in chain", GUARD_CHAIN),
    ("set", PORTS_BRIDGE_SET),
    ("element of set", PORTS_BRIDGE_SET),
}
"""What of the table keeps a bridge with ``route_localnet=1`` from the host's loopback."""

Name = tuple[str, str]
Trigger = Callable[[Kind, tuple[str, ...]], bool]


def takes_the_guard(notice: Notice) -> bool:
    """Whether the change deleted the table, ``ports-guard`` or part of it (pure)."""
    if notice.action != "deleted":
        return False
    return notice.what == "table" or (notice.what, notice.name) in _GUARDING


def listed_names(listing: Mapping[str, Any] | None) -> frozenset[Name]:
    """The chains and sets (maps included) of an ``nft -j list table`` answer (pure)."""
    if listing is None:
        return frozenset()
    found: set[Name] = set()
    for item in listing.get("nftables", ()):
        for kind, what in (("chain", "chain"), ("set", "set"), ("map", "set")):
            if kind in item:
                found.add((what, str(item[kind].get("name"))))
    return frozenset(found)


def follow(names: set[Name], notice: Notice) -> None:
    """``names`` after one of kukeond's own changes."""
    if notice.what == "table" and notice.action == "deleted":
        names.clear()
    elif notice.what in _NAMED:
        name = (notice.what, notice.name)
        if notice.action == "added":
            names.add(name)
        else:
            names.discard(name)


def gone_by(names: frozenset[Name], foreign: Sequence[Notice]) -> frozenset[Name]:
    """What of ``names`` the foreign changes deleted (pure)."""
    gone: set[Name] = set()
    for notice in foreign:
        if notice.action != "deleted":
            continue
        if notice.what == "table":
            return names
        if (notice.what, notice.name) in names:
            gone.add((notice.what, notice.name))
    return frozenset(gone)


def _listed(items: Iterable[str], most: int = 6) -> str:
    ordered = sorted(set(items))
    shown = ", ".join(ordered[:most])
    return shown + (f" and {len(ordered) - most} more" if len(ordered) > most else "")


def describe_changes(foreign: Sequence[Notice]) -> str:
    """What the foreign notices did, in one clause (pure)."""
    if any(n.what == "table" and n.action == "deleted" for n in foreign):
        return "deleted the table"
    grouped: dict[tuple[str, str], set[str]] = {}
    for notice in foreign:
        grouped.setdefault((notice.action, notice.what), set()).add(notice.name)
    parts = [
        f"{action} {what}{'' if what == 'table' else ' ' + _listed(names)}"
        for (action, what), names in sorted(grouped.items())
    ]
    return "; ".join(parts)


def describe_names(names: Iterable[Name]) -> str:
    by_kind: dict[str, list[str]] = {}
    for what, name in names:
        by_kind.setdefault(what, []).append(name)
    return "; ".join(f"{what}s {_listed(found)}" for what, found in sorted(by_kind.items()))


class NftKeeper:
    """Follows the node's nft table and has it written again when another process changes it."""

    def __init__(
        self,
        *,
        host: Host,
        trigger: Trigger,
        recorder: EventRecorder | None = None,
        gate: ConvergeGate | None = None,
    ) -> None:
        self.host = host
        self.trigger = trigger
        self.recorder = recorder
        self.gate = gate
        """Closed while another kukeond holds this node's name: the bridges are closed (the
        safe side), nothing is written again (the resync when it opens does that)."""
        self.table = host.networks.settings.nft_table
        self._nft = NftTable(self.table)
        self._names: set[Name] = set()
        self._started = False
        self._last_round_end: float | None = None
        self._pause = 0.0
        self.rounds = 0
        """How many times the table was found changed by another process."""

    async def run(self) -> None:
        """Follow the table until cancelled (a supervised task)."""
        watch = NftWatch(self.table)
        try:
            watch.open()
        except OSError as error:
            log.warning(
                "cannot follow changes of nft table %s %s (%s): a ruleset flush is made up "
                "for by the next resync only",
                FAMILY,
                self.table,
                error,
            )
            return
        try:
            if self._started:
                # Restarted after a crash: what went meanwhile is what the names kept say.
                await self._handle([Notice(lost=True)])
            else:
                # Listed after joining the group: a change in between is in both, in order.
                self._names = set(listed_names(await self._nft.listing()))
            self._started = True
            while True:
                notices = await watch.wait()
                closed = await self._close_at_once(notices)
                settled = asyncio.get_running_loop().time() + SETTLE_SECONDS
                while (left := settled - asyncio.get_running_loop().time()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            more = await watch.wait()
                    except TimeoutError:
                        break
                    notices += more
                    closed = closed or await self._close_at_once(more)
                await self._handle(notices, watch.process_names, closed)
        finally:
            watch.close()

    async def _close_at_once(self, notices: Sequence[Notice]) -> list[str]:
        """When another process took the guard: ``route_localnet`` to 0 on the node's
        bridges, before the settling and any nft listing (no bridge stays open without its
        guard while the round gets ready); the bridges closed."""
        if not any(takes_the_guard(n) and not started_here(n.pid) for n in notices):
            return []
        return await asyncio.to_thread(close_open, await self._bridges())

    async def _handle(
        self,
        notices: Sequence[Notice],
        process_names: Mapping[int, str] | None = None,
        closed: Sequence[str] = (),
    ) -> None:
        foreign: list[Notice] = []
        gone: set[Name] = set()
        lost = False
        for notice in notices:  # in order: what kukeond had made when the other deleted
            if notice.lost:
                lost = True
            elif started_here(notice.pid):
                follow(self._names, notice)
            else:
                foreign.append(notice)
                gone |= gone_by(frozenset(self._names), [notice])
        if lost:
            # What kukeond knew of and the table lacks now: gone while notices were lost.
            listing = await self._nft.listing()
            gone |= self._names - listed_names(listing)
            if not gone and not foreign:
                log.info("notices of nft table %s were lost; the table is whole", self.table)
                self._names = set(listed_names(listing))
                return
        if not foreign and not gone:
            if closed:
                # Closed for a change that was kukeond's own after all (its nft's pid was
                # noted late): the cells publishing to loopback open their bridges again.
                await self._requeue_cells()
            return
        cause = describe_changes(foreign) if foreign else "lost chains or sets"
        await self._restore(
            cause=cause,
            by=self._who(foreign, process_names or {}),
            gone=frozenset(gone),
            closed=closed,
        )

    @staticmethod
    def _who(foreign: Sequence[Notice], names: Mapping[int, str]) -> str:
        pids = sorted({n.pid for n in foreign})
        if not pids:
            return "an unknown process (notices were lost)"
        return ", ".join(
            f"{names.get(pid, 'the kernel' if pid == 0 else 'a process')} (pid {pid})"
            for pid in pids[:4]
        )

    async def _restore(
        self, *, cause: str, by: str, gone: frozenset[Name], closed: Sequence[str]
    ) -> None:
        self.rounds += 1
        await self._calm_down()
        began = time.monotonic()
        went = f"; gone: {describe_names(gone)}" if gone else ""
        log.warning(
            "nft table %s %s was changed behind kukeond's back: %s by %s%s; writing the "
            "spaces' egress and masquerade and the cells' published ports and loopback "
            "guard again",
            FAMILY,
            self.table,
            cause,
            by,
            went,
        )
        spaces = await self._spaces()
        bridges = [self.host.networks.bridge_of(*space) for space in spaces]
        closed = [*closed, *await self._close_unguarded(bridges)]
        self.host.networks.forward.forget()
        if self.gate is not None and not self.gate.is_open():
            log.warning(
                "not writing nft table %s %s again: another kukeond holds this node's name "
                "(the resync when it is this one's again writes it)",
                FAMILY,
                self.table,
            )
            self._names = set(listed_names(await self._nft.listing()))
            self._last_round_end = time.monotonic()
            return
        for realm, space in spaces:
            self.trigger(Kind.SPACE, (realm, space))
        await self._requeue_cells()
        missing = await self._wait_back(gone)
        took = time.monotonic() - began
        node = self.host.settings.node_name
        what = f"node {node}: nft table {FAMILY} {self.table}: {cause} by {by}{went}"
        if not missing:
            done = f"restored in {took:.1f} s" if gone else "no chain or set went, rules requeued"
            message = (
                f"{what}; {done} (egress, masquerade, published ports and loopback guard "
                "written again by the spaces' and cells' passes)"
            )
            log.warning("%s", message)
            self._say(spaces, EventReason.NFT_RULES_RESTORED, message)
        else:
            closed = sorted({*closed, *await self._close_unguarded(bridges)})
            shut = (
                f"; route_localnet was set back to 0 on {', '.join(closed)} (loopback "
                "publications there do not answer until ports-guard is back)"
                if closed
                else ""
            )
            message = (
                f"{what}; still missing after {took:.0f} s: {describe_names(missing)}{shut}; "
                "see the spaces' and cells' status"
            )
            log.error("%s", message)
            self._say(spaces, EventReason.NFT_RULES_NOT_RESTORED, message)
        self._names = set(listed_names(await self._nft.listing()))
        self._last_round_end = time.monotonic()

    async def _calm_down(self) -> None:
        """A growing pause when the table keeps being changed (another writer fighting)."""
        if self._last_round_end is not None and (
            time.monotonic() - self._last_round_end < CALM_SECONDS
        ):
            self._pause = min(max(self._pause * 2, 1.0), MAX_PAUSE_SECONDS)
            log.warning(
                "nft table %s changed again %.0f s after being restored; waiting %.0f s",
                self.table,
                time.monotonic() - self._last_round_end,
                self._pause,
            )
            await asyncio.sleep(self._pause)
        else:
            self._pause = 0.0

    async def _requeue_cells(self) -> None:
        for key in await asyncio.to_thread(publishing_cells, self.host):
            self.trigger(Kind.CELL, key)

    async def _bridges(self) -> list[str]:
        return [self.host.networks.bridge_of(*space) for space in await self._spaces()]

    async def _spaces(self) -> list[tuple[str, str]]:
        """The spaces this node has a network for (its subnet file)."""
        keys = await self.host.networks.subnets.assignments()
        found = []
        for key in sorted(keys):
            realm, _, space = key.partition("/")
            if realm and space:
                found.append((realm, space))
        return found

    async def _close_unguarded(self, bridges: Iterable[str]) -> list[str]:
        try:
            closed = await ports_adapter(self.table).close_unguarded(bridges)
        except Exception:
            log.exception("setting route_localnet back to 0 on unguarded bridges failed")
            return []
        if closed:
            log.warning(
                "route_localnet set back to 0 on %s: ports-guard of nft table %s is gone "
                "(a cell would reach the host's 127.0.0.1); a cell publishing to loopback "
                "opens its bridge again once the guard is back",
                ", ".join(closed),
                self.table,
            )
        return closed

    async def _wait_back(self, gone: frozenset[Name]) -> frozenset[Name]:
        """What of ``gone`` is still not in the table after ``RESTORE_SECONDS`` at most."""
        deadline = time.monotonic() + RESTORE_SECONDS
        while True:
            missing = gone - listed_names(await self._nft.listing())
            if not missing or time.monotonic() >= deadline:
                return missing
            await asyncio.sleep(VERIFY_STEP_SECONDS)

    def _say(self, spaces: Sequence[tuple[str, str]], reason: str, message: str) -> None:
        if self.recorder is None:
            return
        for realm, space in spaces:
            involved = InvolvedObject.of(Kind.SPACE.value, (realm, space), None)
            self.recorder.record(involved, reason, message, type=EventType.WARNING)
