"""Benchmark of health probes: kukeond's CPU with N cells probed every second, against none.

Issue 20's goal: 200 cells, each with an HTTP readiness probe every second, cost kukeond
less than 15 % of one core. The script starts a private control plane as
``bench/cell_bench.py`` does (its own containerd, etcd and kukeond: own roots, sockets,
cgroup root, nft table, netns dir and subnet pool; helpers imported from there), creates a
realm, a space and a stack with one idle ``keeper`` cell (so the space's bridge stays up
between the phases), imports the busybox test image, then runs two phases in one kukeond:

- **baseline**: N cells of one busybox ``httpd -f -p 8080`` each (a page in /www), no probe;
- **probed**: the same N cells with ``readinessProbe: {httpGet: {port: 8080},
  periodSeconds: 1}`` (kukeond GETs each cell's bridge address once a second).

Each phase creates its N cells, waits until all are Ready (for the probed ones: the first
probe passed), lets kukeond settle (``--settle``), then measures over ``--window`` seconds:
kukeond's CPU (utime + stime of the whole process from /proc/<pid>/stat, every thread; in
% of one core), its main (event-loop) thread's share, its RSS, the machine's CPU use (from
/proc/stat, how loaded the shared cores were), and the rate of
``kukeon_probe_total`` on kukeond's /metrics (read just before and after the window, never
during it) to confirm that about N checks a second ran. The cells are then deleted and
gone before the next phase. ``--order`` says which phase goes first (alternate it between
runs: whatever drifts on the machine then lands on both). With ``--profile SECONDS`` each
phase then samples kukeond with py-spy (after its window, so the sampling is not in the
figures) and the report lists the functions where its busy threads were.

Everything is removed on the way out, also on failure, Ctrl-C or SIGTERM: the cells and
realm, kukeond, the containerd namespace, netns, bridge, nft table and cgroups, etcd and
containerd.

    .venv/bin/python bench/probe_bench.py [--cells 200] [--window 60] [--settle 15] \
        [--order baseline-first|probed-first] [--profile 30 --py-spy /path/to/py-spy] \
        [--output report.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
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
    ControlPlane,
    cell_document,
    control_plane,
    key,
    rss_mib,
    scrape_metrics,
    wait_ready,
)
from prometheus_client.parser import text_string_to_metric_families

from kukeon.api import Kind
from kukeon.store import Registry

CLK_TCK = os.sysconf("SC_CLK_TCK")
PORT = 8080
# busybox httpd in the foreground, serving one page; `exec` so it is the task's process.
HTTPD = [
    "sh",
    "-c",
    f"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p {PORT} -h /www",
]
PROBE = {"httpGet": {"port": PORT}, "periodSeconds": 1}
CREATE_CONCURRENCY = 32


# --- what is measured ---------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of kukeond (all threads, and its main thread) and of the machine."""

    at: float
    process: float
    system: float
    """Of ``process``, the kernel's share (stime: connect, send, close of the checks)."""
    main_thread: float
    machine_busy: float
    machine_total: float


def _stat_seconds(path: Path) -> tuple[float, float]:
    """(utime + stime, stime) in seconds."""
    # The fields after the command name (which may hold spaces): state is the first,
    # utime and stime the 12th and 13th (fields 14 and 15 of proc(5)).
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_sample(pid: int) -> CpuSample:
    values = [int(part) for part in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user/nice
    process, system = _stat_seconds(Path(f"/proc/{pid}/stat"))
    return CpuSample(
        at=time.monotonic(),
        process=process,
        system=system,
        main_thread=_stat_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))[0],
        machine_busy=(total - idle) / CLK_TCK,
        machine_total=total / CLK_TCK,
    )


@dataclass(frozen=True)
class ProbeCounts:
    at: float
    success: float
    failure: float


