"""Forwarding accepts in iptables' FORWARD chain for a space whose cells kukeond attaches.

The CNI ``firewall`` plugin (iptables backend) accepted each cell's traffic in iptables'
FORWARD chain, so cells kept working on hosts whose FORWARD policy is DROP (Docker sets
it). For a space attached in-process (``inprocess``) the same is done once per space, not
per cell: two rules, marked with the comment ``kukeon <bridge>``::

    -I FORWARD -i <bridge> -m comment --comment "kukeon <bridge>" -j ACCEPT
    -I FORWARD -o <bridge> -m conntrack --ctstate RELATED,ESTABLISHED \\
        -m comment --comment "kukeon <bridge>" -j ACCEPT

They only lift iptables' own verdict: the space's egress chain in kukeon's nft table still
drops what its policy denies (every base chain on a hook must accept a packet). They are
checked at the space's first ensure in a daemon's life (two ``iptables -C``), and again
after the node found its nft table changed behind its back (``forget``: a ruleset flush
takes iptables' rules too), made when missing, and removed with the space's network.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import shutil

from kukeon.processes import run_program
from kukeon.runtime.network.errors import HostPrerequisiteError, NetworkError

log = logging.getLogger(__name__)


MARK = "kukeon "
"""What the comment of each of kukeon's FORWARD accepts starts with (the bridge follows)."""


def comment(bridge: str) -> str:
    return f"{MARK}{bridge}"


def marked_rules(listing: str) -> list[tuple[str, list[str]]]:
    """The rules of ``iptables -S FORWARD``'s ``listing`` marked ``kukeon <bridge>``, each
    as (bridge, its specification after ``-A FORWARD``) (pure)."""
    found: list[tuple[str, list[str]]] = []
    for line in listing.splitlines():
        spec = shlex.split(line)
        if spec[:2] != ["-A", "FORWARD"]:
            continue
        marks = [spec[at + 1] for at in range(len(spec) - 1) if spec[at] == "--comment"]
        bridge = next((mark.removeprefix(MARK) for mark in marks if mark.startswith(MARK)), "")
        if bridge:
            found.append((bridge, spec[2:]))
    return found


def forward_rules(bridge: str) -> list[list[str]]:
    """The two rules' specifications (after ``FORWARD``) for ``bridge`` (pure)."""
    mark = ["-m", "comment", "--comment", comment(bridge), "-j", "ACCEPT"]
    return [
        ["-i", bridge, *mark],
        ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *mark],
    ]


class ForwardAccepts:
    """Makes and removes the spaces' FORWARD accepts (one instance per daemon)."""

    def __init__(self, *, iptables: str | None = None) -> None:
        self._iptables = iptables
        self._made: set[str] = set()
        self._lock = asyncio.Lock()

    def _binary(self) -> str:
        binary = self._iptables or shutil.which("iptables")
        if binary is None:
            raise HostPrerequisiteError(
                piece="the `iptables` command", package="iptables", detail="not found on PATH"
            )
        return binary

    async def _run(self, *args: str) -> tuple[int, str]:
        # `-w 5`: waits at most 5 s for the xtables lock.
        finished = await run_program([self._binary(), "-w", "5", *args])
        return finished.returncode, finished.stdout.decode() + finished.stderr.decode()

    async def allow(self, bridge: str) -> bool:
        """Make the bridge's accepts unless this daemon already did; whether any was added."""
        if bridge in self._made:
            return False
        added = False
        async with self._lock:
            for rule in forward_rules(bridge):
                code, _ = await self._run("-C", "FORWARD", *rule)
                if code == 0:
                    continue
                code, output = await self._run("-I", "FORWARD", *rule)
                if code != 0:
                    raise NetworkError(f"iptables -I FORWARD {shlex.join(rule)}: {output.strip()}")
                added = True
            self._made.add(bridge)
        return added

    def forget(self) -> None:
        """Check every bridge's accepts again at its next ``allow`` (a ruleset flush took
        iptables' rules with kukeon's nft table)."""
        self._made.clear()

    async def remove(self, bridge: str) -> bool:
        """Delete every FORWARD rule marked for ``bridge``; whether there was one."""
        self._made.discard(bridge)
        async with self._lock:
            code, listing = await self._run("-S", "FORWARD")
            if code != 0:
                return False
            found = False
            for marked, spec in marked_rules(listing):
                if marked != bridge:
                    continue
                code, output = await self._run("-D", "FORWARD", *spec)
                if code != 0:
                    log.warning(
                        "could not delete `-A FORWARD %s`: %s", shlex.join(spec), output.strip()
                    )
                found = True
            return found
