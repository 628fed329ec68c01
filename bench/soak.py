"""Soak of kukeond's memory: its RSS over a long create/delete churn, and the slope.

The script starts everything on private resources, as bench/cell_bench.py does (its own
containerd, etcd and kukeond with its own state dir, cgroup root, nft table, netns dir and
subnet pool), creates a realm, space and stack, a Secret, and one `keeper` cell that keeps
the hierarchy materialised, then churns for ``--duration`` seconds (``--pause`` seconds
idle between two rounds, for a day-long run that does not load the machine all day).
Each round:

- creates 10 cells at once: 3 plain sleepers, 2 serving HTTP behind an httpGet readiness
  probe, 2 behind an exec readiness probe, 2 whose command crashes under
  ``restartPolicy: always``, and 1 that reads the Secret into its environment;
- waits until each reaches what it should (Ready; for the crashing ones, one restart);
- deletes them all and waits until they are gone.

kukeond's RSS (VmRSS of /proc/<pid>/status) is sampled every ``--sample-interval`` seconds.
The report lists the samples, the first and last RSS and a least-squares slope in MiB per
hour over the second half of the run (the first half is warm-up: caches and pools filling).
Each sample also splits the RSS by where it is (``MemoryParts``: RssFile, and RssAnon as
glibc's main heap, glibc's thread arenas, and the other anonymous mappings, mostly
obmalloc's 1 MiB arenas), so the report says which part grew. kukeond trims glibc's heaps
after its full collection every 5 minutes, and a round's burst comes and goes: a sample's
place in those cycles moves the RSS by a MiB or more, so the report also gives the slope
of the floor (the lowest sample of each ``--floor-window`` seconds), which leaves out what
the next trim gives back.

With ``--tracemalloc`` kukeond runs with ``PYTHONTRACEMALLOC=25`` (much slower, and the
traces take memory of their own, so its RSS is not comparable to a run without) and is sent
SIGUSR2 when the churn starts, every ``--snapshot-interval`` seconds and at the end: each
signal writes ``tracemalloc-<n>.txt`` in its state dir (kukeon.daemon.memdebug), the
allocations that grew since the previous one; they are copied to ``--reports``.

SIGINT or SIGTERM ends the churn after the current round; the report covers what ran.

    .venv/bin/python bench/soak.py [--duration 3600] [--sample-interval 60] [--pause 0] \
        [--tracemalloc] [--snapshot-interval 0] [--reports /tmp/kukeon-soak] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "operator"))
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from harness import (  # noqa: E402
    IMAGE,
    KEEPER,
    REALM,
    SLEEPER,
    cell_document,
    control_plane,
    key,
    rss_mib,
    start_daemon,
    wait_gone,
    wait_ready,
)

from kukeon.api import Kind, parse_resource  # noqa: E402
from kukeon.daemon.config import DaemonConfig  # noqa: E402
from kukeon.store import NotFound, Registry  # noqa: E402

SECRET = "soak"
TRACE_FRAMES = 25
ROUND_WITHIN = 180.0  # seconds for a round's cells to reach their state
HTTP_PORT = 8080
RESTART: dict[str, Any] = {"restartPolicy": "always", "restartBackoffSeconds": 1}
PROBE_TIMING: dict[str, Any] = {"periodSeconds": 1, "timeoutSeconds": 2}


def container(**body: Any) -> dict[str, Any]:
    return {"id": "main", "image": IMAGE, **body}


def sleeper(**extra: Any) -> dict[str, Any]:
    return container(command=SLEEPER[0], args=SLEEPER[1:], **extra)


def round_cells(number: int) -> dict[str, dict[str, Any]]:
    """The containers of one round's 10 cells, by cell name."""
    http = container(
        command="sh",
        args=["-c", f"echo ok > /tmp/index.html; exec httpd -f -p {HTTP_PORT} -h /tmp"],
        readinessProbe={"httpGet": {"path": "/", "port": HTTP_PORT}, **PROBE_TIMING},
    )
    exec_probe = container(
        command="sh",
        args=["-c", "touch /tmp/ready; trap 'exit 0' TERM; while :; do sleep 1; done"],
        readinessProbe={"exec": {"command": ["cat", "/tmp/ready"]}, **PROBE_TIMING},
    )
    crashing = container(command="sh", args=["-c", "sleep 1; exit 3"], **RESTART)
    with_secret = sleeper(secrets=[{"name": "TOKEN", "secretRef": {"name": SECRET, "key": "t"}}])
    kinds = [
        *(("plain", sleeper()) for _ in range(3)),
        *(("http", http) for _ in range(2)),
        *(("exec", exec_probe) for _ in range(2)),
        *(("crash", crashing) for _ in range(2)),
        ("secret", with_secret),
    ]
    return {f"r{number}-{kind}{index}": body for index, (kind, body) in enumerate(kinds)}


