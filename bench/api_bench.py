"""Benchmark of the API server against the raw registry, in the same run on the same etcd.

Measured, each through three paths -- the ``Registry`` directly (in-process, no HTTP),
the API over the unix socket, and the API over TCP+TLS with a bearer token:

- GET of one cell: requests/s with ``--concurrency`` requests in flight;
- LIST of ``--cells`` cells (default 1,000) in one stack: lists/s, one at a time;
- create of a cell: requests/s with ``--concurrency`` in flight;
- watch fan-out: ``--watchers`` watchers (default 100) on the cells collection, one
  labelled update written at a time through the registry; latency from just before the
  write to each watcher's receipt of the event (p50/p99 over every watcher and write);
- GET of one cell again with a bare aiohttp client (the body read, not parsed): the
  server's own rate, without ``ApiClient``'s pydantic validation in the same process;
- ``--clients`` concurrent clients (default 200) for ``--clients-seconds`` (default 30),
  each alternating a GET of a random cell and a LIST of the ten cells of one label
  (``group=N``): requests/s and p50/p99. Measured twice (``--load both``): with
  ``bench/loadgen.py`` in its own process (one keep-alive HTTP/1.1 connection per client
  over the unix socket, the status and length read, no JSON parsed: the server's rate, as
  wrk or hey would measure it; also the server process's CPU time per answer, which other
  processes' load changes far less than the rate), then with an ``ApiClient`` per client
  in this process
  (what kukectl does: pydantic validation of every answer, on the server's event loop).
  ``--py-spy DIR`` records the server with py-spy during the lean clients.

The GET and concurrent-clients rows are measured twice in the same run, alternating: on
the API server as configured (GET and LIST from the watch cache) and on a second one over
the same registry with ``watch_cache=False`` (every read from etcd, the path before the
cache), so the two can be compared on one machine under one load.

The other API clients are ``kukeon.client.apiclient.ApiClient`` (what kukectl uses), so
those numbers include JSON encoding, HTTP, authentication and pydantic validation on both
sides. Client and server share one process and this 2-core machine: absolute numbers are a
floor. ``KUKEON_OPERATOR_TREE=DIR`` imports kukeon from another tree's ``operator``
directory (``git archive <commit> operator``), for a before/after run with
``--clients-only``.

Runs its own etcd (data under /dev/shm) and API server, and removes them at the end:

    .venv/bin/python bench/api_bench.py [--cells 1000] [--watchers 100] [--clients 200] \
        [--clients-seconds 30] [--load both|lean|apiclient] [--clients-only] \
        [--py-spy DIR] [--output docs/benchmarks/api.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# KUKEON_OPERATOR_TREE: another tree's operator directory (a before/after comparison).
sys.path.insert(0, os.environ.get("KUKEON_OPERATOR_TREE", str(REPO_ROOT / "operator")))
sys.path.insert(0, str(REPO_ROOT))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

import kukeon  # noqa: E402
from kukeon.api import AnyResource, Kind, parse_resource  # noqa: E402
from kukeon.apiserver import ApiSettings, serve_api  # noqa: E402
from kukeon.client.apiclient import ApiClient  # noqa: E402
from kukeon.store import EmbeddedEtcd, Registry  # noqa: E402
from tests.fixtures.services import free_tcp_port  # noqa: E402

SCOPE = ("bench", "default", "default")
CELLS_PATH = "/apis/kukeon.io/v1beta1/realms/bench/spaces/default/stacks/default/cells"


def cell(name: str, **labels: str) -> AnyResource:
    """A cell of the bench's stack."""
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "realmId": SCOPE[0],
                "spaceId": SCOPE[1],
                "stackId": SCOPE[2],
                "containers": [{"id": "main", "image": "busybox:latest", "root": True}],
            },
        }
    )


