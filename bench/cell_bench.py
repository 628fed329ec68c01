"""Benchmark of the cell controller: cell create (etcd write) to Ready, against containerd alone.

The script starts everything it measures on private resources: a containerd (own root,
state and socket), an etcd, and kukeond as a subprocess (own state dir, cgroup root, nft
table, netns dir and subnet pool), then:

- creates a realm, a space and a stack, imports the busybox test image
  (hack/make-test-image.sh) into the realm's namespace, starts one `keeper` cell there
  (a node materialises a realm/space/stack only while it runs a cell in it, so without
  it every round would also rebuild the cgroups, bridge and egress rules), and reads
  kukeond's RSS once idle;
- for each size N (1, 10, 50 by default) and round: creates N cells of one busybox
  container at once (concurrent etcd writes) and times, per cell, the moment its create
  was acknowledged by etcd to the moment a watch on the registry sees `state: Ready`;
  then deletes them and waits until they are gone. With 50 cells Ready, kukeond's RSS is
  read again;
- in the same rounds, alternating with kukeond's: creates and starts the same N containers
  directly with containerd (Containers.Create + Tasks.Create + Tasks.Start, the same OCI
  spec builder, each task in its own cgroup) and times each from the batch's start to its
  Tasks.Start answer. That baseline has no network namespace and no CNI: the difference is
  what kukeon's control plane (etcd, watch, queues, status writes) and the cell's network
  (netns, bridge attachment, hosts files) add;
- for each size in ``--host-network-sizes`` (1 by default), the same rounds again with
  cells whose container sets ``hostNetwork: true`` (no namespace, no attachment, no hosts
  files), each alternating with a direct round of its own: what the control plane alone
  adds. A round runs the host-network cells, their direct batch, the bridged cells, theirs.
  Every direct batch of a size does the same work, so the report also divides each row's
  kukeon p50 by the p50 of all of them (both rows'), less noisy than its own batches alone.

Each kukeon round also reads kukeond's CPU time (its threads' ``schedstat``, in ns) before
the creates and once all are Ready: the row's "kukeond CPU per cell" is its median over
the rounds, divided by N. Wall times on the shared cores move by tens of ms with the load;
that CPU less (one cell, 15 runs at load 1-8 of two trees a bridged start's CPU differs
by ~1-1.7 ms in: 26.8-33.2 ms hostNetwork, 39.0-48.5 ms bridged, the bridged row's minus
the hostNetwork row's 11.8-17.1 ms, where the kukeon p50s spread over 117-177 ms), so it
tells a change of ~5 ms of a start's work where the wall times cannot, while 1-2 ms is
still inside its spread. A thread that ended within the round (the one unsharing a
cell's network namespace, ~0.5 ms) is not counted.

kukeond's event-loop lag (``kukeon_event_loop_lag_seconds`` on its /metrics) is read before
and after the rounds: how often, and for how long, one callback held the loop while the
cells were created and deleted. With ``--asyncio-debug`` kukeond runs in asyncio's debug
mode (slower), which logs every callback that held the loop over 50 ms by name; the
report lists the slowest.

    .venv/bin/python bench/cell_bench.py [--sizes 1,10,50] [--rounds 5,3,1] \
        [--host-network-sizes 1] [--loop-priority] [--asyncio-debug] \
        [--output docs/benchmarks/cells.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    IMAGE,
    KEEPER,
    REALM,
    SLEEPER,
    SPACE,
    STACK,
    cell_document,
    control_plane,
    key,
    rss_mib,
    scrape_metrics,
    start_daemon,
    wait_gone,
    wait_ready,
)
from prometheus_client.parser import text_string_to_metric_families

from kukeon.api import ContainerSpec, Kind
from kukeon.daemon.config import DaemonConfig
from kukeon.runtime.containerd import ContainerdClient, TaskIO
from kukeon.runtime.containerd.spec import SpecContext, build_runtime_spec, current_hard_rlimits
from kukeon.store import Registry

DIRECT_NAMESPACE = "kukeon-cell-bench-direct"
LOOP_NICE = -15  # --loop-priority


def daemon_cpu_ms(pid: int) -> float:
    """CPU time of the threads of process ``pid`` alive now, in ms (their ``schedstat``'s
    first field, ns: precise where ``/proc/<pid>/stat`` counts 10 ms ticks)."""
    total = 0
    for thread in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((thread / "schedstat").read_text().split()[0])
    return total / 1e6


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class LoopLag:
    """kukeond's ``kukeon_event_loop_lag_seconds`` histogram at one moment."""

    buckets: dict[float, float]  # upper bound → cumulative count
    count: float
    max_since_start: float

    def over(self, bound: float, *, since: LoopLag) -> float:
        """How many lag samples exceeded ``bound`` between ``since`` and now."""
        within = self.buckets.get(bound, 0.0) - since.buckets.get(bound, 0.0)
        return (self.count - since.count) - within


