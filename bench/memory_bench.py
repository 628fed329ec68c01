"""kukeond's memory idle, with N cells and after them: trees or settings alternating.

Each run starts a private control plane (bench/harness.py: containerd, etcd, kukeond as a
subprocess, realm, space and stack Ready, the keeper cell Ready) and reads kukeond's
/proc/<pid>/status (VmRSS, RssAnon, RssFile) and smaps_rollup (Pss):

- ``idle``: 3 s after the keeper is Ready (as bench/cell_bench.py reads it);
- ``settled``: ``--settled`` seconds later (kukeond's first full collection and malloc_trim
  run 30 s after its start: daemon/gcpolicy.py);
- ``loaded``: ``--cells`` cells created at once, 2 s after the last is Ready;
- ``after``: 3 s after they are all deleted;

and, idle and loaded, its thread stacks and its threads' malloc arenas (/proc/<pid>/smaps)
and its threads by kind (``thread_names``, ``loaded_thread_names``); the
``malloc_trim`` lines kukeond logged (after its full collections and after a burst's young
sweeps) are listed as ``trims``.
A variant is ``NAME=PYTHONPATH[,VAR=VALUE...]``: kukeond runs with that ``PYTHONPATH``
(a ``git archive`` of another tree's ``operator``) and those environment variables. The
variants alternate, their order reversed every other round; one JSON line per run:

    flock /tmp/kukeon-bench.lock nice -n 10 .venv/bin/python bench/memory_bench.py \\
        --variant before=/tmp/before-mem/operator --variant after=operator --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import (
    IMAGE,
    KEEPER,
    SLEEPER,
    cell_document,
    control_plane,
    key,
    start_daemon,
    wait_gone,
    wait_ready,
)

from kukeon.api import Kind
from kukeon.daemon.config import DaemonConfig

STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "Threads")
ARENA_ALIGNMENT = 64 << 20  # glibc's thread arenas: heaps of up to 64 MiB, so aligned
STACK_KIB = 8192
MAPPING = re.compile(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)")


def status(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and Pss in MiB, and the thread count."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in STATUS_FIELDS:
            number = int(value.split()[0])
            found[name] = number if name == "Threads" else round(number / 1024, 1)
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            found["Pss"] = round(int(line.split()[1]) / 1024, 1)
    return found


def threads_memory(pid: int) -> dict[str, float]:
    """Resident KiB of the threads' stacks (8 MiB anonymous maps) and of their malloc
    arenas' heaps (anonymous maps aligned on 64 MiB), and how many of each."""
    counts = {"stacks": 0, "stacks_kib": 0, "arena_heaps": 0, "arena_heaps_kib": 0}
    kind = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        mapping = MAPPING.match(line)
        if mapping:
            start, end = int(mapping.group(1), 16), int(mapping.group(2), 16)
            anonymous = mapping.group(3) == "rw-p" and mapping.group(4) == "0"
            kind = ""
            if anonymous and not mapping.group(5):
                if (end - start) // 1024 == STACK_KIB:
                    kind = "stacks"
                elif start % ARENA_ALIGNMENT == 0:
                    kind = "arena_heaps"
        elif kind and line.startswith("Rss:"):
            counts[kind] += 1
            counts[f"{kind}_kib"] += int(line.split()[1])
    return counts


def thread_names(pid: int) -> dict[str, int]:
    """How many threads of each name (``/proc``'s comm, a trailing worker number dropped):
    grpc's threads name themselves, kukeond's Python threads all carry the process's name
    (Python 3.11 does not name them for the kernel)."""
    found: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        kind = re.sub(r"[_-]?\d*$", "", name)
        found[kind] = found.get(kind, 0) + 1
    return dict(sorted(found.items()))


def cell(name: str) -> Any:
    container = {"id": "main", "image": IMAGE, "command": SLEEPER[0], "args": SLEEPER[1:]}
    return cell_document(name, [container])


async def run(name: str, environment: dict[str, str], cells: int, settled: float) -> Any:
    def launch(config: DaemonConfig, log: Path) -> subprocess.Popen[bytes]:
        return start_daemon(config, log, environment=environment, log_level="info")

    out: dict[str, Any] = {"variant": name, "load": os.getloadavg()[0]}
    async with control_plane("memory-bench", launch=launch) as plane:
        pid, registry = plane.daemon.pid, plane.registry
        await registry.create(cell(KEEPER))
        await wait_ready(registry, Kind.CELL, key(KEEPER))
        await asyncio.sleep(3)
        out["idle"], out["threads"] = status(pid), threads_memory(pid)
        out["thread_names"] = thread_names(pid)
        if settled:
            await asyncio.sleep(settled)
            out["settled"] = status(pid)
        if cells:
            names = [f"m{number}" for number in range(cells)]
            started = time.perf_counter()
            await asyncio.gather(*(registry.create(cell(each)) for each in names))
            for each in names:
                await wait_ready(registry, Kind.CELL, key(each), within=300)
            out["all_ready_s"] = round(time.perf_counter() - started, 1)
            await asyncio.sleep(2)
            out["loaded"] = status(pid)
            out["loaded_threads"] = threads_memory(pid)
            out["loaded_thread_names"] = thread_names(pid)
            await asyncio.gather(*(registry.delete(Kind.CELL, key(each)) for each in names))
            for each in names:
                await wait_gone(registry, Kind.CELL, key(each))
            await asyncio.sleep(3)
            out["after"] = status(pid)
        logged = plane.log.read_text().splitlines()
        out["trims"] = [_message(line) for line in logged if "malloc_trim" in line]
    out["load_end"] = os.getloadavg()[0]
    return out


def _message(line: str) -> str:
    """A kukeond log line's message (its JSON's ``msg``; the line itself if not JSON)."""
    try:
        return str(json.loads(line)["msg"])
    except (ValueError, KeyError, TypeError):
        return line


def variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition("=")
    path, *settings = rest.split(",")
    environment = {"PYTHONPATH": str(Path(path).resolve())}
    environment.update(setting.split("=", 1) for setting in settings)
    return name, environment


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, type=variant)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--settled", type=float, default=32.0)
    arguments = parser.parse_args()
    for number in range(arguments.rounds):
        order = arguments.variant if number % 2 == 0 else arguments.variant[::-1]
        for name, environment in order:
            result = await run(name, environment, arguments.cells, arguments.settled)
            print(json.dumps(result), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
