"""Conversions shared by the nouns: protobuf timestamps, digests."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from google.protobuf import timestamp_pb2

_DIGEST: Final = re.compile(r"sha256:[a-f0-9]{64}")


def to_datetime(timestamp: timestamp_pb2.Timestamp) -> datetime | None:
    """A protobuf timestamp as an aware UTC datetime; None for the zero value (unset)."""
    if timestamp.seconds <= 0 and timestamp.nanos == 0:
        return None
    return datetime.fromtimestamp(timestamp.seconds + timestamp.nanos / 1e9, tz=UTC)


def is_sha256_digest(text: str) -> bool:
    return _DIGEST.fullmatch(text) is not None