def read_loop_lag(metrics_address: str, token_file: Path | None) -> LoopLag:
    text = scrape_metrics(metrics_address, token_file)
    buckets: dict[float, float] = {}
    count = maximum = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kukeon_event_loop_lag_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == "kukeon_event_loop_lag_seconds_count":
                count = sample.value
            elif sample.name == "kukeon_event_loop_lag_max_seconds":
                maximum = sample.value
    return LoopLag(buckets=buckets, count=count, max_since_start=maximum)


# asyncio debug mode: "Executing <Handle ...> took 0.123 seconds"
SLOW_CALLBACK = re.compile(r"Executing (?P<what>.*) took (?P<seconds>[0-9.]+) seconds")


def slow_callbacks(log: Path, *, offset: int, limit: int = 5) -> list[tuple[float, str]]:
    """The slowest callbacks asyncio logged after byte ``offset`` of kukeond's log."""
    with log.open("rb") as text:
        text.seek(offset)
        logged = text.read().decode(errors="replace")
    found = [
        (float(match["seconds"]), match["what"][:160]) for match in SLOW_CALLBACK.finditer(logged)
    ]
    return sorted(found, reverse=True)[:limit]


@dataclass
class SizeResult:
    size: int
    host_network: bool = False
    kukeon: list[float] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    kukeon_all_ready: list[float] = field(default_factory=list)
    direct_all_started: list[float] = field(default_factory=list)
    round_ratios: list[float] = field(default_factory=list)
    """Per round, kukeon's p50 over the direct batch's p50 that followed it."""
    kukeond_cpu: list[float] = field(default_factory=list)
    """Per round, kukeond's CPU time from before the creates to all Ready, per cell (ms)."""