def parent(kind: Kind, key: tuple[str, ...]) -> AnyResource:
    fields = {Kind.SPACE: ["realmId"], Kind.STACK: ["realmId", "spaceId"]}.get(kind, [])
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": kind.value,
            "metadata": {"name": key[-1]},
            "spec": dict(zip(fields, key[:-1], strict=True)),
        }
    )


async def rate(count: int, concurrency: int, call: Callable[[int], Awaitable[Any]]) -> float:
    """Calls per second of ``call(0..count-1)`` with ``concurrency`` in flight."""
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            await call(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def watch_latency(
    *,
    registry: Registry,
    open_watch: Callable[[], Any],
    watchers: int,
    writes: int,
) -> tuple[float, float, int]:
    """p50/p99 (ms) from write to receipt, over every watcher and write; and the samples."""
    target = "watched"
    sent: dict[str, float] = {}
    latencies: list[float] = []
    ready = asyncio.Event()
    started_streams = 0
    done = asyncio.Event()
    expected = watchers * writes

    async def watcher() -> None:
        nonlocal started_streams
        stream = open_watch()
        started_streams += 1
        if started_streams == watchers:
            ready.set()
        async for event in stream:
            res = getattr(event, "object", None)
            if res is None or res.metadata.name != target:
                continue
            mark = res.metadata.labels.get("seq")
            if mark in sent:
                latencies.append(time.perf_counter() - sent[mark])
                if len(latencies) >= expected:
                    done.set()

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    await ready.wait()
    await asyncio.sleep(1.0)  # let every stream reach the server and start
    current = await registry.get(Kind.CELL, (*SCOPE, target))
    for seq in range(writes):
        current.metadata.labels = {"seq": str(seq)}
        sent[str(seq)] = time.perf_counter()
        current = await registry.update(current)
        await asyncio.sleep(0.05)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 30)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ms = [value * 1000 for value in latencies]
    return percentile(ms, 0.5), percentile(ms, 0.99), len(ms)


