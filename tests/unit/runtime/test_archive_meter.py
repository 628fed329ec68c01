"""ArchiveMeter: an archive's size as sent and once decompressed, measured as it arrives,
refused past the limit as soon as it is passed (a gzip bomb after a bounded amount of work)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import time
from collections.abc import Callable

import pytest

from kukeon.runtime.containerd.archivesize import ArchiveMeter, ArchiveTooLargeError

MiB = 1024 * 1024


def fed(data: bytes, limit: int, chunk: int = 64 * 1024) -> ArchiveMeter:
    meter = ArchiveMeter(limit)
    for start in range(0, len(data), chunk):
        meter.feed(data[start : start + chunk])
    return meter


COMPRESSIONS: list[Callable[[bytes], bytes]] = [gzip.compress, bz2.compress, lzma.compress]


@pytest.mark.parametrize("compress", COMPRESSIONS, ids=["gzip", "bzip2", "xz"])
def test_what_a_stream_decompresses_to_is_counted(compress: Callable[[bytes], bytes]) -> None:
    data = compress(b"z" * (3 * MiB + 5))
    meter = fed(data, limit=4 * MiB)
    assert meter.decompressed == 3 * MiB + 5
    assert meter.sent == len(data)
    with pytest.raises(ArchiveTooLargeError) as refused:
        fed(data, limit=3 * MiB)
    assert refused.value.decompressed
    assert "larger than 3145728 bytes once decompressed" in str(refused.value)


def test_a_gzip_bomb_is_refused_soon_after_the_limit() -> None:
    # 1 GiB of zeros is ~1 MiB gzipped; refused after ~the limit's worth of work, not 1 GiB.
    bomb = gzip.compress(bytes(1024 * MiB), compresslevel=1)
    started = time.monotonic()
    with pytest.raises(ArchiveTooLargeError):
        fed(bomb, limit=16 * MiB, chunk=len(bomb))  # one chunk holding all of it
    assert time.monotonic() - started < 2


def test_concatenated_and_zero_padded_gzip_streams_are_all_counted() -> None:
    one = gzip.compress(bytes(2 * MiB))
    meter = fed(one + bytes(512) + one, limit=8 * MiB, chunk=1000)
    assert meter.decompressed == 4 * MiB
    with pytest.raises(ArchiveTooLargeError):
        fed(one + one + one, limit=5 * MiB)


def test_a_plain_archive_is_its_size_as_sent() -> None:
    meter = fed(b"plain tar " * 1000, limit=10_000)
    assert (meter.sent, meter.decompressed) == (10_000, 0)
    with pytest.raises(ArchiveTooLargeError) as refused:
        fed(b"plain tar " * 1000, limit=9_999)
    assert not refused.value.decompressed


def test_a_stream_that_breaks_is_counted_no_further() -> None:
    broken = gzip.compress(bytes(MiB))[:-5000] + b"not deflate" * 100
    meter = fed(b"\x1f\x8b\x08\x00" + b"garbage" * 100, limit=MiB)
    assert meter.decompressed == 0
    assert fed(broken, limit=2 * MiB).decompressed <= MiB