@dataclass
class Bench:
    base: Path
    registry: Registry
    containerd: ContainerdClient
    daemon: subprocess.Popen[bytes]
    cgroup_root: str
    direct_spec: ContainerSpec
    direct_context: SpecContext
    rss_idle: float = 0.0
    rss_loaded: float = 0.0
    rss_loaded_size: int = 0
    lag_before: LoopLag | None = None
    lag_after: LoopLag | None = None
    slow_callbacks: list[tuple[float, str]] = field(default_factory=list)
    asyncio_debug: bool = False
    loop_priority: bool = False

    # --- kukeond ------------------------------------------------------------------------

    def cell(self, name: str, *, host_network: bool = False) -> Any:
        container = {"id": "main", "image": IMAGE, "command": SLEEPER[0], "args": SLEEPER[1:]}
        if host_network:
            container["hostNetwork"] = True
        return cell_document(name, [container])

    async def kukeon_round(self, size: int, number: int, result: SizeResult) -> None:
        prefix = "h" if result.host_network else "b"
        names = [f"{prefix}{size}-{number}-{i}" for i in range(size)]
        since = await self.registry.current_revision()
        ready: dict[str, float] = {}
        all_ready = asyncio.Event()

        async def follow() -> None:
            scope = (REALM, SPACE, STACK)
            async for event in self.registry.watch(Kind.CELL, scope, resource_version=since):
                name = event.object.metadata.name
                if name in names and name not in ready and event.object.status.state == "Ready":
                    ready[name] = time.perf_counter()
                    if len(ready) == size:
                        all_ready.set()

        watcher = asyncio.create_task(follow())
        created: dict[str, float] = {}

        async def create(name: str) -> None:
            await self.registry.create(self.cell(name, host_network=result.host_network))
            created[name] = time.perf_counter()

        try:
            cpu_before = daemon_cpu_ms(self.daemon.pid)
            started = time.perf_counter()
            await asyncio.gather(*(create(name) for name in names))
            await asyncio.wait_for(all_ready.wait(), 300)
            result.kukeond_cpu.append((daemon_cpu_ms(self.daemon.pid) - cpu_before) / size)
            result.kukeon_all_ready.append(max(ready.values()) - started)
            result.kukeon.extend(ready[name] - created[name] for name in names)
            if size > self.rss_loaded_size:
                await asyncio.sleep(2)  # let the last status writes and GC settle
                self.rss_loaded, self.rss_loaded_size = rss_mib(self.daemon.pid), size
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await asyncio.gather(*(self.registry.delete(Kind.CELL, key(name)) for name in names))
        for name in names:
            await wait_gone(self.registry, Kind.CELL, key(name))

    # --- containerd alone ---------------------------------------------------------------

    async def direct_round(self, size: int, number: int, result: SizeResult) -> None:
        prefix = "dh" if result.host_network else "d"
        ids = [f"{prefix}{size}-{number}-{i}" for i in range(size)]
        containers = self.containerd.containers(DIRECT_NAMESPACE)
        tasks = self.containerd.tasks(DIRECT_NAMESPACE)
        logs = self.base / "direct-logs"

        async def run(container_id: str) -> float:
            context = SpecContext(
                image_config=self.direct_context.image_config,
                container_id=container_id,
                hostname=container_id,
                cgroups_path=f"{self.cgroup_root}/direct/{container_id}",
                host_hard_rlimits=self.direct_context.host_hard_rlimits,
            )
            spec = build_runtime_spec(
                self.direct_spec.model_copy(update={"id": container_id}), context=context
            )
            await containers.create(container_id, image=IMAGE, spec=spec)
            await tasks.create(container_id, io=TaskIO.log_file(logs / f"{container_id}.log"))
            await tasks.start(container_id)
            return time.perf_counter()

        started = time.perf_counter()
        finished = await asyncio.gather(*(run(container_id) for container_id in ids))
        times = [moment - started for moment in finished]
        result.direct.extend(times)
        result.direct_all_started.append(max(finished) - started)
        kukeon_round = result.kukeon[-size:]
        result.round_ratios.append(percentile(kukeon_round, 0.5) / percentile(times, 0.5))

        async def remove(container_id: str) -> None:
            await tasks.stop(container_id, grace_period=2.0)
            await tasks.delete(container_id)
            await containers.delete(container_id)

        await asyncio.gather(*(remove(container_id) for container_id in ids))


def rounds_for(sizes: list[int], rounds: list[int]) -> Iterator[tuple[int, int]]:
    for size, count in zip(sizes, rounds, strict=True):
        for number in range(count):
            yield size, number


def rows_for(sizes: list[int], host_network_sizes: list[int]) -> dict[int, list[SizeResult]]:
    """Each size's rows in the order a round runs them: host-network cells (when the size
    is in ``host_network_sizes``), then bridged ones."""
    return {
        size: [
            *([SizeResult(size, host_network=True)] if size in host_network_sizes else []),
            SizeResult(size),
        ]
        for size in sizes
    }


