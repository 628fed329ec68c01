"""Registry throughput and watch latency, each against raw aetcd transactions of the same bytes.

What it measures, on a private etcd it starts itself (on disk by default, ``--tmpfs`` for
/dev/shm):

1. raw creates: the exact documents the registry would store, written by raw aetcd
   transactions with the compares a registry create needs (key absent, the parent's
   mod_revision) under a scratch prefix with the same concurrency, while a raw aetcd watch
   times delivery;
2. ``Registry.create`` of N cells (validation, uid, CAS on create_revision and on the
   parent's mod_revision), while ``Registry.watch`` times delivery. The cells are created
   as the API server creates a request's body: with the proof that the model is the
   validated parse (``ValidatedDump``, taken in the timed write; the registry then
   validates only its own metadata), in a tree that has it; ``--no-proof`` creates them
   as a controller does (full validation in the registry);
3. raw updates (a transaction comparing each key's mod_revision) of the updated documents,
   then ``Registry.update`` of the same N cells (validate, CAS on mod_revision), again with
   both watches.

Watch latency is from the moment a write is issued to the moment its event is delivered
to the watching coroutine (so it includes the write's own commit). Every registry number
is printed with its ratio to the raw number of the same run: the cost of the registry
layer on this machine, independent of the disk's fsync speed. CPU per write is this
process's CPU time over the phase divided by the writes (so it includes the watch of
that phase), and the part of it spent in CPython's garbage collections.

Garbage collection: by default the process runs under kukeond's own policy
(``kukeon.daemon.gcpolicy.apply_after_startup``: what startup built frozen, young
collections every 50,000 allocations), applied once the registry is connected and the
parents exist, before the cells are built: the registry's writes in production run inside
kukeond (its API server and controllers), and the raw series shares the process, so both
run under it. ``--gc defaults`` keeps CPython's defaults (700, 10, 10, nothing frozen).

``--before TREE`` runs this script in turn with this tree's and TREE's ``operator/`` on
PYTHONPATH (``--rounds`` times each, each run its own process) and prints the medians.

Usage:  .venv/bin/python bench/store_bench.py [--objects 10000] [--concurrency 200] [--tmpfs]
            [--gc kukeond|defaults] [--no-proof] [--before /tmp/before-x --rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from aetcd import rpc

from kukeon.api import Kind, Resource, parse_resource, to_document
from kukeon.daemon.config import DaemonConfig
from kukeon.store import EmbeddedEtcd, Registry
from kukeon.store.keys import range_end
from kukeon.store.realmquota import QuotaLimits, RealmQuotas
from kukeon.store.txn import compare_created, compare_modified, put_op, read_op

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


class GcClock:
    """CPU seconds this process spent in CPython's garbage collections (all generations;
    CPU, not wall time, so that a loaded machine does not inflate it)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


GC_CLOCK = GcClock()
CPU_USED: dict[str, tuple[float, float]] = {}
"""Phase -> (CPU seconds of this process, of which in GC) while its writes ran."""


async def bounded(
    jobs: Iterable[Callable[[], Awaitable[Any]]], concurrency: int, phase: str = ""
) -> float:
    """Run the jobs with at most ``concurrency`` in flight; returns elapsed seconds."""
    cpu_before, gc_before = time.process_time(), GC_CLOCK.seconds
    try:
        return await _bounded(jobs, concurrency)
    finally:
        CPU_USED[phase] = (time.process_time() - cpu_before, GC_CLOCK.seconds - gc_before)


