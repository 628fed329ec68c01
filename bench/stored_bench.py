"""kukeond's memory with many cells stored: what each document costs the daemon.

A private control plane (bench/harness.py) gets N cells written to etcd, placed on a node
that does not exist (``spec.nodeName``), so nothing runs and what is measured is the
control plane's copies of the documents: the controllers' watch, the API server's watch
cache, the metrics and the followers of cells. kukeond's RSS (``VmRSS``) is read once the
hierarchy is Ready (idle) and again once every cell has been seen by the API's cache and
the metrics (every stored cell's series on ``/metrics``). ``--tracemalloc DIR`` keeps
kukeond's allocation reports (daemon/memdebug.py) of both points in DIR.

``--before TREE`` (an earlier tree's ``operator`` directory first on kukeond's
``PYTHONPATH``, e.g. ``git archive REV operator | tar -x -C TREE``) runs the same rounds
with that tree's kukeond, alternating with this one, so both are measured under the same
load:

    .venv/bin/python bench/stored_bench.py --cells 2000 --rounds 2 --before /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    IMAGE,
    REALM,
    SLEEPER,
    SPACE,
    STACK,
    control_plane,
    rss_mib,
    scrape_metrics,
    start_daemon,
)

from kukeon.api import Cell, parse_resource
from kukeon.daemon.config import DaemonConfig
from kukeon.store import Registry

IN_FLIGHT = 64


def stored_cell(name: str) -> Cell:
    cell = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name, "labels": {"app": "stored", "shard": name[-1]}},
            "spec": {
                "realmId": REALM,
                "spaceId": SPACE,
                "stackId": STACK,
                "nodeName": "elsewhere",
                "containers": [
                    {"id": "main", "image": IMAGE, "command": SLEEPER[0], "args": SLEEPER[1:]}
                ],
            },
        }
    )
    assert isinstance(cell, Cell)
    return cell


async def write_cells(registry: Registry, count: int) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int) -> None:
        async with gate:
            await registry.create(stored_cell(f"stored-{index:05d}"))

    await asyncio.gather(*(one(index) for index in range(count)))


async def wait_seen(config: DaemonConfig, count: int, within: float = 300) -> None:
    """Until /metrics has the ``count`` stored cells (the collectors' cache has them all)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(
            scrape_metrics, config.metrics_address, config.metrics_token_path
        )
        if _stored_cells(text) >= count:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"/metrics did not show {count} cells within {within}s")


def _stored_cells(text: str) -> int:
    return sum(
        1
        for line in text.splitlines()
        if line.startswith("kukeon_cell_ready_observed{") and 'cell="stored-' in line
    )


async def settled_rss(pid: int, *, samples: int = 5, every: float = 1.0) -> float:
    values = []
    for _ in range(samples):
        await asyncio.sleep(every)
        values.append(rss_mib(pid))
    return statistics.median(values)


async def one_round(
    name: str, cells: int, environment: Mapping[str, str], *, reports: Path | None = None
) -> tuple[float, float]:
    """kukeond's RSS idle and with ``cells`` stored; ``reports``: copy its tracemalloc
    reports there (kukeond then runs with ``PYTHONTRACEMALLOC``; daemon/memdebug.py)."""
    if reports is not None:
        environment = {**environment, "PYTHONTRACEMALLOC": "8"}
    launch = partial(start_daemon, environment=environment)
    async with control_plane(f"stored-{name}", launch=launch, ready_within=180) as plane:
        idle = await settled_rss(plane.daemon.pid)
        if reports is not None:
            plane.daemon.send_signal(signal.SIGUSR2)
        await write_cells(plane.registry, cells)
        await wait_seen(plane.config, cells)
        loaded = await settled_rss(plane.daemon.pid)
        if reports is not None:
            plane.daemon.send_signal(signal.SIGUSR2)
            await _keep_reports(plane.config.state_dir, reports / name, count=2)
        return idle, loaded


async def _keep_reports(state_dir: Path, into: Path, *, count: int, within: float = 300) -> None:
    deadline = time.monotonic() + within
    while len(written := await asyncio.to_thread(_reports, state_dir)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"kukeond wrote {len(written)} of {count} tracemalloc reports")
        await asyncio.sleep(1)
    await asyncio.sleep(1)  # the last one's writing ends
    await asyncio.to_thread(_copy, written, into)
    print(f"tracemalloc reports in {into}", flush=True)


def _reports(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("tracemalloc-*.txt"))


def _copy(reports: list[Path], into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for report in reports:
        shutil.copy(report, into / report.name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", type=Path, help="an earlier tree, run alternating")
    parser.add_argument(
        "--tracemalloc", type=Path, help="trace kukeond's allocations; reports into this dir"
    )
    args = parser.parse_args()
    variants: dict[str, dict[str, str]] = {"this tree": {}}
    if args.before is not None:
        variants["before"] = {"PYTHONPATH": str(args.before.resolve() / "operator")}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, environment in variants.items():
            idle, loaded = await one_round(
                name.replace(" ", "-"), args.cells, environment, reports=args.tracemalloc
            )
            results[name].append((idle, loaded))
            print(
                f"round {round_index + 1} {name}: idle {idle:.1f} MiB, "
                f"{args.cells} cells stored {loaded:.1f} MiB "
                f"({(loaded - idle) * 1024 / args.cells:.1f} KiB per cell)",
                flush=True,
            )
    for name, rows in results.items():
        idle = statistics.median(row[0] for row in rows)
        loaded = statistics.median(row[1] for row in rows)
        print(
            f"{name}: idle {idle:.1f} MiB, with {args.cells} cells {loaded:.1f} MiB, "
            f"{(loaded - idle) * 1024 / args.cells:.1f} KiB per cell (median of {len(rows)})"
        )


if __name__ == "__main__":
    asyncio.run(main())