async def bench(
    sizes: list[int],
    rounds: list[int],
    *,
    host_network_sizes: list[int],
    asyncio_debug: bool = False,
    loop_priority: bool = False,
) -> tuple[list[SizeResult], Bench, str]:
    debug = {"PYTHONASYNCIODEBUG": "1"} if asyncio_debug else {}

    def launch(config: DaemonConfig, log: Path) -> subprocess.Popen[bytes]:
        return start_daemon(config, log, environment=debug)

    async with control_plane(
        "cell-bench", launch=launch, image_namespaces=[DIRECT_NAMESPACE]
    ) as plane:
        if loop_priority:
            # The event loop's thread (kukeond's main thread) before containerd, runc and
            # etcd on the shared cores: its lag then measures blocking, not waiting for a CPU.
            os.setpriority(os.PRIO_PROCESS, plane.daemon.pid, LOOP_NICE)
        client, config = plane.containerd, plane.config
        state = Bench(
            base=plane.base,
            registry=plane.registry,
            containerd=client,
            daemon=plane.daemon,
            cgroup_root=config.cgroup_root,
            direct_spec=ContainerSpec.model_validate(
                {"id": "direct", "image": IMAGE, "command": SLEEPER[0], "args": SLEEPER[1:]}
            ),
            direct_context=SpecContext(
                image_config=await client.images(DIRECT_NAMESPACE).config(IMAGE),
                container_id="direct",
                hostname="direct",
                cgroups_path=f"{config.cgroup_root}/direct/direct",
                host_hard_rlimits=current_hard_rlimits(),
            ),
            asyncio_debug=asyncio_debug,
            loop_priority=loop_priority,
        )
        await plane.registry.create(state.cell(KEEPER))
        await wait_ready(plane.registry, Kind.CELL, key(KEEPER))
        await asyncio.sleep(3)
        state.rss_idle = rss_mib(plane.daemon.pid)
        state.lag_before = await asyncio.to_thread(
            read_loop_lag, config.metrics_address, config.metrics_token_path
        )
        log_offset = plane.log.stat().st_size
        results = rows_for(sizes, host_network_sizes)
        for size, number in rounds_for(sizes, rounds):
            print(f"size {size} round {number}", file=sys.stderr)
            for row in results[size]:
                await state.kukeon_round(size, number, row)
                await state.direct_round(size, number, row)
        state.lag_after = await asyncio.to_thread(
            read_loop_lag, config.metrics_address, config.metrics_token_path
        )
        state.slow_callbacks = slow_callbacks(plane.log, offset=log_offset)
        rows = [row for size in sizes for row in results[size]]
        return rows, state, plane.version