def cell(name: str, body: dict[str, Any]) -> Any:
    return cell_document(name, [body])


def reached(current: Any, name: str) -> bool:
    """Whether a cell is where its round expects it: Ready, or restarted once if it crashes."""
    if "-crash" in name:
        return any(status.restart_count >= 1 for status in current.status.containers)
    return str(current.status.state) == "Ready"


THREAD_ARENA_ALIGN = 64 << 20  # glibc maps each thread arena's heap at a 64 MiB boundary


@dataclass(frozen=True)
class MemoryParts:
    """Where kukeond's RSS is (MiB): shared files, and its anonymous memory by allocator."""

    file: float
    main_heap: float
    """glibc's main arena (``[heap]``): the main thread's mallocs over 512 bytes."""
    thread_arenas: float
    """glibc's other arenas: what the other threads (grpc's, the executors') malloc."""
    other_anon: float
    """Every other anonymous mapping: obmalloc's arenas, big mallocs (mmap), stacks."""

    @classmethod
    def of(cls, pid: int) -> MemoryParts:
        file = main_heap = arenas = other = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                file = int(line.split()[1])
        start, name = 0, ""
        with Path(f"/proc/{pid}/smaps").open() as smaps:
            for line in smaps:
                first = line.split(maxsplit=6)
                if "-" in first[0] and not first[0].endswith(":"):  # a mapping's header
                    start = int(first[0].split("-")[0], 16)
                    name = first[5].strip() if len(first) > 5 else ""
                elif first[0] == "Rss:":
                    kib = int(first[1])
                    if name == "[heap]":
                        main_heap += kib
                    elif not name and start % THREAD_ARENA_ALIGN == 0:
                        arenas += kib
                    elif not name:
                        other += kib
        return cls(file / 1024, main_heap / 1024, arenas / 1024, other / 1024)


PARTS = (
    ("RssFile", "file"),
    ("glibc main heap", "main_heap"),
    ("glibc thread arenas", "thread_arenas"),
    ("other anonymous (obmalloc)", "other_anon"),
)