def probe_counts(metrics_address: str, token_file: Path | None) -> ProbeCounts:
    text = scrape_metrics(metrics_address, token_file, timeout=30)
    totals = {"success": 0.0, "failure": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kukeon_probe_total":
                result = sample.labels.get("result", "")
                totals[result] = totals.get(result, 0.0) + sample.value
    return ProbeCounts(at=time.monotonic(), success=totals["success"], failure=totals["failure"])


@dataclass
class Phase:
    name: str
    probed: bool
    cells: int
    ready_seconds: float = 0.0
    before: CpuSample | None = None
    after: CpuSample | None = None
    checks_before: ProbeCounts | None = None
    checks_after: ProbeCounts | None = None
    rss: float = 0.0
    ready_after_window: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    profile: list[str] = field(default_factory=list)

    def _samples(self) -> tuple[CpuSample, CpuSample]:
        if self.before is None or self.after is None:
            raise RuntimeError(f"{self.name}: not measured")
        return self.before, self.after

    @property
    def window(self) -> float:
        before, after = self._samples()
        return after.at - before.at

    @property
    def core_percent(self) -> float:
        before, after = self._samples()
        return 100 * (after.process - before.process) / self.window

    @property
    def system_percent(self) -> float:
        before, after = self._samples()
        return 100 * (after.system - before.system) / self.window

    @property
    def main_thread_percent(self) -> float:
        before, after = self._samples()
        return 100 * (after.main_thread - before.main_thread) / self.window

    @property
    def machine_percent(self) -> float:
        """The whole machine's busy share over the window (100 % = every core)."""
        before, after = self._samples()
        busy = after.machine_busy - before.machine_busy
        return 100 * busy / (after.machine_total - before.machine_total)

    def checks_per_second(self) -> tuple[float, float]:
        """(successes, failures) per second of ``kukeon_probe_total``."""
        first, last = self.checks_before, self.checks_after
        if first is None or last is None:
            raise RuntimeError(f"{self.name}: /metrics not read")
        seconds = last.at - first.at
        return (last.success - first.success) / seconds, (last.failure - first.failure) / seconds


# --- the control plane ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def probed_plane() -> AsyncIterator[ControlPlane]:
    """The benchmark's control plane with a Ready keeper cell."""
    async with control_plane("probe-bench") as plane:
        await plane.registry.create(cell(KEEPER, SLEEPER, probed=False))
        await wait_ready(plane.registry, Kind.CELL, key(KEEPER))
        yield plane


# --- where kukeond's time goes (--profile) --------------------------------------------------


def _frame_name(frame: str) -> str:
    """``function (path/to/file.py:123)`` → ``function (file.py)``: lines folded together."""
    function, _, place = frame.partition(" (")
    path = place.rstrip(")").rsplit(":", 1)[0]
    return f"{function} ({'/'.join(Path(path).parts[-2:])})"


def summarise_profile(raw: Path, *, limit: int = 15) -> list[str]:
    """The functions on CPU most often (self) and most often on the stack (inclusive)."""
    own: dict[str, int] = {}
    within: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for name in set(frames):
            within[name] = within.get(name, 0) + count
    if not total:
        return ["(no samples)"]

    def top(table: dict[str, int]) -> list[str]:
        ranked = sorted(table.items(), key=lambda item: item[1], reverse=True)[:limit]
        return [f"| {100 * count / total:.1f} % | `{name}` |" for name, count in ranked]

    return [
        f"{total} samples of kukeond's busy threads (py-spy, idle threads left out).",
        "",
        "| self | function |",
        "|---|---|",
        *top(own),
        "",
        "| inclusive | function |",
        "|---|---|",
        *top(within),
    ]


async def profile(pid: int, *, seconds: float, py_spy: str, output: Path) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(round(seconds)),
        "--rate",
        "100",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(output),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await process.communicate()
    if process.returncode != 0 or not await asyncio.to_thread(output.exists):
        return [f"py-spy failed: {errors.decode(errors='replace')[-400:]}"]
    return await asyncio.to_thread(summarise_profile, output)


# --- the phases -----------------------------------------------------------------------------


def cell(name: str, command: list[str], *, probed: bool) -> Any:
    container: dict[str, Any] = {"id": "main", "image": IMAGE, "command": command[0]}
    container["args"] = command[1:]
    if probed:
        container["readinessProbe"] = PROBE
    return cell_document(name, [container])


async def count_ready(registry: Registry, names: set[str]) -> tuple[int, int]:
    """(how many of ``names`` exist, how many of them are Ready)."""
    listed = await registry.list(Kind.CELL, (REALM, SPACE, STACK))
    mine = [item for item in listed.items if item.metadata.name in names]
    return len(mine), sum(1 for item in mine if item.status.state == "Ready")


async def wait_all(registry: Registry, names: set[str], *, ready: bool, within: float) -> float:
    """Seconds until every one of ``names`` is Ready (``ready``) or gone (not ``ready``)."""
    started = time.monotonic()
    last_report = 0.0
    while True:
        existing, ready_count = await count_ready(registry, names)
        waited = time.monotonic() - started
        if (ready and ready_count == len(names)) or (not ready and existing == 0):
            return waited
        if waited > within:
            what = f"{ready_count}/{len(names)} Ready" if ready else f"{existing} left"
            raise RuntimeError(f"gave up after {within:.0f}s: {what}")
        if waited - last_report >= 10:
            last_report = waited
            shown = f"{ready_count}/{len(names)} Ready" if ready else f"{existing} left"
            print(f"  {waited:.0f}s: {shown}", file=sys.stderr)
        await asyncio.sleep(1)


@dataclass(frozen=True)
class Settings:
    window: float
    settle: float
    ready_within: float
    profile_seconds: float = 0.0
    py_spy: str | None = None


async def run_phase(plane: ControlPlane, phase: Phase, settings: Settings) -> None:
    prefix = "p" if phase.probed else "b"
    names = {f"{prefix}{i:03d}" for i in range(phase.cells)}
    limit = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(name: str) -> None:
        async with limit:
            await plane.registry.create(cell(name, HTTPD, probed=phase.probed))

    print(f"{phase.name}: creating {phase.cells} cells", file=sys.stderr)
    started = time.monotonic()
    await asyncio.gather(*(create(name) for name in sorted(names)))
    phase.ready_seconds = time.monotonic() - started
    phase.ready_seconds += await wait_all(
        plane.registry, names, ready=True, within=settings.ready_within
    )
    print(f"{phase.name}: all Ready after {phase.ready_seconds:.0f}s", file=sys.stderr)
    await asyncio.sleep(settings.settle)
    address, token_file = plane.config.metrics_address, plane.config.metrics_token_path
    phase.checks_before = await asyncio.to_thread(probe_counts, address, token_file)
    phase.before = cpu_sample(plane.daemon.pid)
    await asyncio.sleep(settings.window)
    phase.after = cpu_sample(plane.daemon.pid)
    phase.load = os.getloadavg()
    phase.rss = rss_mib(plane.daemon.pid)
    phase.checks_after = await asyncio.to_thread(probe_counts, address, token_file)
    phase.ready_after_window = (await count_ready(plane.registry, names))[1]
    print(f"{phase.name}: kukeond {phase.core_percent:.1f} % of a core", file=sys.stderr)
    if settings.profile_seconds > 0 and settings.py_spy is not None:
        raw = Path(tempfile.gettempdir()) / f"probe-bench-{phase.name}-{plane.daemon.pid}.pyspy"
        print(f"{phase.name}: profiling kukeond into {raw}", file=sys.stderr)
        phase.profile = [
            f"Profile of the {phase.name} phase, {settings.profile_seconds:g} s after its window:",
            "",
            *await profile(
                plane.daemon.pid,
                seconds=settings.profile_seconds,
                py_spy=settings.py_spy,
                output=raw,
            ),
        ]
    await asyncio.gather(*(plane.registry.delete(Kind.CELL, key(name)) for name in names))
    await wait_all(plane.registry, names, ready=False, within=settings.ready_within)


async def bench(cells: int, *, order: str, settings: Settings) -> tuple[list[Phase], ControlPlane]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    phases = [
        Phase("baseline", probed=False, cells=cells),
        Phase("probed", probed=True, cells=cells),
    ]
    if order == "probed-first":
        phases.reverse()
    async with probed_plane() as plane:
        await asyncio.sleep(settings.settle)
        for phase in phases:
            await run_phase(plane, phase, settings)
    return phases, plane


# --- the report -----------------------------------------------------------------------------


def phase_row(phase: Phase) -> str:
    successes, failures = phase.checks_per_second()
    return (
        f"| {phase.name} | {phase.cells} | {phase.ready_seconds:.0f} s | {phase.window:.0f} s "
        f"| **{phase.core_percent:.1f} %** | {phase.system_percent:.1f} % "
        f"| {phase.main_thread_percent:.1f} % "
        f"| {successes:.1f} / {failures:.1f} | {phase.ready_after_window}/{phase.cells} "
        f"| {phase.rss:.1f} MiB | {phase.machine_percent:.0f} % "
        f"| {', '.join(f'{value:.1f}' for value in phase.load)} |"
    )


def report(phases: list[Phase], plane: ControlPlane, *, command: str, goal: float) -> str:
    by_name = {phase.name: phase for phase in phases}
    probed, baseline = by_name["probed"], by_name["baseline"]
    cost = probed.core_percent - baseline.core_percent
    checks = sum(probed.checks_per_second())
    per_check = cost * 10 / checks if checks else float("nan")  # % of a core → ms per second
    verdict = "met" if probed.core_percent < goal else "NOT met"
    return "\n".join(
        [
            f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, containerd {plane.version}, "
            f"{platform.machine()}, {os.cpu_count()} cores; phases in this order: "
            f"{', '.join(phase.name for phase in phases)}.",
            "",
            "```",
            command,
            "```",
            "",
            "| phase | cells | create → all Ready | window | kukeond CPU (one core) "
            "| of which kernel | main thread | probes/s ok / failed | Ready after | kukeond RSS "
            "| machine busy | load 1/5/15 min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *(phase_row(phase) for phase in phases),
            "",
            f"kukeond with {probed.cells} cells probed every second: "
            f"{probed.core_percent:.1f} % of one core, {baseline.core_percent:.1f} % without "
            f"probes: probing costs {cost:.1f} points, {checks:.0f} checks/s, so about "
            f"{per_check:.2f} ms of kukeond's CPU per check. Goal: kukeond under {goal:g} % "
            f"with the probes: {verdict}.",
            "",
            *(line for phase in phases for line in phase.profile),
        ]
    )


async def run_bench(args: argparse.Namespace) -> tuple[list[Phase], ControlPlane]:
    return await bench(
        args.cells,
        order=args.order,
        settings=Settings(
            window=args.window,
            settle=args.settle,
            ready_within=args.ready_within,
            profile_seconds=args.profile,
            py_spy=args.py_spy,
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of CPU sampling")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after all Ready")
    parser.add_argument(
        "--order", choices=("baseline-first", "probed-first"), default="baseline-first"
    )
    parser.add_argument("--ready-within", type=float, default=600.0, help="seconds")
    parser.add_argument("--goal", type=float, default=15.0, help="%% of one core")
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after each window, sample kukeond this long with py-spy (--py-spy)",
    )
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy's binary")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: containerd, runc, CNI and cgroups need it")
    if args.profile and not args.py_spy:
        raise SystemExit("--profile needs py-spy (--py-spy PATH)")
    if not 1 <= args.cells <= 250:
        raise SystemExit("--cells: 1 to 250 (one /24 subnet holds the space's cells)")
    try:
        phases, plane = asyncio.run(run_bench(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise SystemExit("interrupted; everything it started is removed") from None
    command = ".venv/bin/python bench/probe_bench.py " + " ".join(sys.argv[1:])
    text = report(phases, plane, command=command.strip(), goal=args.goal)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