def report(
    results: list[SizeResult],
    state: Bench,
    *,
    version: str,
    command: str,
    load_at_start: tuple[float, float, float],
) -> str:
    rows = []
    for result in results:
        k50, k95 = percentile(result.kukeon, 0.5), percentile(result.kukeon, 0.95)
        d50, d95 = percentile(result.direct, 0.5), percentile(result.direct, 0.95)
        # Every direct batch of this size does the same work, whichever row it follows:
        # pooled, one row's ratio is not at the mercy of its own batches' noise (stop 35).
        pooled = percentile([t for r in results if r.size == result.size for t in r.direct], 0.5)
        cells = f"{result.size} (hostNetwork)" if result.host_network else str(result.size)
        rows.append(
            f"| {cells} | {len(result.kukeon)} | {k50 * 1000:.0f} ms | {k95 * 1000:.0f} ms "
            f"| {d50 * 1000:.0f} ms | {d95 * 1000:.0f} ms | {k50 / d50:.2f} | {k95 / d95:.2f} "
            f"| {percentile(result.round_ratios, 0.5):.2f} | {k50 / pooled:.2f} "
            f"| {max(result.kukeon_all_ready):.2f} s | {max(result.direct_all_started):.2f} s "
            f"| {percentile(result.kukeond_cpu, 0.5):.1f} ms |"
        )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    start_load = ", ".join(f"{value:.2f}" for value in load_at_start)
    mode = " (kukeond in asyncio debug mode: slower, not comparable)" if state.asyncio_debug else ""
    return "\n".join(
        [
            "## Cells: create to Ready (`bench/cell_bench.py`)",
            "",
            "Command (from the repository root, as root; the script starts its own containerd,",
            "etcd and kukeond on private roots, sockets, cgroups, nft table and netns dir):",
            "",
            "```",
            command,
            "```",
            "",
            "kukeon: N cells of one busybox container (a `sh` loop) are created at once; each is",
            "timed from the moment etcd acknowledged its create to the moment a registry watch",
            "sees its status `Ready` (the cgroup, network namespace, CNI bridge attachment, hosts",
            "files, container and started task are all done by then). Direct: the same N",
            "containers created and started with containerd alone (Containers.Create,",
            "Tasks.Create, Tasks.Start; the same OCI spec builder; no netns, no CNI), timed from",
            "the batch's start to each Tasks.Start answer. Rounds alternate kukeon and direct",
            "(the rounds' ratio: each round's kukeon p50 over the direct batch's after it);",
            "a `hostNetwork` row's cells set `hostNetwork: true` on their container (no",
            "namespace, attachment or hosts files) and alternate with a direct batch of their own.",
            "Those batches all do the same work: the column before the last two divides a row's",
            "kukeon p50 by the p50 of every direct batch of its size in the run, both rows'.",
            "The last column: kukeond's CPU time per cell over a round (create to all Ready),",
            "median over the rounds: less at the mercy of the load than the wall times.",
            "",
            f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{mode}, containerd {version}, "
            f"{platform.machine()}, {os.cpu_count()} cores, load average {start_load} at the "
            f"start, {load} at the end:",
            "",
            "| cells | samples | kukeon p50 | kukeon p95 | direct p50 | direct p95 "
            "| p50 ratio | p95 ratio | rounds' p50 ratio, median "
            "| p50 ratio to every direct batch of its size "
            "| kukeon all Ready | direct all started | kukeond CPU per cell |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"kukeond RSS: {state.rss_idle:.1f} MiB idle (realm, space, stack and the keeper "
            f"cell Ready), {state.rss_loaded:.1f} MiB with {state.rss_loaded_size} more "
            "cells Ready.",
            "",
            *loop_lag_report(state),
        ]
    )


def loop_lag_report(state: Bench) -> list[str]:
    before, after = state.lag_before, state.lag_after
    if before is None or after is None:
        return []
    samples = after.count - before.count
    lines = [
        f"kukeond's event loop during the rounds (`kukeon_event_loop_lag_seconds`, a 100 ms "
        f"timer): {samples:.0f} samples, {after.over(0.05, since=before):.0f} late by more "
        f"than 50 ms, {after.over(0.1, since=before):.0f} by more than 100 ms; the longest "
        f"lag since kukeond started: {after.max_since_start * 1000:.0f} ms"
        + (
            f" (kukeond's loop thread reniced to {LOOP_NICE}: waiting for a CPU left out)."
            if state.loop_priority
            else " (the loop thread shares the cores with containerd, runc and etcd)."
        ),
        "",
    ]
    if state.asyncio_debug:
        lines += [
            "Slowest callbacks during the rounds, logged by asyncio's debug mode (over 50 ms):",
            "",
            *(f"- {seconds * 1000:.0f} ms: `{what}`" for seconds, what in state.slow_callbacks),
            *([] if state.slow_callbacks else ["- none"]),
            "",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument("--rounds", default="5,3,1", help="rounds per size")
    parser.add_argument(
        "--host-network-sizes",
        default="1",
        help="sizes also run as hostNetwork cells, in the same rounds ('' for none)",
    )
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    parser.add_argument(
        "--loop-priority",
        action="store_true",
        help=f"renice kukeond's event-loop thread to {LOOP_NICE}, so its lag is blocking only",
    )
    parser.add_argument(
        "--asyncio-debug",
        action="store_true",
        help="run kukeond in asyncio debug mode and list the callbacks that held its loop",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: containerd, runc, CNI and cgroups need it")
    sizes = [int(part) for part in args.sizes.split(",")]
    rounds = [int(part) for part in args.rounds.split(",")]
    host_network_sizes = [int(part) for part in args.host_network_sizes.split(",") if part]
    load_at_start = os.getloadavg()
    results, state, version = asyncio.run(
        bench(
            sizes,
            rounds,
            host_network_sizes=host_network_sizes,
            asyncio_debug=args.asyncio_debug,
            loop_priority=args.loop_priority,
        )
    )
    command = ".venv/bin/python bench/cell_bench.py " + " ".join(sys.argv[1:])
    text = report(
        results, state, version=version, command=command.strip(), load_at_start=load_at_start
    )
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()