def floors(samples: list[tuple[float, float]], window: float) -> list[tuple[float, float]]:
    """The lowest sample of each ``window`` seconds (at its own time)."""
    lowest: dict[int, tuple[float, float]] = {}
    for t, value in samples:
        slot = int(t // window)
        if slot not in lowest or value < lowest[slot][1]:
            lowest[slot] = (t, value)
    return [lowest[slot] for slot in sorted(lowest)]


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour."""
    if len(samples) < 2:
        return float("nan")
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_r = sum(r for _, r in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return float("nan")
    covariance = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return covariance / spread * 3600


@dataclass
class Soak:
    registry: Registry
    daemon: subprocess.Popen[bytes]
    state_dir: Path
    reports: Path
    stop: asyncio.Event
    tracing: bool
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, float]] = field(default_factory=list)
    parts: list[tuple[float, MemoryParts]] = field(default_factory=list)
    rounds: int = 0
    cells: int = 0
    missed: list[str] = field(default_factory=list)
    snapshots: list[Path] = field(default_factory=list)
    floor_window: float = 300.0

    def floor(self, samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return floors(samples, self.floor_window)

    def sample(self) -> None:
        elapsed, rss = time.monotonic() - self.started, rss_mib(self.daemon.pid)
        parts = MemoryParts.of(self.daemon.pid)
        self.samples.append((elapsed, rss))
        self.parts.append((elapsed, parts))
        print(
            f"sample {elapsed:7.0f} s  {rss:7.1f} MiB  round {self.rounds}  file "
            f"{parts.file:.1f}, main heap {parts.main_heap:.1f}, thread arenas "
            f"{parts.thread_arenas:.1f}, other anon {parts.other_anon:.1f}",
            file=sys.stderr,
        )

    async def sampler(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.daemon.poll() is not None:
                self.stop.set()
                return
            self.sample()

    async def snapshot(self, within: float = 600) -> None:
        """Ask kukeond for a tracemalloc report and copy it out of its state dir."""
        if not self.tracing:
            return
        path = self.state_dir / f"tracemalloc-{len(self.snapshots) + 1}.txt"
        self.daemon.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + within
        size = -1
        while time.monotonic() < deadline:  # written once, then closed: a stable size
            await asyncio.sleep(2)
            if path.exists() and path.stat().st_size == size > 0:
                break
            size = path.stat().st_size if path.exists() else -1
        else:
            print(f"no {path.name} within {within:.0f}s", file=sys.stderr)
            return
        copy = self.reports / path.name
        shutil.copyfile(path, copy)
        self.snapshots.append(copy)
        print(f"tracemalloc report: {copy}", file=sys.stderr)

    async def churn_round(self) -> None:
        bodies = round_cells(self.rounds)
        await asyncio.gather(
            *(self.registry.create(cell(name, body)) for name, body in bodies.items())
        )
        pending = set(bodies)
        deadline = time.monotonic() + ROUND_WITHIN
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            for name in list(pending):
                with contextlib.suppress(NotFound):
                    if reached(await self.registry.get(Kind.CELL, key(name)), name):
                        pending.discard(name)
        self.missed += sorted(pending)
        await asyncio.gather(*(self.registry.delete(Kind.CELL, key(name)) for name in bodies))
        for name in bodies:
            await wait_gone(self.registry, Kind.CELL, key(name), within=180)
        self.rounds += 1
        self.cells += len(bodies)

    async def churn(
        self, duration: float, *, sample_interval: float, snapshots: float, pause: float = 0.0
    ) -> None:
        self.started = time.monotonic()
        self.sample()
        await self.snapshot()
        sampler = asyncio.create_task(self.sampler(sample_interval))
        next_snapshot = time.monotonic() + snapshots if snapshots else float("inf")
        try:
            while time.monotonic() - self.started < duration and not self.stop.is_set():
                await self.churn_round()
                if pause:  # a paced churn: a day's run without a day of full load
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), pause)
                if time.monotonic() >= next_snapshot:
                    await self.snapshot()
                    next_snapshot = time.monotonic() + snapshots
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        if self.daemon.poll() is None:
            await asyncio.sleep(5)  # the last deletions' status writes and collections
            self.sample()
            await self.snapshot()


async def prepare(registry: Registry) -> None:
    """The Secret and the keeper cell."""
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "realm": REALM},
        "stringData": {"t": secrets.token_hex(8)},
    }
    await registry.create(parse_resource(document))
    await registry.create(cell(KEEPER, sleeper()))
    await wait_ready(registry, Kind.CELL, key(KEEPER), within=600)


async def soak(args: argparse.Namespace) -> tuple[Soak, str]:
    args.reports.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tracing = {"PYTHONTRACEMALLOC": str(TRACE_FRAMES)} if args.tracemalloc else {}

    def launch(config: DaemonConfig, log: Path) -> subprocess.Popen[bytes]:
        process = start_daemon(config, log, environment=tracing, log_level="info")
        print(f"kukeond pid {process.pid}, state {config.state_dir}", file=sys.stderr)
        return process

    # A traced kukeond starts slowly: waits of minutes.
    async with control_plane("soak", launch=launch, keyring=True, ready_within=600) as plane:
        try:
            await prepare(plane.registry)
            await asyncio.sleep(3)
            state = Soak(
                registry=plane.registry,
                daemon=plane.daemon,
                state_dir=plane.config.state_dir,
                reports=args.reports,
                stop=stop,
                tracing=args.tracemalloc,
                floor_window=args.floor_window,
            )
            await state.churn(
                args.duration,
                sample_interval=args.sample_interval,
                snapshots=args.snapshot_interval,
                pause=args.pause,
            )
            return state, plane.version
        finally:
            with contextlib.suppress(OSError):
                shutil.copyfile(plane.log, args.reports / "kukeond.log")


def second_half(samples: list[tuple[float, float]], elapsed: float) -> list[tuple[float, float]]:
    return [sample for sample in samples if sample[0] >= elapsed / 2]


def parts_lines(state: Soak, elapsed: float) -> list[str]:
    """One row per part of the RSS: first, last, and its slopes over the second half."""
    rows = []
    for label, attribute in PARTS:
        series = [(t, float(getattr(parts, attribute))) for t, parts in state.parts]
        half = second_half(series, elapsed)
        floor_half = second_half(state.floor(series), elapsed)
        rows.append(
            f"| {label} | {series[0][1]:.1f} | {series[-1][1]:.1f} | "
            f"{slope_per_hour(half):+.2f} | {slope_per_hour(floor_half):+.2f} |"
        )
    return [
        "| part | first MiB | last MiB | slope, second half (MiB/h) | its floor's slope |",
        "|---|---|---|---|---|",
        *rows,
    ]


def report(state: Soak, *, version: str, command: str, duration: float) -> str:
    samples = state.samples
    elapsed = samples[-1][0] if samples else 0.0
    half = second_half(samples, elapsed)
    floor_half = second_half(state.floor(samples), elapsed)
    rows = [
        f"| {t / 60:.1f} | {rss:.1f} | {parts.file:.1f} | {parts.main_heap:.1f} | "
        f"{parts.thread_arenas:.1f} | {parts.other_anon:.1f} |"
        for (t, rss), (_, parts) in zip(samples, state.parts, strict=True)
    ]
    ended = "" if elapsed >= duration else f" (stopped early, of {duration / 60:.0f} planned)"
    tracing = (
        f" kukeond traced by tracemalloc ({TRACE_FRAMES} frames): slower, and its RSS "
        "includes the traces, so it is not comparable to an untraced run."
        if state.tracing
        else ""
    )
    return "\n".join(
        [
            "Command (from the repository root, as root):",
            "",
            "```",
            command,
            "```",
            "",
            f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, containerd {version}, "
            f"{platform.machine()}, {os.cpu_count()} cores: {elapsed / 60:.1f} minutes of "
            f"churn{ended}, {state.rounds} rounds, {state.cells} cells created and deleted, "
            f"{len(state.missed)} that did not reach their state within {ROUND_WITHIN:.0f} s."
            + tracing,
            "",
            f"kukeond RSS: first {samples[0][1]:.1f} MiB, last {samples[-1][1]:.1f} MiB, "
            f"min {min(r for _, r in samples):.1f}, max {max(r for _, r in samples):.1f}; "
            f"slope over the second half ({len(half)} samples): "
            f"{slope_per_hour(half):+.1f} MiB/hour (whole run: "
            f"{slope_per_hour(samples):+.1f} MiB/hour); of its floor (the lowest sample of "
            f"each {state.floor_window:.0f} s, {len(floor_half)} of them in the second half): "
            f"{slope_per_hour(floor_half):+.2f} MiB/hour.",
            "",
            *parts_lines(state, elapsed),
            "",
            "| minute | RSS MiB | file | glibc main heap | glibc thread arenas | other anon |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            *(f"tracemalloc report: `{path}`" for path in state.snapshots),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of churn")
    parser.add_argument("--sample-interval", type=float, default=60.0, help="seconds")
    parser.add_argument("--tracemalloc", action="store_true", help="trace kukeond's heap")
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=0.0,
        help="with --tracemalloc: also a report every this many seconds (0: start and end)",
    )
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds idle between two rounds (0: none)"
    )
    parser.add_argument(
        "--floor-window",
        type=float,
        default=300.0,
        help="seconds: the report's floor is the lowest sample of each such window (kukeond "
        "trims glibc's heaps after its full collection every 300 s)",
    )
    parser.add_argument("--reports", type=Path, default=Path("/tmp/kukeon-soak"))
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: containerd, runc, CNI and cgroups need it")
    state, version = asyncio.run(soak(args))
    command = ".venv/bin/python bench/soak.py " + " ".join(sys.argv[1:])
    text = report(state, version=version, command=command.strip(), duration=args.duration)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
