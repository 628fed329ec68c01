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
  (netns, CNI bridge ADD, hosts files) add.

kukeond's event-loop lag (``kukeon_event_loop_lag_seconds`` on its /metrics) is read before
and after the rounds: how often, and for how long, one callback held the loop while the
cells were created and deleted. With ``--asyncio-debug`` kukeond runs in asyncio's debug
mode (slower), which logs every callback that held the loop over 50 ms by name; the
report lists the slowest.

    .venv/bin/python bench/cell_bench.py [--sizes 1,10,50] [--rounds 5,3,1] \
        [--loop-priority] [--asyncio-debug] [--output docs/benchmarks/cells.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "operator"))
sys.path.insert(0, str(REPO_ROOT))

from kukeon.api import ContainerSpec, Kind, parse_resource  # noqa: E402
from kukeon.daemon.config import DaemonConfig  # noqa: E402
from kukeon.runtime.containerd import ContainerdClient, TaskIO  # noqa: E402
from kukeon.runtime.containerd.namespaces import realm_namespace  # noqa: E402
from kukeon.runtime.containerd.spec import (  # noqa: E402
    SpecContext,
    build_runtime_spec,
    current_hard_rlimits,
)
from kukeon.store import EmbeddedEtcd, EtcdConfig, NotFound, Registry  # noqa: E402
from tests.fixtures.containerd import PrivateContainerd, clean_namespace  # noqa: E402
from tests.fixtures.kukeond import sweep_host  # noqa: E402

IMAGE = "kukeon.io/test/busybox:latest"
REALM, SPACE, STACK = "bench", "s1", "st1"
KEEPER = "keeper"  # the cell that keeps the hierarchy materialised between rounds
DIRECT_NAMESPACE = "kukeon-cell-bench-direct"
# `sh` as PID 1 ignores SIGTERM unless it traps it: this one stops within a second.
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
KUKEOND = Path(sys.executable).parent / "kukeond"
LOOP_NICE = -15  # --loop-priority


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_loop_lag(metrics_address: str) -> LoopLag:
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10) as answer:
        text = answer.read().decode()
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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class SizeResult:
    size: int
    kukeon: list[float] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    kukeon_all_ready: list[float] = field(default_factory=list)
    direct_all_started: list[float] = field(default_factory=list)


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

    def cell(self, name: str) -> Any:
        return parse_resource(
            {
                "apiVersion": "kukeon.io/v1beta1",
                "kind": "Cell",
                "metadata": {"name": name},
                "spec": {
                    "realmId": REALM,
                    "spaceId": SPACE,
                    "stackId": STACK,
                    "containers": [
                        {"id": "main", "image": IMAGE, "command": SLEEPER[0], "args": SLEEPER[1:]}
                    ],
                },
            }
        )

    async def kukeon_round(self, size: int, number: int, result: SizeResult) -> None:
        names = [f"b{size}-{number}-{i}" for i in range(size)]
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
            await self.registry.create(self.cell(name))
            created[name] = time.perf_counter()

        try:
            started = time.perf_counter()
            await asyncio.gather(*(create(name) for name in names))
            await asyncio.wait_for(all_ready.wait(), 300)
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
        ids = [f"d{size}-{number}-{i}" for i in range(size)]
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
        result.direct.extend(moment - started for moment in finished)
        result.direct_all_started.append(max(finished) - started)

        async def remove(container_id: str) -> None:
            await tasks.stop(container_id, grace_period=2.0)
            await tasks.delete(container_id)
            await containers.delete(container_id)

        await asyncio.gather(*(remove(container_id) for container_id in ids))


def key(name: str) -> tuple[str, str, str, str]:
    return (REALM, SPACE, STACK, name)


