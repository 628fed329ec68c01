"""Network namespaces made ahead of the cells that will need them (issue 18).

A cell on its space's bridge needs a network namespace with ``lo`` up and a veth pair whose
peer is its ``eth0``; making them (a thread's ``unshare`` and bind mount, the pair, the
links set up: netlink requests that cost kukeond CPU) used to run beside the root task's
create, on the two cores containerd, its shim and runc need then. The pool makes a few of
them while no cell is starting, so a new cell takes one and only what is its own is done
on its start: the namespace bound at the cell's path, the host end renamed after the cell,
plugged into its space's bridge and set up, the address and the default route.

An entry is not tied to a space: its host end is nobody's port until claimed (a space's
bridge with no cell stays idle and deletable; a bridge made again is the one a claim
plugs into), and its name is the pool's (``kkp`` + 12 random hex characters; the
namespace ``kukeon-pool-<same>``), never a cell's, so the orphan collector, which only
removes namespaces marked as a cell's (``owned_netns_dir``), leaves it alone. Each entry
is written as a file (named by its token) under the pool's directory before anything of it
exists and removed once a claimed entry's host end carries the cell's name; whatever file
is there when kukeond starts is an entry nobody holds any more (a kill -9, a crash
half-way through a make or a claim): ``sweep`` removes its namespace and its host end
(which takes the peer with it), by name. A claim that was bound but not renamed loses its
pair to the sweep; the cell's attachment then makes a pair from nothing, as before the
pool.

Entries are handed out from a deque by the event loop's thread only (never the same
namespace twice); refills run in one supervised task (``run``), one entry at a time, and
wait until no cell namespace was asked for in the last ``quiet_seconds``, so a refill's
CPU does not land on a starting cell. ``size`` 0 turns the pool off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from kukeon.runtime.hostfiles import make_dirs
from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.network import veth
from kukeon.runtime.network.bridge import bridge_name
from kukeon.runtime.network.errors import NetnsError
from kukeon.runtime.network.netns import NetnsManager, bind_netns, is_mounted_netns

log = logging.getLogger(__name__)

POOL_NETNS_PREFIX = "kukeon-pool-"
POOL_IFNAME_PREFIX = "kkp"
SPARE_IFNAME = "eth0"
"""What the peer is called in a pool namespace: the cell's first interface."""
DEFAULT_QUIET_SECONDS = 1.0


@dataclass(frozen=True)
class PoolEntry:
    token: str
    peer_index: int = 0
    """The peer's index in the entry's namespace (0: not known, a swept entry)."""

    @property
    def netns_name(self) -> str:
        return POOL_NETNS_PREFIX + self.token

    @property
    def host_ifname(self) -> str:
        return POOL_IFNAME_PREFIX + self.token  # 3 + 12 = 15 bytes, IFNAMSIZ - 1


