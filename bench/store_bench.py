"""Registry throughput and watch latency, each against raw aetcd puts of the same bytes.

What it measures, on a private etcd it starts itself (on disk by default, ``--tmpfs`` for
/dev/shm):

1. raw puts: the exact documents the registry would store, put with ``aetcd`` under a
   scratch prefix with the same concurrency, while a raw aetcd watch times delivery;
2. ``Registry.create`` of N cells (validation, uid, CAS on create_revision and on the
   parent's mod_revision), while ``Registry.watch`` times delivery;
3. raw puts of the updated documents, then ``Registry.update`` of the same N cells
   (read, validate, CAS on mod_revision), again with both watches.

Watch latency is from the moment a write is issued to the moment its event is delivered
to the watching coroutine (so it includes the write's own commit). Every registry number
is printed with its ratio to the raw number of the same run: the cost of the registry
layer on this machine, independent of the disk's fsync speed.

Usage:  .venv/bin/python bench/store_bench.py [--objects 10000] [--concurrency 200] [--tmpfs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from kukeon.api import Kind, Resource, parse_resource, to_document
from kukeon.store import EmbeddedEtcd, Registry
from kukeon.store.keys import range_end

AnyResource = Resource[Any, Any]
PREFIX = "/bench"


def cell(index: int) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {
                "name": f"c{index:05d}",
                "labels": {"app": "bench", "shard": str(index % 16)},
            },
            "spec": {
                "realmId": "bench",
                "spaceId": "bench",
                "stackId": "bench",
                "containers": [
                    {
                        "id": "main",
                        "image": "registry.local/bench/app:1.0",
                        "command": "/bin/app",
                        "args": ["--port", "8080", "--verbose"],
                        "env": ["MODE=bench", f"INDEX={index}"],
                    }
                ],
            },
        }
    )


def stored_bytes(res: AnyResource) -> bytes:
    document = to_document(res)
    document["metadata"].pop("resourceVersion", None)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def relabelled(res: AnyResource) -> AnyResource:
    labels = {**res.metadata.labels, "rev": "2"}
    return res.model_copy(update={"metadata": res.metadata.model_copy(update={"labels": labels})})


async def bounded(jobs: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> float:
    """Run the jobs with at most ``concurrency`` in flight; returns elapsed seconds."""
    queue = list(jobs)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(queue):
            job = queue[position]
            position += 1
            await job()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


class LatencyProbe:
    """Issue times by key, delivery times from a watch; percentiles in milliseconds."""

    def __init__(self, expected: int) -> None:
        self.issued: dict[str, float] = {}
        self.latencies: list[float] = []
        self.expected = expected
        self.done = asyncio.Event()

    def issue(self, key: str) -> None:
        self.issued[key] = time.perf_counter()

    def deliver(self, key: str) -> None:
        now = time.perf_counter()
        started = self.issued.get(key)
        if started is not None:
            self.latencies.append((now - started) * 1000)
        if len(self.latencies) >= self.expected:
            self.done.set()

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def raw_phase(
    registry: Registry, payloads: dict[str, bytes], concurrency: int, tag: str
) -> tuple[float, LatencyProbe]:
    client = registry.client
    prefix = f"{PREFIX}-raw-{tag}/".encode()
    probe = LatencyProbe(len(payloads))
    start = await registry.current_revision()
    watch = await client.watch(prefix, range_end=range_end(prefix), start_revision=start + 1)

    async def watcher() -> None:
        async for event in watch:
            probe.deliver(event.kv.key[len(prefix) :].decode())
            if probe.done.is_set():
                return

    watching = asyncio.create_task(watcher())

    def job(name: str, payload: bytes) -> Callable[[], Awaitable[Any]]:
        async def put() -> None:
            probe.issue(name)
            await client.put(prefix + name.encode(), payload)

        return put

    elapsed = await bounded((job(n, p) for n, p in payloads.items()), concurrency)
    await asyncio.wait_for(probe.done.wait(), 120)
    await watch.cancel()
    watching.cancel()
    await client.delete_prefix(prefix)
    return len(payloads) / elapsed, probe


async def registry_phase(
    registry: Registry,
    objects: list[AnyResource],
    write: Callable[[AnyResource], Awaitable[AnyResource]],
    concurrency: int,
) -> tuple[float, LatencyProbe, list[AnyResource]]:
    probe = LatencyProbe(len(objects))
    start = await registry.current_revision()
    written: list[AnyResource] = []

    async def watcher() -> None:
        async for event in registry.watch(Kind.CELL, resource_version=start):
            probe.deliver(event.object.metadata.name)
            if probe.done.is_set():
                return

    watching = asyncio.create_task(watcher())
    await asyncio.sleep(0.1)  # the watch stream is open before the first write

    def job(res: AnyResource) -> Callable[[], Awaitable[Any]]:
        async def run() -> None:
            probe.issue(res.metadata.name)
            written.append(await write(res))

        return run

    elapsed = await bounded((job(res) for res in objects), concurrency)
    await asyncio.wait_for(probe.done.wait(), 120)
    watching.cancel()
    return len(objects) / elapsed, probe, written


def row(what: str, registry_value: float, raw_value: float, unit: str) -> str:
    ratio = registry_value / raw_value if raw_value else float("nan")
    return f"| {what} | {registry_value:,.1f} {unit} | {raw_value:,.1f} {unit} | {ratio:.2f} |"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--tmpfs", action="store_true", help="etcd data on /dev/shm (no fsync cost)"
    )
    args = parser.parse_args()

    command = " ".join(shlex.quote(part) for part in [sys.executable, *sys.argv])
    print(f"command: {command}")
    root = Path(tempfile.mkdtemp(prefix="kukeon-bench-", dir="/dev/shm" if args.tmpfs else None))
    etcd = EmbeddedEtcd(data_dir=root, auto_compaction_retention=None)
    try:
        await etcd.start()
        async with await Registry.connect(etcd.config(key_prefix=PREFIX)) as registry:
            for parent in (
                {"kind": "Realm", "metadata": {"name": "bench"}},
                {"kind": "Space", "metadata": {"name": "bench"}, "spec": {"realmId": "bench"}},
                {
                    "kind": "Stack",
                    "metadata": {"name": "bench"},
                    "spec": {"realmId": "bench", "spaceId": "bench"},
                },
            ):
                await registry.create(parse_resource({"apiVersion": "kukeon.io/v1beta1", **parent}))
            cells = [cell(i) for i in range(args.objects)]

            # Raw puts of the documents as the registry stores them on create.
            create_payloads = {c.metadata.name: stored_bytes(c) for c in cells}
            raw_create_rate, raw_create_probe = await raw_phase(
                registry, create_payloads, args.concurrency, "create"
            )
            create_rate, create_probe, created = await registry_phase(
                registry, cells, registry.create, args.concurrency
            )
            updates = [relabelled(c) for c in created]
            update_payloads = {c.metadata.name: stored_bytes(c) for c in updates}
            raw_update_rate, raw_update_probe = await raw_phase(
                registry, update_payloads, args.concurrency, "update"
            )
            update_rate, update_probe, _ = await registry_phase(
                registry, updates, registry.update, args.concurrency
            )
    finally:
        await etcd.stop()
        shutil.rmtree(root, ignore_errors=True)

    size = statistics.mean(len(p) for p in create_payloads.values())
    print(
        f"objects: {args.objects} cells, ~{size:.0f}-byte documents, "
        f"{args.concurrency} writes in flight, etcd data on {'tmpfs' if args.tmpfs else 'disk'}"
    )
    print("| measure | registry | raw aetcd put | ratio |")
    print("|---|---|---|---|")
    print(row("creates/s", create_rate, raw_create_rate, "/s"))
    print(row("updates/s", update_rate, raw_update_rate, "/s"))
    for label, registry_probe, raw_probe in (
        ("create", create_probe, raw_create_probe),
        ("update", update_probe, raw_update_probe),
    ):
        for name, fraction in (("p50", 0.50), ("p99", 0.99)):
            print(
                row(
                    f"watch delivery {name} ({label})",
                    registry_probe.percentile(fraction),
                    raw_probe.percentile(fraction),
                    "ms",
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
