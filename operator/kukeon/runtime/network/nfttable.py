"""One nft table driven with JSON: listed as JSON, changed by JSON batches.

nft applies a batch in one transaction, so a change is never half made. A cancelled call
(its reconcile was, kukeond is stopping) kills nft and reaps it (``run_program``).
``egress`` (a space's egress chains and masquerade) and ``ports`` (cells' published ports)
each keep their own table through one of these.

Every ``nft`` started here is noted by its pid (:func:`started_here`): the kernel's
notifications of a change carry the netlink port id of the process that made it, which for
the ``nft`` command is its pid, so ``nftwatch`` tells kukeond's own changes of its table
from anybody else's (a ``flush ruleset``) without listing anything.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kukeon.processes import run_program
from kukeon.runtime.network.errors import HostPrerequisiteError, NetworkError, NftError

FAMILY: Final = "inet"
OWN_PID_SECONDS: Final = 120.0
"""How long a pid of an ``nft`` started here counts as kukeond's: longer than its notices
can wait to be read (a restore round, 30 s, and its pause, 60 s at most). The kernel hands
pids out in turn, so one comes back only after all of them (``pid_max``, 32768 at least)
were used: minutes even at a few hundred processes started a second."""

_own_pids: dict[int, float] = {}
_own_lock = threading.Lock()


def _note_own(pid: int) -> None:
    """Called on the thread that started ``nft``, before it can have changed anything."""
    now = time.monotonic()
    with _own_lock:
        _own_pids[pid] = now
        for old in [p for p, at in _own_pids.items() if now - at > OWN_PID_SECONDS]:
            del _own_pids[old]


def started_here(pid: int) -> bool:
    """Whether ``pid`` is an ``nft`` this process started (in the last ``OWN_PID_SECONDS``)."""
    with _own_lock:
        at = _own_pids.get(pid)
    return at is not None and time.monotonic() - at <= OWN_PID_SECONDS


def map_keys(listing: Mapping[str, Any], name: str) -> frozenset[str]:
    """The keys of the map ``name`` in an ``nft -j list table`` answer."""
    found: set[str] = set()
    for item in listing.get("nftables", ()):
        if "map" in item and item["map"].get("name") == name:
            for element in item["map"].get("elem", ()):
                key = element[0] if isinstance(element, list) else element
                if isinstance(key, str):
                    found.add(key)
    return frozenset(found)


class NftTable:
    """The table ``name`` of ``family`` (``inet`` unless said) as the ``nft`` command shows
    and changes it (a batch may change other tables too)."""

    def __init__(self, name: str, *, nft_binary: str | None = None, family: str = FAMILY) -> None:
        self.name = name
        self.family = family
        self._nft_binary = nft_binary

    @property
    def nft_binary(self) -> str:
        if self._nft_binary is None:
            found = shutil.which("nft")
            if found is None:
                raise HostPrerequisiteError(
                    piece="the `nft` command", package="nftables", detail="not found on PATH"
                )
            self._nft_binary = found
        return self._nft_binary

    async def listing(self) -> Mapping[str, Any] | None:
        """``nft -j list table``'s document; None when the table does not exist."""
        returncode, stdout, stderr = await self._exec(
            ["-j", "list", "table", self.family, self.name], None
        )
        if returncode != 0:
            if "No such file or directory" in stderr:
                return None
            raise NftError(action=f"list table {self.family} {self.name}", stderr=stderr)
        try:
            listing: Mapping[str, Any] = json.loads(stdout)
        except ValueError as error:
            raise NetworkError(
                f"nft printed invalid JSON for table {self.name}: {error}"
            ) from error
        return listing

    async def apply(self, batch: Mapping[str, Any], *, action: str) -> None:
        """Apply one JSON batch (one transaction); ``action`` names it in the error."""
        await self.apply_text(json.dumps(batch), action=action, json_syntax=True)

    async def apply_text(self, script: str, *, action: str, json_syntax: bool = False) -> None:
        """Apply one nft script (one transaction), in nft's text syntax unless
        ``json_syntax``: what nft's JSON cannot say (a set's ``dynamic`` flag)."""
        args = ["-j", "-f", "-"] if json_syntax else ["-f", "-"]
        returncode, _, stderr = await self._exec(args, script)
        if returncode != 0:
            raise NftError(action=action, stderr=stderr)

    async def _exec(self, args: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        try:
            finished = await run_program(
                [self.nft_binary, *args],
                stdin=stdin.encode() if stdin is not None else None,
                started=_note_own,
            )
        except FileNotFoundError as error:
            raise HostPrerequisiteError(
                piece="the `nft` command", package="nftables", detail=str(error)
            ) from error
        return (
            finished.returncode,
            finished.stdout.decode("utf-8", errors="replace"),
            finished.stderr.decode("utf-8", errors="replace"),
        )
