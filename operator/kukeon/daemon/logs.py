"""Structured logs: kukeond writes one JSON object per line (timestamp, level, logger, message)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Extra context (e.g. the framework's node and object key) travels as fields.
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ClientSubprotocols(logging.Filter):
    """aiohttp warns of each WebSocket handshake whose client offers subprotocols the
    server does not speak (kukeond names none and answers with none, as RFC 6455 has
    it): a WARNING line per request that any client may ask for, twice where a route
    checks the handshake first. Those are debug lines here."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or "overlap server-known" not in str(record.msg):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


_SUBPROTOCOLS = ClientSubprotocols()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # gRPC/aiohttp chatter is not the daemon's story. pyroute2 logs every netlink message
    # it reads at DEBUG, its repr decoded in the host thread that reads it while that
    # thread holds the handler's lock: the event loop's next log line waits for it (one
    # such repr held a test's kukeond for 293 s, its node fenced).
    for noisy in ("aiohttp.access", "asyncio", "pyroute2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiohttp.websocket").addFilter(_SUBPROTOCOLS)