async def wait_gone(
    registry: Registry, kind: Kind, object_key: tuple[str, ...], within: float = 120
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            await registry.get(kind, object_key)
        except NotFound:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{kind.value} {'/'.join(object_key)} was not deleted within {within}s")


async def wait_ready(
    registry: Registry, kind: Kind, object_key: tuple[str, ...], within: float = 60
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(NotFound):
            if (await registry.get(kind, object_key)).status.state == "Ready":
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{kind.value} {'/'.join(object_key)} did not become Ready")


def daemon_config(base: Path, *, etcd: EtcdConfig, prefix: str, containerd: str) -> DaemonConfig:
    token = secrets.token_hex(3)
    return DaemonConfig(
        etcd_endpoints=tuple(etcd.endpoints),
        etcd_ca_file=etcd.ca_file,
        etcd_cert_file=etcd.cert_file,
        etcd_key_file=etcd.key_file,
        etcd_prefix=prefix,
        containerd_address=Path(containerd),
        state_dir=base / "state",
        run_dir=base / "run",
        node_name=f"bench-{token}",
        cgroup_root=f"/kukeon-bench-{token}",
        cni_conf_dir=base / "cni",
        netns_dir=base / "netns",
        nft_table=f"kukeon_bench_{token}",
        subnet_pool=IPv4Network(f"10.{176 + secrets.randbelow(16)}.0.0/20"),
        metrics_address=f"127.0.0.1:{free_port()}",
        bootstrap=False,
        stop_grace_seconds=1.0,
    )


def daemon_argv(config: DaemonConfig) -> list[str]:
    tls = [
        (flag, str(path))
        for flag, path in (
            ("--etcd-ca-file", config.etcd_ca_file),
            ("--etcd-cert-file", config.etcd_cert_file),
            ("--etcd-key-file", config.etcd_key_file),
        )
        if path is not None
    ]
    return [
        str(KUKEOND),
        "--etcd-endpoints", ",".join(config.etcd_endpoints),
        *(part for pair in tls for part in pair),
        "--etcd-prefix", config.etcd_prefix,
        "--containerd-address", str(config.containerd_address),
        "--state-dir", str(config.state_dir),
        "--run-dir", str(config.run_dir),
        "--node-name", config.node_name,
        "--cgroup-root", config.cgroup_root,
        "--cni-conf-dir", str(config.cni_conf_dir),
        "--netns-dir", str(config.netns_dir),
        "--nft-table", config.nft_table,
        "--subnet-pool", str(config.subnet_pool),
        "--metrics-address", config.metrics_address,
        "--stop-grace-seconds", str(config.stop_grace_seconds),
        "--log-level", "warning",
        "--no-bootstrap",
    ]  # fmt: skip


def start_daemon(
    config: DaemonConfig, *, log: Path, asyncio_debug: bool = False
) -> subprocess.Popen[bytes]:
    environment = dict(os.environ)
    if asyncio_debug:
        environment["PYTHONASYNCIODEBUG"] = "1"
    with log.open("ab") as output:
        return subprocess.Popen(
            daemon_argv(config),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=environment,
        )


async def create_hierarchy(registry: Registry) -> None:
    documents: list[dict[str, Any]] = [
        {"kind": "Realm", "metadata": {"name": REALM}, "spec": {}},
        {"kind": "Space", "metadata": {"name": SPACE}, "spec": {"realmId": REALM}},
        {
            "kind": "Stack",
            "metadata": {"name": STACK},
            "spec": {"realmId": REALM, "spaceId": SPACE},
        },
    ]
    for document in documents:
        await registry.create(parse_resource({"apiVersion": "kukeon.io/v1beta1", **document}))
    await wait_ready(registry, Kind.STACK, (REALM, SPACE, STACK))


def rounds_for(sizes: list[int], rounds: list[int]) -> Iterator[tuple[int, int]]:
    for size, count in zip(sizes, rounds, strict=True):
        for number in range(count):
            yield size, number


async def bench(
    sizes: list[int],
    rounds: list[int],
    *,
    asyncio_debug: bool = False,
    loop_priority: bool = False,
) -> tuple[list[SizeResult], Bench, str]:
    binary = shutil.which("containerd")
    if binary is None:
        raise SystemExit("containerd is needed (Debian package containerd)")
    base = Path(tempfile.mkdtemp(prefix="kukeon-cell-bench-"))
    containerd_daemon = PrivateContainerd(base / "containerd", binary=binary)
    etcd = EmbeddedEtcd(data_dir=base / "etcd")
    prefix = f"/kukeon-bench-{secrets.token_hex(3)}"
    config: DaemonConfig | None = None
    process: subprocess.Popen[bytes] | None = None
    registry: Registry | None = None
    client: ContainerdClient | None = None
    try:
        await asyncio.to_thread(containerd_daemon.start)
        await etcd.start()
        archive = base / "busybox.tar"
        await asyncio.to_thread(
            subprocess.run,
            [str(REPO_ROOT / "hack" / "make-test-image.sh"), str(archive), IMAGE],
            check=True,
            capture_output=True,
        )
        config = daemon_config(
            base, etcd=etcd.config(), prefix=prefix, containerd=containerd_daemon.address
        )
        process = start_daemon(config, log=base / "kukeond.log", asyncio_debug=asyncio_debug)
        if loop_priority:
            # The event loop's thread (kukeond's main thread) before containerd, runc and
            # etcd on the shared cores: its lag then measures blocking, not waiting for a CPU.
            os.setpriority(os.PRIO_PROCESS, process.pid, LOOP_NICE)
        registry = await Registry.connect(etcd.config(key_prefix=prefix))
        client = ContainerdClient(containerd_daemon.address)
        version = (await client.wait_ready(within=30)).version
        await create_hierarchy(registry)
        # This kukeond is not the host's default installation: its realm's namespace
        # carries its instance tag.
        namespace = realm_namespace(REALM, config.instance)
        await client.namespaces.ensure(namespace)
        await client.images(namespace).import_archive(archive)
        await client.namespaces.ensure(DIRECT_NAMESPACE)
        await client.images(DIRECT_NAMESPACE).import_archive(archive)
        state = Bench(
            base=base,
            registry=registry,
            containerd=client,
            daemon=process,
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
        await registry.create(state.cell(KEEPER))
        await wait_ready(registry, Kind.CELL, key(KEEPER))
        await asyncio.sleep(3)
        state.rss_idle = rss_mib(process.pid)
        state.lag_before = await asyncio.to_thread(read_loop_lag, config.metrics_address)
        log_offset = (base / "kukeond.log").stat().st_size
        results = {size: SizeResult(size) for size in sizes}
        for size, number in rounds_for(sizes, rounds):
            print(f"size {size} round {number}", file=sys.stderr)
            await state.kukeon_round(size, number, results[size])
            await state.direct_round(size, number, results[size])
        state.lag_after = await asyncio.to_thread(read_loop_lag, config.metrics_address)
        state.slow_callbacks = slow_callbacks(base / "kukeond.log", offset=log_offset)
        return list(results.values()), state, version
    finally:
        if registry is not None:
            with contextlib.suppress(Exception):
                await registry.delete(Kind.REALM, (REALM,), cascade=True)
                await wait_gone(registry, Kind.REALM, (REALM,))
            await registry.close()
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, 30)
            if process.poll() is None:
                process.kill()
        if client is not None:
            realm_ns = realm_namespace(REALM, config.instance) if config else ""
            for namespace in (realm_ns, DIRECT_NAMESPACE):
                if not namespace:
                    continue
                with contextlib.suppress(Exception):
                    await clean_namespace(client, namespace)
            await client.close()
        if config is not None:
            await sweep_host(config, realm=REALM, spaces=[SPACE])
            for _ in range(3):  # kukeond bind-mounts the netns directory on itself
                await asyncio.to_thread(
                    subprocess.run,
                    ["umount", "-l", str(config.netns_dir)],
                    check=False,
                    capture_output=True,
                )
        await asyncio.to_thread(containerd_daemon.teardown)
        with contextlib.suppress(Exception):
            await etcd.stop()
        shutil.rmtree(base, ignore_errors=True)


def report(results: list[SizeResult], state: Bench, *, version: str, command: str) -> str:
    rows = []
    for result in results:
        k50, k95 = percentile(result.kukeon, 0.5), percentile(result.kukeon, 0.95)
        d50, d95 = percentile(result.direct, 0.5), percentile(result.direct, 0.95)
        rows.append(
            f"| {result.size} | {len(result.kukeon)} | {k50 * 1000:.0f} ms | {k95 * 1000:.0f} ms "
            f"| {d50 * 1000:.0f} ms | {d95 * 1000:.0f} ms | {k50 / d50:.1f} | {k95 / d95:.1f} "
            f"| {max(result.kukeon_all_ready):.2f} s | {max(result.direct_all_started):.2f} s |"
        )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
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
            "the batch's start to each Tasks.Start answer. Rounds alternate kukeon and direct.",
            "",
            f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{mode}, containerd {version}, "
            f"{platform.machine()}, {os.cpu_count()} cores, load average {load} at the end:",
            "",
            "| cells | samples | kukeon p50 | kukeon p95 | direct p50 | direct p95 "
            "| p50 ratio | p95 ratio | kukeon all Ready | direct all started |",
            "|---|---|---|---|---|---|---|---|---|---|",
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
    results, state, version = asyncio.run(
        bench(
            sizes,
            rounds,
            asyncio_debug=args.asyncio_debug,
            loop_priority=args.loop_priority,
        )
    )
    command = ".venv/bin/python bench/cell_bench.py " + " ".join(sys.argv[1:])
    text = report(results, state, version=version, command=command.strip())
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()
