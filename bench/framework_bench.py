"""Benchmark of kukeon.framework against a real etcd: events handled per second and latency.

Three measurements, each with a no-op reconcile handler:

1. startup: N objects already stored; time from ``Operator.start()`` until every object
   has been handed to its handler (one list, N per-object workers);
2. watch: the operator running; N objects created by a separate writer process (256
   writes in flight); events/s is N over the time from the first write to the last
   handler call. The writer's own rate is reported beside it (the handler cannot beat
   it), and so is the operator process's CPU time per event (its capacity on one core);
3. latency: one update at a time on a running operator; time from issuing the etcd write
   to the handler call (p50/p99), and from the write's acknowledgement to the call
   (signed: the etcd watch event can reach the handler before the write's answer reaches
   the writer, then it is negative; how many calls came first is said beside it).

Runs its own etcd (data under /dev/shm) unless ``--endpoint`` is given:

    .venv/bin/python bench/framework_bench.py --objects 10000 --latency-samples 500
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from kukeon.api import Kind, ObjectMeta, Realm
from kukeon.framework import HandlerContext, Operator, Settings
from kukeon.store import EmbeddedEtcd, EtcdConfig, Registry


def _settings() -> Settings:
    return Settings(node_name="bench", resync_interval=None, max_workers=16)


async def _create_all(registry: Registry, names: list[str], in_flight: int) -> None:
    gate = asyncio.Semaphore(in_flight)

    async def one(name: str) -> None:
        async with gate:
            await registry.create(Realm(metadata=ObjectMeta(name=name)))

    await asyncio.gather(*(one(name) for name in names))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def bench_startup(config: EtcdConfig, objects: int) -> dict[str, float]:
    async with await Registry.connect(config) as registry:
        names = [f"s{index:05d}" for index in range(objects)]
        await _create_all(registry, names, 256)
        op = Operator(
            registry, settings=_settings(), collector_registry=CollectorRegistry(), peering=False
        )
        seen: set[str] = set()
        done = asyncio.Event()

        @op.reconcile(Kind.REALM)
        async def handle(realm: Realm, ctx: HandlerContext) -> None:
            seen.add(realm.metadata.name)
            if len(seen) == objects:
                done.set()

        started = time.perf_counter()
        await op.start()
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - started
        await op.stop()
        return {"objects": objects, "seconds": elapsed, "per_second": objects / elapsed}


async def _write_in_subprocess(
    config: EtcdConfig, prefix: str, objects: int
) -> tuple[float, float]:
    """Create the objects from another process, so the operator's process only handles."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--write-only",
        "--endpoint",
        config.endpoints[0],
        *_tls_args(config),
        "--prefix",
        prefix,
        "--objects",
        str(objects),
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"writer failed with {process.returncode}")
    first, last = output.decode().split()
    return float(first), float(last)


def _tls_args(config: EtcdConfig) -> list[str]:
    """The writer process's flags for the CA and client certificate of ``config``."""
    files = (
        ("--ca-file", config.ca_file),
        ("--cert-file", config.cert_file),
        ("--key-file", config.key_file),
    )
    return [part for flag, path in files if path is not None for part in (flag, str(path))]


async def write_only(config: EtcdConfig, objects: int) -> None:
    async with await Registry.connect(config) as registry:
        names = [f"w{index:05d}" for index in range(objects)]
        started = time.time()
        await _create_all(registry, names, 256)
        print(started, time.time())


async def bench_watch(config: EtcdConfig, objects: int) -> dict[str, float]:
    async with await Registry.connect(config) as registry:
        op = Operator(
            registry, settings=_settings(), collector_registry=CollectorRegistry(), peering=False
        )
        seen: set[str] = set()
        done = asyncio.Event()
        first_call = 0.0
        last_call = 0.0

        @op.reconcile(Kind.REALM)
        async def handle(realm: Realm, ctx: HandlerContext) -> None:
            nonlocal first_call, last_call
            if not seen:
                first_call = time.time()
            seen.add(realm.metadata.name)
            if len(seen) == objects:
                last_call = time.time()
                done.set()

        await op.start()
        cpu_before = time.process_time()
        writes_started, writes_ended = await _write_in_subprocess(
            config, config.key_prefix, objects
        )
        await asyncio.wait_for(done.wait(), 600)
        cpu_seconds = time.process_time() - cpu_before
        await op.stop()
        elapsed = last_call - writes_started
        return {
            "objects": objects,
            "seconds": elapsed,
            "per_second": objects / elapsed,
            "writes_per_second": objects / (writes_ended - writes_started),
            "tail_after_writes": last_call - writes_ended,
            "cpu_seconds": cpu_seconds,
            "per_cpu_second": objects / cpu_seconds,
        }


