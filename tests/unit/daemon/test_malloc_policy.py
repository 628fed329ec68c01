"""kukeond caps glibc's arenas and gives its free heap pages back after its full collections
(issue 18)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

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


def full_collection_logged(caplog: pytest.LogCaptureFixture) -> str:
    with caplog.at_level(logging.INFO, logger=gcpolicy.__name__):
        gcpolicy.collect_fully_and_trim()
    return caplog.text


def test_the_full_collection_logs_the_trim(caplog: pytest.LogCaptureFixture) -> None:
    logged = full_collection_logged(caplog)
    assert "malloc_trim gave back" in logged
    assert "glibc's malloc holds" in logged
    assert "MiB in use" in logged
    assert "by arena (MiB from the system, in use, free in n chunks): #0 " in logged


@pytest.mark.parametrize(
    ("missing", "reads", "still_logged", "not_logged"),
    [
        # without mallinfo2, the trim still says what it gave back
        ("_MALLINFO2", mallocpolicy.held, "malloc_trim gave back", "glibc's malloc holds"),
        # without malloc_info, the line has what mallinfo2 says, not the arenas
        ("_MALLOC_INFO", mallocpolicy.arenas, "glibc's malloc holds", "by arena"),
        # without glibc, it only collects
        ("_MALLOC_TRIM", mallocpolicy.trim, "full collection", "malloc_trim"),
    ],
)
def test_what_glibc_lacks_is_left_out_of_the_line(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    missing: str,
    reads: Callable[[], object],
    still_logged: str,
    not_logged: str,
) -> None:
    monkeypatch.setattr(mallocpolicy, missing, None)
    assert reads() is None
    logged = full_collection_logged(caplog)
    assert still_logged in logged
    assert not_logged not in logged


def test_arenas_tell_the_thread_arena_from_the_main_one() -> None:
    """A thread keeps 8 MiB of 4 KiB strings: they are in use in the arena the other
    threads share, not in the main thread's; freed, they are free there."""
    kept, freed = printed_after(
        "import threading\n"
        "from kukeon.daemon import mallocpolicy\n"
        "mallocpolicy.cap_arenas()\n"
        "blocks = []\n"
        "def allocate():\n"
        "    blocks.extend(bytes(4096) + bytes([n % 256]) for n in range(2048))\n"
        "thread = threading.Thread(target=allocate)\n"
        "thread.start()\n"
        "thread.join()\n"
        "def described():\n"
        "    return [[a.number, a.system_kib, a.in_use_kib, a.free_kib, a.free_chunks]\n"
        "            for a in mallocpolicy.arenas()]\n"
        "kept = described()\n"
        "del blocks[::2]\n"
        "print(json.dumps([kept, described()]))"
    )
    assert [arena[0] for arena in kept] == [0, 1]
    main, shared = kept
    assert shared[2] >= 8 * 1024 > main[2]
    assert shared[1] == shared[2] + shared[3]
    assert freed[1][3] >= 4 * 1024  # the freed half: free chunks between the kept ones
    assert freed[1][4] >= 1000


def malloc_info_part(fast: tuple[int, int], rest: tuple[int, int], system: int) -> str:
    """The totals glibc's malloc_info writes for an arena, or after them for the process:
    free chunks (count, bytes) in the fast bins and in the others, bytes from the system."""
    return (
        f'<total type="fast" count="{fast[0]}" size="{fast[1]}"/>\n'
        f'<total type="rest" count="{rest[0]}" size="{rest[1]}"/>\n'
        f'<system type="current" size="{system}"/>\n'
        f'<system type="max" size="{system * 2}"/>\n'
        f'<aspace type="total" size="{system}"/>\n'
    )


MALLOC_INFO = (
    '<malloc version="1">\n'
    '<heap nr="0">\n<sizes>\n<size from="17" to="32" total="64" count="2"/>\n</sizes>\n'
    + malloc_info_part((2, 2048), (3, 10240), 1048576)
    + '</heap>\n<heap nr="1">\n<sizes>\n</sizes>\n'
    + malloc_info_part((0, 0), (1, 4096), 135168)
    + '<aspace type="subheaps" size="1"/>\n</heap>\n'
    + '<total type="mmap" count="1" size="1310720"/>\n'
    + malloc_info_part((2, 2048), (4, 14336), 1183744)
    + "</malloc>\n"
).encode()


def test_malloc_info_is_read_per_arena_not_from_its_totals() -> None:
    """Free is the fast bins' and the others' (the top chunk counts among them); the
    whole process's totals after the heaps are not an arena."""
    assert mallocpolicy._parse_malloc_info(MALLOC_INFO) == (
        mallocpolicy.ArenaHeld(number=0, system_kib=1024, free_kib=12, free_chunks=5),
        mallocpolicy.ArenaHeld(number=1, system_kib=132, free_kib=4, free_chunks=1),
    )
    assert mallocpolicy.ArenaHeld(0, 1024, 12, 5).in_use_kib == 1012


def test_the_first_trim_waits_for_startup_to_settle() -> None:
    assert gcpolicy.SETTLED_SECONDS < gcpolicy.FULL_COLLECTION_SECONDS
    assert 10 <= gcpolicy.SETTLED_SECONDS <= 120


# Eight threads allocating at once, in a fresh interpreter: how many arenas glibc made.
ARENAS_AFTER_EIGHT_THREADS = (
    "import threading\n"
    "from kukeon.daemon import mallocpolicy\n"
    "capped = CAP\n"
    "start = threading.Barrier(8)\n"
    "def allocate():\n"
    "    start.wait()\n"
    "    blocks = [bytes(1000 + n) for n in range(2000)]\n"
    "threads = [threading.Thread(target=allocate) for _ in range(8)]\n"
    "for thread in threads: thread.start()\n"
    "for thread in threads: thread.join()\n"
    "print(json.dumps([capped, len(mallocpolicy.arenas())]))"
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