async def main(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    root = Path(tempfile.mkdtemp(prefix="kukeon-api-bench-", dir="/dev/shm"))
    rows: list[tuple[str, str, str]] = []
    try:
        certs = root / "pki"
        await asyncio.to_thread(
            subprocess.run,
            ["bash", str(REPO_ROOT / "hack/make-ca.sh"), "--out", str(certs), "--quiet"],
            check=True,
        )
        token = uuid.uuid4().hex * 2
        tokens = root / "tokens.yaml"
        tokens.write_text(
            yaml.safe_dump({"tokens": [{"token": token, "user": "bench", "role": "admin"}]})
        )
        async with (
            EmbeddedEtcd(data_dir=root / "etcd") as etcd,
            await Registry.connect(etcd.config()) as registry,
        ):
            settings = ApiSettings(
                socket_path=root / "api.sock",
                socket_group=None,
                tcp_address=f"127.0.0.1:{free_tcp_port()}",
                tls_cert_file=certs / "server.crt",
                tls_key_file=certs / "server.key",
                tokens_file=tokens,
            )
            runner = await serve_api(settings, registry)
            uncached_socket = root / "uncached.sock"
            uncached_runner = await serve_api(
                ApiSettings(socket_path=uncached_socket, socket_group=None, watch_cache=False),
                registry,
            )
            try:
                unix = ApiClient(server=f"unix://{settings.socket_path}")
                tls = ApiClient(
                    server=f"https://127.0.0.1:{runner.tcp_port}",
                    token=token,
                    ca_file=certs / "ca.crt",
                )
                uncached = ApiClient(server=f"unix://{uncached_socket}")
                async with unix, tls, uncached:
                    rows = await measure(
                        args,
                        registry,
                        {"unix socket": unix, "TCP+TLS": tls},
                        {
                            "unix socket": f"unix://{settings.socket_path}",
                            "unix socket, watch cache off": f"unix://{uncached_socket}",
                        },
                        uncached,
                    )
            finally:
                await runner.stop()
                await uncached_runner.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


async def many_clients(
    server: str, *, clients: int, seconds: float, cells: int
) -> tuple[float, float, float]:
    """``clients`` clients alternating GET and LIST for ``seconds``: req/s, p50 and p99 (ms)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    groups = max(1, cells // 10)

    async def one(seed: int) -> None:
        chooser = random.Random(seed)
        async with ApiClient(server=server) as client:
            turn = seed
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if turn % 2:
                    selector = f"group={chooser.randrange(groups)}"
                    await client.list(Kind.CELL, SCOPE, label_selector=selector)
                else:
                    await client.get(Kind.CELL, (*SCOPE, f"c{chooser.randrange(cells):05d}"))
                latencies.append((time.perf_counter() - started) * 1000)
                turn += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(seed) for seed in range(clients)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)


async def lean_clients(
    server: str, *, clients: int, seconds: float, cells: int, profile: Path | None
) -> tuple[float, float, float, float, str]:
    """``bench/loadgen.py`` in its own process, the same mix as ``many_clients``.

    Returns req/s, p50 and p99 (ms), the server's CPU µs per answer, and what was not
    answered 200 (answers by status, connections closed by the server, requests never
    answered; empty if nothing). With
    ``profile``, py-spy records this process (the API server) meanwhile, as collapsed stacks.
    """
    socket_path = server.removeprefix("unix://")
    loadgen = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO_ROOT / "bench/loadgen.py"),
        f"--socket={socket_path}",
        f"--path={CELLS_PATH}",
        f"--cells={cells}",
        f"--clients={clients}",
        f"--seconds={seconds:g}",
        stdout=asyncio.subprocess.PIPE,
    )
    spy = None
    if profile is not None:
        await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
        name = Path(socket_path).stem
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        spy = await asyncio.create_subprocess_exec(
            *(py_spy, "record", "--pid", str(os.getpid()), "--duration", f"{seconds:.0f}"),
            *("--format", "raw", "--rate", "200", "--output", str(profile / f"{name}.txt")),
            stdout=asyncio.subprocess.DEVNULL,
        )
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    output, _ = await loadgen.communicate()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    if spy is not None:
        await spy.wait()
    if loadgen.returncode != 0:
        raise RuntimeError(f"bench/loadgen.py exited {loadgen.returncode}")
    result = json.loads(output)
    failures = {
        f"HTTP {code}": count for code, count in result["statuses"].items() if code != "200"
    }
    failures |= {"closed by the server": result["closed"], "unanswered": result["unanswered"]}
    failed = ", ".join(f"{what}: {count}" for what, count in failures.items() if count)
    # The server's CPU per answer (its process: event loop, gRPC threads), which the load
    # of other processes on the machine changes far less than the rate.
    cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    cpu_per_request_us = cpu / max(1, result["requests"]) * 1e6
    return result["per_second"], result["p50_ms"], result["p99_ms"], cpu_per_request_us, failed


async def clients_phase(
    args: argparse.Namespace, servers: dict[str, str]
) -> list[tuple[str, str, str]]:
    """The concurrent clients' rows: the lean load generator's, then ``ApiClient``'s."""
    rows: list[tuple[str, str, str]] = []
    what = f"{args.clients} clients, GET and LIST alternating, {args.clients_seconds:g} s"
    if args.load in ("both", "lean"):
        for label, server in servers.items():
            print(f"{what}, lean client: {label} ...", file=sys.stderr)
            per_second, p50, p99, cpu, failed = await lean_clients(
                server,
                clients=args.clients,
                seconds=args.clients_seconds,
                cells=args.cells,
                profile=args.py_spy,
            )
            result = (
                f"{per_second:,.0f} req/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
                f"server CPU {cpu:.0f} µs per answer"
            )
            if failed:
                result += f"; not 200: {failed}"
            rows.append((f"{what}, lean client in its own process", label, result))
    if args.load in ("both", "apiclient"):
        for label, server in servers.items():
            print(f"{what}, ApiClient: {label} ...", file=sys.stderr)
            per_second, p50, p99 = await many_clients(
                server, clients=args.clients, seconds=args.clients_seconds, cells=args.cells
            )
            result = f"{per_second:,.0f} req/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            rows.append((f"{what}, ApiClient in the server's process", label, result))
    return rows


def apply_gc_policy(policy: str) -> None:
    """The garbage collector as kukeond sets it after its start, or as it was before."""
    if policy == "kukeond":
        from kukeon.daemon import gcpolicy

        gcpolicy.apply_after_startup()
    elif policy == "freeze":
        gc.collect()
        gc.freeze()


def memory_of_this_process() -> str:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    mib = {name: int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}
    return f"RSS {mib['VmRSS']:.1f} MiB, peak {mib['VmHWM']:.1f} MiB"


async def measure(
    args: argparse.Namespace,
    registry: Registry,
    clients: dict[str, ApiClient],
    servers: dict[str, str],
    uncached: ApiClient,
) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for kind, key in ((Kind.REALM, SCOPE[:1]), (Kind.SPACE, SCOPE[:2]), (Kind.STACK, SCOPE)):
        await registry.create(parent(kind, key))
    print(f"creating {args.cells} cells ...", file=sys.stderr)
    await rate(args.cells, 64, lambda i: registry.create(cell(f"c{i:05d}", group=str(i // 10))))
    await registry.create(cell("watched"))
    apply_gc_policy(args.gc)

    c = args.concurrency
    n = args.requests

    async def raw_get(i: int) -> Any:
        return await registry.get(Kind.CELL, (*SCOPE, f"c{i % args.cells:05d}"))

    rows.append(
        (f"GET one cell ({c} in flight)", "registry", f"{await rate(n, c, raw_get):,.0f}/s")
    )
    for label, client in {**clients, "unix socket, watch cache off": uncached}.items():

        async def api_get(i: int, client: ApiClient = client) -> Any:
            return await client.get(Kind.CELL, (*SCOPE, f"c{i % args.cells:05d}"))

        rows.append((f"GET one cell ({c} in flight)", label, f"{await rate(n, c, api_get):,.0f}/s"))

    for label, server in servers.items():
        socket_path = server.removeprefix("unix://")
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=socket_path), base_url="http://kukeond"
        ) as session:

            async def raw_http_get(i: int, session: aiohttp.ClientSession = session) -> Any:
                async with session.get(f"{CELLS_PATH}/c{i % args.cells:05d}") as response:
                    return await response.read()

            value = await rate(n, c, raw_http_get)
        rows.append((f"GET one cell ({c} in flight), bare HTTP client", label, f"{value:,.0f}/s"))

    rows += await clients_phase(args, servers)
    rows.append(("this process's memory after the clients", "server", memory_of_this_process()))
    if args.clients_only:
        return rows

    lists = args.lists
    raw_list = await rate(lists, 1, lambda _: registry.list(Kind.CELL, SCOPE))
    rows.append((f"LIST {args.cells + 1} cells", "registry", f"{raw_list:,.1f}/s"))
    for label, client in clients.items():
        value = await rate(lists, 1, lambda _, client=client: client.list(Kind.CELL, SCOPE))
        rows.append((f"LIST {args.cells + 1} cells", label, f"{value:,.1f}/s"))

    creates = args.creates
    value = await rate(creates, c, lambda i: registry.create(cell(f"raw{i:05d}")))
    rows.append((f"create a cell ({c} in flight)", "registry", f"{value:,.0f}/s"))
    for index, (label, client) in enumerate(clients.items()):
        value = await rate(
            creates,
            c,
            lambda i, client=client, index=index: client.create(cell(f"api{index}-{i:05d}")),
        )
        rows.append((f"create a cell ({c} in flight)", label, f"{value:,.0f}/s"))

    w = args.watchers
    start = await registry.current_revision()
    p50, p99, samples = await watch_latency(
        registry=registry,
        open_watch=lambda: registry.watch(Kind.CELL, SCOPE, resource_version=start),
        watchers=w,
        writes=args.watch_writes,
    )
    result = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({samples} deliveries)"
    rows.append((f"watch fan-out, {w} watchers", "registry", result))
    for label, client in clients.items():
        start = await registry.current_revision()
        p50, p99, samples = await watch_latency(
            registry=registry,
            open_watch=lambda client=client, start=start: client.watch(
                Kind.CELL, SCOPE, resource_version=start
            ),
            watchers=w,
            writes=args.watch_writes,
        )
        result = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({samples} deliveries)"
        rows.append((f"watch fan-out, {w} watchers", label, result))
    return rows


def operator_tree() -> str:
    """Where kukeon was imported from: this checkout's commit, or the other tree's path."""
    tree = Path(kukeon.__file__).resolve().parents[1]
    if tree != REPO_ROOT / "operator":
        return str(tree)
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "diff", "--quiet", "HEAD", "--", "operator"], check=False
    ).returncode
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def report(args: argparse.Namespace, rows: list[tuple[str, str, str]]) -> str:
    lines = [
        "## API server (bench/api_bench.py)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({platform.machine()}, Python {platform.python_version()}): one private etcd "
        "(data on /dev/shm), API server and clients in one process (the lean client rows: "
        "bench/loadgen.py in its own process). Options: "
        f"`--cells {args.cells} --requests {args.requests} --concurrency {args.concurrency} "
        f"--lists {args.lists} --creates {args.creates} --watchers {args.watchers} "
        f"--watch-writes {args.watch_writes} --clients {args.clients} "
        f"--clients-seconds {args.clients_seconds:g} --load {args.load}"
        f"{' --clients-only' if args.clients_only else ''}"
        f" --gc {args.gc}"
        f"{f' --gc-threshold {args.gc_threshold}' if args.gc_threshold else ''}`. "
        f"Operator tree: {operator_tree()}. "
        f"Load average before the run: {args.load_before}; after: {args.load_after}.",
        "",
        "| measurement | path | result |",
        "|---|---|---|",
        *[f"| {what} | {path} | {value} |" for what, path, value in rows],
        "",
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000, help="GETs per path")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--lists", type=int, default=20, help="LISTs per path")
    parser.add_argument("--creates", type=int, default=500, help="creates per path")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--watch-writes", type=int, default=20)
    parser.add_argument("--clients", type=int, default=200, help="concurrent GET/LIST clients")
    parser.add_argument("--clients-seconds", type=float, default=30.0)
    parser.add_argument(
        "--load",
        choices=("both", "lean", "apiclient"),
        default="both",
        help="the concurrent clients: bench/loadgen.py in its own process, ApiClient, or both",
    )
    parser.add_argument(
        "--clients-only",
        action="store_true",
        help="stop after the GET and concurrent-clients rows (before/after runs)",
    )
    parser.add_argument(
        "--py-spy", type=Path, help="record the server with py-spy during the lean clients here"
    )
    parser.add_argument(
        "--gc",
        choices=("kukeond", "freeze", "cpython"),
        default="kukeond",
        help="the server's garbage collector once the cells are stored: kukeond's policy "
        "(kukeon.daemon.gcpolicy), startup objects frozen only (kukeond before it), "
        "or CPython's defaults",
    )
    parser.add_argument(
        "--gc-threshold",
        help="G0,G1,G2: gc.set_threshold in this process (the server) before anything runs",
    )
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    arguments.load_before = " ".join(f"{value:.2f}" for value in os.getloadavg())
    if arguments.gc_threshold:
        gc.set_threshold(*(int(value) for value in arguments.gc_threshold.split(",")))
    measured = asyncio.run(main(arguments))
    arguments.load_after = " ".join(f"{value:.2f}" for value in os.getloadavg())
    text = report(arguments, measured)
    print(text)
    if arguments.output is not None:
        arguments.output.write_text(text)