class NetnsPool:
    """A node's spare namespaces, each with its pair made, waiting for a cell."""

    def __init__(
        self,
        *,
        netns: NetnsManager,
        directory: Path,
        size: int,
        cell_prefix: str = "kukeon_",
        instance: str = "",
        quiet_seconds: float = DEFAULT_QUIET_SECONDS,
    ) -> None:
        self.netns = netns
        self.cell_prefix = cell_prefix
        self.instance = instance
        self.directory = directory
        self.size = size
        self.quiet_seconds = quiet_seconds
        self._ready: deque[PoolEntry] = deque()
        self._claimed: dict[Path, PoolEntry] = {}
        """A cell's namespace path -> the entry bound there, until its host end is renamed."""
        self._wanted = asyncio.Event()
        self._last_use = 0.0
        self._making: asyncio.Future[PoolEntry] | None = None
        self._bridges: set[str] = set()
        """The bridges of the spaces whose cells kukeond attaches itself, as their space
        networks were last ensured since this start (a cell of another is not served)."""

    @property
    def enabled(self) -> bool:
        return self.size > 0

    @property
    def ready(self) -> int:
        return len(self._ready)

    def note_bridge(self, bridge: str, *, builtin: bool) -> None:
        if builtin:
            self._bridges.add(bridge)
        else:
            self._bridges.discard(bridge)

    def serves(self, bridge: str) -> bool:
        """Whether a new cell on ``bridge`` may take a spare (its ``eth0`` is kukeond's)."""
        return self.enabled and bridge in self._bridges

    def serves_cell(self, cell_id: str) -> bool:
        """``serves`` for the space of the cell network id ``<prefix><realm>_<space>_...``
        (a cell with a network of its own gives its spare back: ``abandon``)."""
        parts = cell_id.removeprefix(self.cell_prefix).split("_")
        if not cell_id.startswith(self.cell_prefix) or len(parts) != 4:
            return False
        return self.serves(bridge_name(parts[0], parts[1], self.instance))

    def busy(self) -> None:
        """A cell's namespace is being made: the refill waits for a quiet moment."""
        self._last_use = time.monotonic()

    async def claim(self, path: Path) -> bool:
        """Whether ``path`` (the cell's) is a namespace now: one already, or a spare bound
        there; False when none is ready (the caller makes one)."""
        self.busy()
        if not self._ready:
            self._wanted.set()
            return False
        entry = self._ready.popleft()
        try:
            bound = await run_on_host_thread(self._bind, entry, path)
        except Exception:
            log.warning("could not bind spare namespace %s", entry.netns_name, exc_info=True)
            await run_on_host_thread(self._remove, entry)
            self._wanted.set()
            return False
        if bound is None:  # a namespace already: the spare stays the pool's
            self._ready.appendleft(entry)
            return True
        self._claimed[path] = entry
        self._wanted.set()
        return True

    def _bind(self, entry: PoolEntry, path: Path) -> PoolEntry | None:
        if is_mounted_netns(path):
            return None
        if path.exists():  # left by a crash between making a mount point and binding it
            path.unlink()
        bind_netns(self.netns.path(entry.netns_name), path)
        # The cell's bind mount holds the namespace now; the pool's name goes.
        self.netns.remove_now(entry.netns_name)
        return entry

    def spare_of(self, netns: Path) -> tuple[str, int] | None:
        """The host end of the pair a claim left in ``netns`` (not renamed yet) and its
        peer's index there."""
        entry = self._claimed.get(netns)
        return (entry.host_ifname, entry.peer_index) if entry is not None else None

    def settled(self, netns: Path) -> None:
        """The claimed entry in ``netns`` is the cell's now (its host end renamed, or the
        cell's namespace removed): forgotten. Blocking (a file's unlink)."""
        entry = self._claimed.pop(netns, None)
        if entry is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / entry.token).unlink()

    async def abandon(self, netns: Path) -> None:
        """The cell whose namespace is ``netns`` goes before its claimed pair was used."""
        spare = self.spare_of(netns)
        if spare is not None:
            await run_on_host_thread(veth.remove_port, spare[0])
            await run_on_host_thread(self.settled, netns)

    async def run(self) -> None:
        """Keep ``size`` entries ready, made one at a time in quiet moments (supervised:
        a failure is logged by the supervisor and the loop starts again)."""
        while True:
            if len(self._ready) >= self.size:
                self._wanted.clear()
                await self._wanted.wait()
                continue
            left = self._last_use + self.quiet_seconds - time.monotonic()
            if left > 0:  # a cell's namespace was asked for lately: later
                await asyncio.sleep(left)
                continue
            # Shielded: a stop while an entry is made waits for it (``drain``), so a clean
            # stop leaves no entry behind.
            self._making = asyncio.ensure_future(run_on_host_thread(self._make))
            made = await asyncio.shield(self._making)
            self._making = None
            self._ready.append(made)

    def _make(self) -> PoolEntry:
        token = secrets.token_hex(6)
        entry = PoolEntry(token)
        make_dirs(self.directory)
        # Written before the namespace and the pair exist: a crash leaves what `sweep` finds.
        (self.directory / entry.token).touch(mode=0o600)
        try:
            path = self.netns.create_now(entry.netns_name)
            return PoolEntry(token, veth.make_spare(entry.host_ifname, path, SPARE_IFNAME))
        except BaseException:
            self._remove(entry)
            raise

    def _remove(self, entry: PoolEntry) -> None:
        """The entry's namespace (its peer goes with it), host end and file, by name."""
        with contextlib.suppress(NetnsError, OSError):
            self.netns.remove_now(entry.netns_name)
        with contextlib.suppress(Exception):
            veth.remove_port(entry.host_ifname)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / entry.token).unlink()

    def sweep(self) -> int:
        """Remove every entry on file (kukeond's start: nothing holds them); how many.
        Blocking."""
        try:
            tokens = [p.name for p in self.directory.iterdir() if _is_token(p.name)]
        except FileNotFoundError:
            return 0
        for token in tokens:
            self._remove(PoolEntry(token))
        self._ready.clear()
        self._claimed.clear()
        return len(tokens)

    async def drain(self) -> None:
        """Remove the ready entries, and the one being made (kukeond's stop, once ``run``
        is stopped); claimed ones are the cells'."""
        making, self._making = self._making, None
        if making is not None:
            with contextlib.suppress(Exception):
                self._ready.append(await making)
        while self._ready:
            await run_on_host_thread(self._remove, self._ready.popleft())


def _is_token(name: str) -> bool:
    return len(name) == 12 and all(c in "0123456789abcdef" for c in name)
