"""What the orphan passes could not remove, said once and not at every pass.

An orphan that cannot go stays for as long as what holds it (a port kukeon did not make on
a space's bridge, a mount someone keeps busy): the collector finds it again every pass (at
start, then every ``GC_INTERVAL_SECONDS``), and a warning each time buried the one line an
operator needs under copies of itself. So an orphan's failure is a warning when it starts
and when its error changes, and again at most every ``REMIND_SECONDS`` while it lasts (with
how many passes failed since); in between at debug level. One that goes is forgotten (the
collector logs its removal); so is one no pass tried any more (it went some other way).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

REMIND_SECONDS = 3600.0


@dataclass
class _Failing:
    error: str
    said_at: float
    unsaid: int = 0


class OrphanFailures:
    """The failures of one node's orphan passes (``Controllers`` keeps one for its life)."""

    def __init__(
        self, *, remind: float = REMIND_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._remind = remind
        self._clock = clock
        self._failing: dict[str, _Failing] = {}
        self._tried: set[str] = set()

    def begin(self) -> None:
        """A pass starts: what it does not try again is forgotten at its end."""
        self._tried = set()

    def end(self) -> None:
        for what in set(self._failing) - self._tried:
            del self._failing[what]

    def failed(self, what: str, error: BaseException) -> None:
        self._tried.add(what)
        text, now = str(error), self._clock()
        known = self._failing.get(what)
        if known is not None and known.error == text and now - known.said_at < self._remind:
            known.unsaid += 1
            log.debug("could not remove orphaned %s (next pass tries again): %s", what, text)
            return
        if known is not None and known.error == text:
            log.warning(
                "could not remove orphaned %s, %d passes since last said (next pass tries "
                "again): %s",
                what,
                known.unsaid + 1,
                text,
            )
        else:
            log.warning("could not remove orphaned %s (next pass tries again): %s", what, text)
        self._failing[what] = _Failing(text, now)

    def removed(self, what: str) -> None:
        self._tried.add(what)
        self._failing.pop(what, None)


__all__ = ["REMIND_SECONDS", "OrphanFailures"]