async def bench_latency(config: EtcdConfig, samples: int) -> dict[str, float]:
    async with await Registry.connect(config) as registry:
        op = Operator(
            registry, settings=_settings(), collector_registry=CollectorRegistry(), peering=False
        )
        called: dict[str, float] = {}
        arrived = asyncio.Event()

        @op.reconcile(Kind.REALM)
        async def handle(realm: Realm, ctx: HandlerContext) -> None:
            called[realm.metadata.labels.get("n", "")] = time.perf_counter()
            arrived.set()

        current = await registry.create(Realm(metadata=ObjectMeta(name="latency")))
        await op.start()
        await op.wait_idle()
        from_issue: list[float] = []
        from_ack: list[float] = []
        for n in range(samples):
            arrived.clear()
            labels = {"n": str(n)}
            update = current.model_copy(
                update={"metadata": current.metadata.model_copy(update={"labels": labels})}
            )
            issued = time.perf_counter()
            current = await registry.update(update)
            acked = time.perf_counter()
            while str(n) not in called:
                await asyncio.wait_for(arrived.wait(), 10)
                arrived.clear()
            from_issue.append(called[str(n)] - issued)
            from_ack.append(called[str(n)] - acked)
            await asyncio.sleep(0.002)
        await op.stop()
        return {
            "samples": samples,
            "issue_p50_ms": _percentile(from_issue, 0.50) * 1000,
            "issue_p99_ms": _percentile(from_issue, 0.99) * 1000,
            "ack_p50_ms": _percentile(from_ack, 0.50) * 1000,
            "ack_p99_ms": _percentile(from_ack, 0.99) * 1000,
            "handler_first": sum(1 for delay in from_ack if delay < 0),
            "issue_mean_ms": statistics.fmean(from_issue) * 1000,
        }


async def main(arguments: argparse.Namespace) -> None:
    etcd: EmbeddedEtcd | None = None
    root: Path | None = None
    if arguments.endpoint:
        base = EtcdConfig(endpoints=[arguments.endpoint])
    else:
        root = Path(tempfile.mkdtemp(prefix="kukeon-bench-", dir="/dev/shm"))
        etcd = EmbeddedEtcd(data_dir=root, auto_compaction_retention=None)
        await etcd.start()
        base = etcd.config()
    try:

        def config() -> EtcdConfig:
            return dataclasses.replace(base, key_prefix=f"/bench-{uuid.uuid4().hex[:8]}")

        results: dict[str, dict[str, Any]] = {}
        results["startup"] = await bench_startup(config(), arguments.objects)
        print(f"startup: {results['startup']}", flush=True)
        results["watch"] = await bench_watch(config(), arguments.objects)
        print(f"watch:   {results['watch']}", flush=True)
        results["latency"] = await bench_latency(config(), arguments.latency_samples)
        print(f"latency: {results['latency']}", flush=True)
        startup, watch, latency = results["startup"], results["watch"], results["latency"]
        print()
        print("| measurement | result |")
        print("|---|---|")
        print(
            f"| startup: {startup['objects']} stored objects listed and handled | "
            f"{startup['seconds']:.2f} s, {startup['per_second']:,.0f} objects/s |"
        )
        print(
            f"| watch: {watch['objects']} creates (other process, 256 in flight) handled | "
            f"{watch['seconds']:.2f} s, {watch['per_second']:,.0f} events/s "
            f"(writer: {watch['writes_per_second']:,.0f}/s; last call "
            f"{watch['tail_after_writes'] * 1000:.0f} ms after the last write; "
            f"operator process: {watch['per_cpu_second']:,.0f} events per CPU-second) |"
        )
        print(
            f"| latency, write issued → handler ({latency['samples']} updates) | "
            f"p50 {latency['issue_p50_ms']:.2f} ms, p99 {latency['issue_p99_ms']:.2f} ms |"
        )
        print(
            f"| latency, write acknowledged → handler | "
            f"p50 {latency['ack_p50_ms']:.2f} ms, p99 {latency['ack_p99_ms']:.2f} ms "
            f"(handler called first: {latency['handler_first']:.0f} of {latency['samples']}) |"
        )
    finally:
        if etcd is not None:
            await etcd.kill()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--endpoint", help="an etcd endpoint to use instead of a private etcd")
    parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    for flag in ("--ca-file", "--cert-file", "--key-file"):
        parser.add_argument(flag, type=Path, help=argparse.SUPPRESS)
    logging.basicConfig(level=logging.WARNING)
    parsed = parser.parse_args()
    if parsed.write_only:
        writer = EtcdConfig(
            endpoints=[parsed.endpoint],
            key_prefix=parsed.prefix,
            ca_file=parsed.ca_file,
            cert_file=parsed.cert_file,
            key_file=parsed.key_file,
        )
        asyncio.run(write_only(writer, parsed.objects))
    else:
        asyncio.run(main(parsed))
