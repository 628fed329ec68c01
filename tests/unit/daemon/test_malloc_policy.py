"""kukeond gives glibc's free heap pages back after its full collections (issue 18)."""

from __future__ import annotations

import logging

import pytest

from kukeon.daemon import gcpolicy, mallocpolicy
from tests.fixtures.interpreter import printed_after


def test_freed_pages_between_live_ones_go_back_to_the_kernel() -> None:
    """64 MiB of 4 KiB strings (glibc's malloc, not pymalloc) freed but every 64th: the
    heap's top stays in use, so glibc keeps the pages until ``malloc_trim``."""
    released, took = printed_after(
        "from kukeon.daemon import mallocpolicy\n"
        "blocks = [bytes(4096) + bytes([n % 256]) for n in range(16384)]\n"
        "kept = blocks[::64]\n"
        "del blocks\n"
        "trimmed = mallocpolicy.trim()\n"
        "print(json.dumps([trimmed.released_mib, trimmed.seconds]))"
    )
    assert released >= 32
    assert took < 1.0


def test_a_trim_says_what_it_gave_back() -> None:
    trimmed = mallocpolicy.trim()
    assert trimmed is not None  # glibc (Debian)
    assert trimmed.anon_before_kib > 0
    assert trimmed.seconds >= 0
    assert trimmed.released_mib == (trimmed.anon_before_kib - trimmed.anon_after_kib) / 1024


def test_the_full_collection_logs_the_trim(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=gcpolicy.__name__):
        gcpolicy.collect_fully_and_trim()
    assert "malloc_trim gave back" in caplog.text


def test_without_glibc_it_only_collects(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mallocpolicy, "_MALLOC_TRIM", None)
    assert mallocpolicy.trim() is None
    with caplog.at_level(logging.INFO, logger=gcpolicy.__name__):
        gcpolicy.collect_fully_and_trim()
    assert "full collection" in caplog.text
    assert "malloc_trim" not in caplog.text


def test_the_first_trim_waits_for_startup_to_settle() -> None:
    assert gcpolicy.SETTLED_SECONDS < gcpolicy.FULL_COLLECTION_SECONDS
    assert 10 <= gcpolicy.SETTLED_SECONDS <= 120