async def _bounded(jobs: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> float:
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


class RawTxns:
    """Raw aetcd transactions doing what the registry's writes do, minus the registry.

    A create compares the key as absent and the parent's mod_revision (the registry's
    create compares both, reading them on failure); an update compares the key's
    mod_revision (reading it on failure). Same bytes, same gRPC stub, same compares:
    the difference to the registry's numbers is the registry's own work.
    """

    def __init__(self, registry: Registry, parent: bytes, parent_revision: int) -> None:
        self.client = registry.client
        self.request_timeout = registry.config.request_timeout
        self.parent = parent
        self.parent_revision = parent_revision
        self.revisions: dict[bytes, int] = {}

    async def write(self, key: bytes, payload: bytes) -> None:
        known = self.revisions.get(key)
        if known is None:
            compare = [compare_created(key, 0), compare_modified(self.parent, self.parent_revision)]
            failure = [read_op(key), read_op(self.parent)]
        else:
            compare = [compare_modified(key, known)]
            failure = [read_op(key)]
        request = rpc.TxnRequest(compare=compare, success=[put_op(key, payload)], failure=failure)
        response = await self.client.kvstub.Txn(
            request, timeout=self.request_timeout, metadata=self.client.metadata
        )
        if not response.succeeded:
            raise RuntimeError(f"raw transaction on {key!r} lost its compare")
        self.revisions[key] = response.header.revision


async def raw_phase(
    registry: Registry, raw: RawTxns, payloads: dict[str, bytes], concurrency: int
) -> tuple[float, LatencyProbe]:
    client = registry.client
    prefix = f"{PREFIX}-raw/".encode()
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
        async def write() -> None:
            probe.issue(name)
            await raw.write(prefix + name.encode(), payload)

        return write

    phase = "raw update" if raw.revisions else "raw create"
    elapsed = await bounded((job(n, p) for n, p in payloads.items()), concurrency, phase)
    await asyncio.wait_for(probe.done.wait(), 120)
    await watch.cancel()
    watching.cancel()
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

    phase = f"registry {write.__name__}"  # create or update
    elapsed = await bounded((job(res) for res in objects), concurrency, phase)
    await asyncio.wait_for(probe.done.wait(), 120)
    watching.cancel()
    return len(objects) / elapsed, probe, written


def api_create(registry: Registry, proven: bool) -> Callable[[AnyResource], Awaitable[AnyResource]]:
    """``registry.create`` as the API server calls it: with the proof of its parse of the
    body (``ValidatedDump.of`` right after ``parse_resource``), when this tree has one."""
    proof_type = getattr(importlib.import_module("kukeon.store.codec"), "ValidatedDump", None)
    if proof_type is None or not proven:
        return registry.create

    async def create(res: AnyResource) -> AnyResource:
        return await registry.create(res, validated=proof_type.of(res))

    return create


def row(what: str, registry_value: float, raw_value: float, unit: str) -> str:
    ratio = registry_value / raw_value if raw_value else float("nan")
    return f"| {what} | {registry_value:,.1f} {unit} | {raw_value:,.1f} {unit} | {ratio:.2f} |"


Measures = dict[str, tuple[float, float]]
"""Measure name -> (registry, raw) of one run."""


GC_POLICIES = ("kukeond", "defaults")


def apply_gc_policy(policy: str) -> None:
    """kukeond's collector policy, as kukeond applies it once started; or CPython's defaults."""
    if policy == "kukeond":
        from kukeon.daemon import gcpolicy

        gcpolicy.apply_after_startup()


async def measure(
    objects: int, concurrency: int, tmpfs: bool, gc_policy: str, proven: bool, quotas: bool
) -> Measures:
    """One run: raw creates, registry creates, raw updates, registry updates; with
    ``quotas`` the registry checks the realm's quota as kukeond's does (the usage index
    listing and watching in the same process, kukeond's default limits)."""
    root = Path(tempfile.mkdtemp(prefix="kukeon-bench-", dir="/dev/shm" if tmpfs else None))
    etcd = EmbeddedEtcd(data_dir=root, auto_compaction_retention=None)
    try:
        await etcd.start()
        async with (
            await Registry.connect(etcd.config(key_prefix=PREFIX)) as registry,
            enforced_quotas(registry, quotas),
        ):
            for parent in (
                {"kind": "Realm", "metadata": {"name": "bench"}},
                {"kind": "Space", "metadata": {"name": "bench"}, "spec": {"realmId": "bench"}},
                {
                    "kind": "Stack",
                    "metadata": {"name": "bench"},
                    "spec": {"realmId": "bench", "spaceId": "bench"},
                },
            ):
                stack = await registry.create(
                    parse_resource({"apiVersion": "kukeon.io/v1beta1", **parent})
                )
            stack_key = registry.key_for(Kind.STACK, ("bench", "bench", "bench")).encode()
            raw = RawTxns(registry, stack_key, int(stack.metadata.resource_version or 0))
            apply_gc_policy(gc_policy)  # "started": what follows is the workload
            cells = [cell(i) for i in range(objects)]

            # Raw transactions of the documents as the registry stores them on create.
            create_payloads = {c.metadata.name: stored_bytes(c) for c in cells}
            raw_create = await raw_phase(registry, raw, create_payloads, concurrency)
            create_rate, create_probe, created = await registry_phase(
                registry, cells, api_create(registry, proven), concurrency
            )
            updates = [relabelled(c) for c in created]
            update_payloads = {c.metadata.name: stored_bytes(c) for c in updates}
            raw_update = await raw_phase(registry, raw, update_payloads, concurrency)
            update_rate, update_probe, _ = await registry_phase(
                registry, updates, registry.update, concurrency
            )
    finally:
        await etcd.stop()
        shutil.rmtree(root, ignore_errors=True)
    measures: Measures = {
        "creates/s": (create_rate, raw_create[0]),
        "updates/s": (update_rate, raw_update[0]),
    }
    for label, registry_probe, raw_probe in (
        ("create", create_probe, raw_create[1]),
        ("update", update_probe, raw_update[1]),
    ):
        for name, fraction in (("p50", 0.50), ("p99", 0.99)):
            measures[f"watch delivery {name} ({label})"] = (
                registry_probe.percentile(fraction),
                raw_probe.percentile(fraction),
            )
    for what in ("create", "update"):
        registry_cpu, registry_gc = CPU_USED[f"registry {what}"]
        raw_cpu, raw_gc = CPU_USED[f"raw {what}"]
        measures[f"CPU per {what} (µs)"] = (registry_cpu / objects * 1e6, raw_cpu / objects * 1e6)
        measures[f"of which GC per {what} (µs)"] = (
            registry_gc / objects * 1e6,
            raw_gc / objects * 1e6,
        )
    measures["document bytes"] = (statistics.mean(len(p) for p in create_payloads.values()), 0)
    return measures


@contextlib.asynccontextmanager
async def enforced_quotas(registry: Registry, enforce: bool) -> AsyncIterator[None]:
    """The realms' quotas checked by ``registry`` while in the block (``--quotas``)."""
    if not enforce:
        yield
        return
    config = DaemonConfig()
    quotas = RealmQuotas(
        client=registry.client,
        config=registry.config,
        layout=registry.layout,
        defaults=QuotaLimits(config.realm_quota_objects, config.realm_quota_storage_bytes),
    )
    task = asyncio.create_task(quotas.run())
    try:
        await quotas.wait_synced()
        registry.enforce_quotas(quotas)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def print_table(measures: Measures) -> None:
    print("| measure | registry | raw aetcd txn | ratio |")
    print("|---|---|---|---|")
    for what, (registry_value, raw_value) in measures.items():
        if what != "document bytes":
            unit = "/s" if what.endswith("/s") else "" if what.endswith("(µs)") else "ms"
            print(row(what, registry_value, raw_value, unit))


def alternate(args: argparse.Namespace) -> int:
    """Run this tree and ``--before`` in turn, each run in its own process."""
    variants = {"this tree": "", "before": str(args.before.resolve() / "operator")}
    ratios: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    for round_index in range(args.rounds):
        for name, pythonpath in variants.items():
            environment = {**os.environ, "PYTHONPATH": pythonpath}
            command = [sys.executable, __file__, "--objects", str(args.objects)]
            command += ["--concurrency", str(args.concurrency), "--json"]
            command += ["--tmpfs"] if args.tmpfs else []
            command += ["--gc", args.gc]
            command += ["--no-proof"] if args.no_proof else []
            command += ["--quotas"] if args.quotas else []
            output = subprocess.run(
                command, env=environment, check=True, capture_output=True, text=True
            ).stdout
            measures: Measures = json.loads(output.splitlines()[-1])
            print(f"round {round_index + 1}, {name} (load {os.getloadavg()[0]:.1f}):")
            print_table(measures)
            for what in ("creates/s", "updates/s", "CPU per create (µs)", "CPU per update (µs)"):
                registry_value, raw_value = measures[what]
                ratios[name].setdefault(what, []).append(registry_value / raw_value)
    for name, by_measure in ratios.items():
        for what, values in by_measure.items():
            shown = ", ".join(f"{value:.2f}" for value in values)
            print(f"{name}: {what} ratio median {statistics.median(values):.2f} ({shown})")
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--tmpfs", action="store_true", help="etcd data on /dev/shm (no fsync cost)"
    )
    parser.add_argument(
        "--gc",
        choices=GC_POLICIES,
        default="kukeond",
        help="the collector policy: kukeond's own (default) or CPython's defaults",
    )
    parser.add_argument(
        "--no-proof",
        action="store_true",
        help="create without the API server's proof of validation (as a controller does)",
    )
    parser.add_argument(
        "--quotas",
        action="store_true",
        help="the registry checks the realms' quotas, as kukeond's does (store/realmquota.py)",
    )
    parser.add_argument(
        "--before", type=Path, help="an earlier tree (its operator/ is used), run alternating"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds with --before")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    command = " ".join(shlex.quote(part) for part in [sys.executable, *sys.argv])
    if args.before is not None:
        print(f"command: {command} (GC policy {args.gc})", flush=True)
        return await asyncio.to_thread(alternate, args)
    measures = await measure(
        args.objects, args.concurrency, args.tmpfs, args.gc, not args.no_proof, args.quotas
    )
    if args.json:
        print(json.dumps(measures))
        return 0
    print(f"command: {command}")
    print(
        f"objects: {args.objects} cells, ~{measures['document bytes'][0]:.0f}-byte documents, "
        f"{args.concurrency} writes in flight, etcd data on {'tmpfs' if args.tmpfs else 'disk'}, "
        f"GC policy {args.gc}, creates {'without' if args.no_proof else 'with'} the API's proof"
    )
    print_table(measures)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
