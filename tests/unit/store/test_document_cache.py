"""The registry's cache of document bytes by exact revision."""

from __future__ import annotations

from kukeon.store.documentcache import DocumentCache
from kukeon.store.txn import Stored


def test_hits_only_at_the_exact_revision() -> None:
    cache = DocumentCache(max_bytes=1000)
    cache.remember(b"k", Stored(b"v5", 5))
    assert cache.at(b"k", 5) == Stored(b"v5", 5)
    assert cache.at(b"k", 4) is None
    cache.remember(b"k", Stored(b"v9", 9))
    assert cache.at(b"k", 5) is None
    cache.forget(b"k")
    assert cache.at(b"k", 9) is None


def test_oldest_entries_go_first_when_over_budget() -> None:
    cache = DocumentCache(max_bytes=10)
    for index in range(5):
        cache.remember(f"k{index}".encode(), Stored(b"abcd", index))
    assert cache.at(b"k0", 0) is None
    assert cache.at(b"k2", 2) is None
    assert cache.at(b"k3", 3) is not None
    assert cache.at(b"k4", 4) is not None
