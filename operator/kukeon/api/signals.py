"""Signals as docker reads them: a name (``SIGQUIT``, ``quit``), a real-time one
(``SIGRTMIN+3``, ``RTMAX-1``) or a number, and the name a number is written back with.

An image's ``STOPSIGNAL`` and a container's ``stopSignal`` use docker's spelling
(``moby/sys/signal.ParseSignal``): systemd images stop on ``SIGRTMIN+3`` (kindest/node's
does), which Python's ``signal.Signals`` has no member for, so the value kept is the
signal's number, 1 to SIGRTMAX (64 on Linux), its name written as docker's table does.
"""

from __future__ import annotations

import re
import signal
from typing import Final

RTMIN: Final = int(signal.SIGRTMIN)
RTMAX: Final = int(signal.SIGRTMAX)
_REALTIME: Final = re.compile(r"RT(MIN|MAX)(?:([+-])([0-9]{1,2}))?")


def parse_signal(text: str) -> int | None:
    """``SIGQUIT``, ``QUIT``, ``sigquit``, ``3``, ``SIGRTMIN+3`` or ``RTMAX-2`` as a signal
    number; None for anything else (0, a number past SIGRTMAX, an unknown name)."""
    value = text.strip()
    if value.isascii() and value.isdigit() and len(value) <= 3:
        number = int(value)
        return number if 1 <= number <= RTMAX else None
    name = value.upper().removeprefix("SIG")
    realtime = _REALTIME.fullmatch(name)
    if realtime is not None:
        return _realtime_number(*realtime.groups())
    found = getattr(signal.Signals, f"SIG{name}", None)
    return int(found) if isinstance(found, signal.Signals) else None


def _realtime_number(base: str, sign: str | None, offset: str | None) -> int | None:
    # RTMIN+n counts up from SIGRTMIN, RTMAX-n down from SIGRTMAX; nothing else is a name.
    if sign is not None and (sign == "+") != (base == "MIN"):
        return None
    step = int(offset or 0)
    number = RTMIN + step if base == "MIN" else RTMAX - step
    return number if RTMIN <= number <= RTMAX else None


def signal_name(number: int) -> str:
    """The name of signal ``number``: ``SIGQUIT``, ``SIGRTMIN+3``, ``SIGRTMAX-1``, docker's
    split of the real-time range (RTMIN to RTMIN+15, then RTMAX-14 to RTMAX); a number
    without a name (32, 33: the C library's own) is written as digits."""
    if RTMIN <= number <= RTMAX:
        below_max = RTMAX - number
        if below_max < (RTMAX - RTMIN + 1) // 2:
            return "SIGRTMAX" if below_max == 0 else f"SIGRTMAX-{below_max}"
        above_min = number - RTMIN
        return "SIGRTMIN" if above_min == 0 else f"SIGRTMIN+{above_min}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
