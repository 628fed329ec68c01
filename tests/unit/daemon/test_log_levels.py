"""kukeond at ``--log-level debug`` keeps the libraries' per-message chatter out of its logs.

pyroute2 logs every netlink message it reads at DEBUG, the message's repr decoded by the
host thread that read it while that thread holds the log handler's lock; in a test run at
DEBUG one such repr kept a host thread 293 s in pyroute2's decoder and kukeond's event
loop was blocked as long (its node fenced).
"""

from __future__ import annotations

import logging

import pytest

from kukeon.daemon.logs import configure_logging

QUIETED = ("pyroute2", "pyroute2.netlink.core", "asyncio", "aiohttp.access")


@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_debug_kukeond_does_not_log_each_netlink_message(level: str) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in QUIETED}
    try:
        configure_logging(level)
        assert logging.getLogger("kukeon.controllers.space").isEnabledFor(
            logging.getLevelName(level.upper())
        )
        for name in QUIETED:
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, previous in saved[2].items():
            logging.getLogger(name).setLevel(previous)
