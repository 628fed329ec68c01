"""Whether this process converges its node now: the gate every host-changing pass honours.

A kukeond changes its host only for the node whose name it holds. When another live
kukeond's lease holds that name (two hosts given one ``--node-name``, a copy started
twice: ``heartbeats``), both converging would run each of the node's cells twice and undo
each other's work. So the displaced process closes its ``ConvergeGate``: the operator's
queues hold every reconcile, finalize and timer pass (``ObjectQueues.pause``), and the
controllers' own loops (orphan collection, probes, departures, evictions...) wait for the
gate before each pass. Nothing it runs is stopped: the workloads go on as they are, as a
kubelet that cannot renew its lease leaves its pods running. A pass under way when the
gate closes finishes. When the name is this process's again, the gate opens and the
operator resyncs every object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

GateListener = Callable[[bool], None]
"""Called with True when the gate opens, False when it closes."""


class ConvergeGate:
    """Open while this process may change its host for its node; closed with a reason."""

    def __init__(self) -> None:
        self.why_closed: str | None = None
        """Why this process does not converge now (None: it does)."""
        self._opened = asyncio.Event()
        self._opened.set()
        self._listeners: list[GateListener] = []

    def is_open(self) -> bool:
        return self.why_closed is None

    def listen(self, listener: GateListener) -> None:
        """Call ``listener`` at every opening (True) and closing (False), in order."""
        self._listeners.append(listener)

    def close(self, why: str) -> None:
        """Stop converging (again: only the reason changes)."""
        closing = self.why_closed is None
        self.why_closed = why
        if closing:
            self._opened.clear()
            self._tell(False)

    def open(self) -> None:
        if self.why_closed is None:
            return
        self.why_closed = None
        self._opened.set()
        self._tell(True)

    async def wait_open(self) -> None:
        """Return at once while open; otherwise once it opens (and is still open)."""
        while self.why_closed is not None:
            await self._opened.wait()

    def _tell(self, opened: bool) -> None:
        for listener in self._listeners:
            try:
                listener(opened)
            except Exception:
                log.exception("a listener of the converge gate failed")
