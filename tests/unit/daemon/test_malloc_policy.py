"""kukeond caps glibc's arenas and gives its free heap pages back after its full collections
(issue 18)."""

from __future__ import annotations

import logging
import os

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


def test_held_tells_live_blocks_from_the_free_left_between_them() -> None:
    """64 MiB of 4 KiB strings in glibc's heap, then all freed but every 64th: in use
    goes back down, and the free bytes left between the kept ones (the fragmentation a
    trim cannot give back whole) show as free, not in use."""
    before, during, after = printed_after(
        "from kukeon.daemon import mallocpolicy\n"
        "before = mallocpolicy.held()\n"
        "blocks = [bytes(4096) + bytes([n % 256]) for n in range(16384)]\n"
        "during = mallocpolicy.held()\n"
        "kept = blocks[::64]\n"
        "del blocks\n"
        "after = mallocpolicy.trim().held\n"
        "print(json.dumps([[h.in_use_kib, h.free_kib] for h in (before, during, after)]))"
    )
    assert during[0] - before[0] >= 60 * 1024
    assert after[0] - before[0] <= 4 * 1024  # the 256 kept blocks: 1 MiB
    assert after[1] >= 32 * 1024


def test_the_full_collection_logs_the_trim(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=gcpolicy.__name__):
        gcpolicy.collect_fully_and_trim()
    assert "malloc_trim gave back" in caplog.text
    assert "glibc's malloc holds" in caplog.text
    assert "MiB in use" in caplog.text


def test_without_mallinfo2_the_trim_still_says_what_it_gave_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mallocpolicy, "_MALLINFO2", None)
    assert mallocpolicy.held() is None
    with caplog.at_level(logging.INFO, logger=gcpolicy.__name__):
        gcpolicy.collect_fully_and_trim()
    assert "malloc_trim gave back" in caplog.text
    assert "glibc's malloc holds" not in caplog.text


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


# glibc's malloc_info in a fresh interpreter: one <heap nr=...> per arena.
ARENAS_AFTER_EIGHT_THREADS = (
    "import ctypes, threading\n"
    "from kukeon.daemon import mallocpolicy\n"
    "capped = CAP\n"
    "start = threading.Barrier(8)\n"
    "def allocate():\n"
    "    start.wait()\n"
    "    blocks = [bytes(1000 + n) for n in range(2000)]\n"
    "threads = [threading.Thread(target=allocate) for _ in range(8)]\n"
    "for thread in threads: thread.start()\n"
    "for thread in threads: thread.join()\n"
    "libc = ctypes.CDLL(None)\n"
    "libc.open_memstream.restype = ctypes.c_void_p\n"
    "buffer, size = ctypes.c_char_p(), ctypes.c_size_t()\n"
    "stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))\n"
    "libc.malloc_info(0, ctypes.c_void_p(stream))\n"
    "libc.fclose(ctypes.c_void_p(stream))\n"
    "print(json.dumps([capped, ctypes.string_at(buffer, size.value).count(b'<heap nr=')]))"
)


def test_capped_threads_share_the_arenas() -> None:
    """Eight threads allocating at once: ``ARENA_MAX`` arenas in all once capped, one each
    (up to 8 a core) with glibc's default."""
    capped = ARENAS_AFTER_EIGHT_THREADS.replace("CAP", "mallocpolicy.cap_arenas()")
    assert printed_after(capped) == [True, mallocpolicy.ARENA_MAX]
    uncapped = printed_after(ARENAS_AFTER_EIGHT_THREADS.replace("CAP", "None"))
    assert uncapped[1] > mallocpolicy.ARENA_MAX


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert mallocpolicy.cap_arenas() is False


def test_kukeond_caps_the_arenas_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command caps them before its event loop (and its threads) start."""
    from kukeon.daemon import app, logs, main

    order: list[str] = []

    async def run_daemon(config: object) -> None:
        order.append("run")

    def cap_arenas() -> bool:
        order.append("cap")
        return True

    monkeypatch.setattr(mallocpolicy, "cap_arenas", cap_arenas)
    monkeypatch.setattr(app, "run_daemon", run_daemon)
    monkeypatch.setattr(logs, "configure_logging", lambda level: None)
    monkeypatch.setattr(os, "umask", lambda mask: mask)  # the test process's stays
    main.command(["--no-bootstrap"])
    assert order == ["cap", "run"]
