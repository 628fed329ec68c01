"""How long a whole ``kukectl`` process takes, and how much memory it needs.

Issue 18's goal: ``kukectl get cells -A`` in at most 0.25 s (median wall time) and 40 MB
of RSS. The bench runs its own etcd (data under /dev/shm) and API server on a private unix
socket, stores a realm, a space, a stack and ``--cells`` cells (documents only: no
kukeond converges them, the API accepts them all the same), then runs, one after the
other and alternating, ``--runs`` times each:

- ``python -c pass`` with the same interpreter: the floor any Python CLI pays;
- ``kukectl get cells -A``, ``kukectl get cell <name> -o yaml`` (both against the server),
  ``kukectl --help`` and ``kukectl version --client`` (no server).

With ``--before TREE`` (a checkout of an earlier commit, e.g. ``git worktree add`` or ``git
archive | tar -x``), ``get cells -A`` and ``--help`` are also run from that tree's
``operator/`` (``PYTHONPATH``), alternating with the others in the same loop: on a shared
machine whose load drifts, before and after are measured under the same load.

For each: median and p90 wall time, the median's ratio over the floor, the median CPU
time of the process (user + system: what the command costs a core, far less swayed by the
machine's load than wall time), and the largest RSS of a run (the command's own peak,
``/usr/bin/time -f %M``; without it ``os.wait4``'s ``ru_maxrss``, which counts this
process's size too). Everything it started is stopped and removed at the end, on failure
too.

Usage:  .venv/bin/python bench/cli_bench.py [--runs 15] [--cells 5] [--before TREE] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "operator"))

from kukeon.api import AnyResource, parse_resource  # noqa: E402
from kukeon.apiserver import ApiSettings, serve_api  # noqa: E402
from kukeon.store import EmbeddedEtcd, Registry  # noqa: E402

REALM, SPACE, STACK = "bench", "default", "default"
KUKECTL = Path(sys.executable).with_name("kukectl")
TIME = Path("/usr/bin/time")


def document(kind: str, name: str, spec: dict[str, object]) -> AnyResource:
    return parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


async def store_objects(registry: Registry, cells: int) -> list[str]:
    """A realm, space and stack, and ``cells`` one-container cells in them; their names."""
    await registry.create(document("Realm", REALM, {}))
    await registry.create(document("Space", SPACE, {"realmId": REALM}))
    await registry.create(document("Stack", STACK, {"realmId": REALM, "spaceId": SPACE}))
    names = [f"cell-{index:02d}" for index in range(cells)]
    for name in names:
        spec: dict[str, object] = {
            "realmId": REALM,
            "spaceId": SPACE,
            "stackId": STACK,
            "containers": [{"id": "main", "image": "busybox:latest", "root": True}],
        }
        await registry.create(document("Cell", name, spec))
    return names


@dataclass
class Series:
    label: str
    command: list[str]
    pythonpath: Path | None = None  # run the kukectl of this source root instead
    seconds: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system seconds of the process
    last_output: str = ""

    def run_once(self, env: dict[str, str], scratch: Path) -> None:
        """One whole process: wall time from spawn to reaped, and its own peak RSS.

        Linux carries a process's peak RSS across exec, so a child forked from this
        (large) process would report this process's size: the command is started by
        ``/usr/bin/time`` (a small C program) when there is one, which reports the
        command's own peak; otherwise by ``os.wait4`` here (an upper bound)."""
        out, peak = scratch / "out", scratch / "peak"
        timer = ["/usr/bin/time", "-q", "-f", "%M", "-o", str(peak)] if TIME.exists() else []
        if self.pythonpath is not None:
            env = env | {"PYTHONPATH": str(self.pythonpath)}
        with out.open("wb") as sink:
            started = time.perf_counter()
            process = subprocess.Popen(
                [*timer, *self.command], env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
            )
            _, status, usage = os.wait4(process.pid, 0)
            self.seconds.append(time.perf_counter() - started)
        self.cpu.append(usage.ru_utime + usage.ru_stime)  # with its reaped child's, as Linux does
        process.returncode = os.waitstatus_to_exitcode(status)
        self.rss_kb.append(int(peak.read_text().split()[-1]) if timer else usage.ru_maxrss)
        self.last_output = out.read_text(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.command)} exited {process.returncode}: {self.last_output}"
            )

    def row(self, floor: float) -> str:
        ordered = sorted(self.seconds)
        median = statistics.median(ordered)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        return (
            f"| {self.label} | {median * 1000:.0f} ms | {p90 * 1000:.0f} ms "
            f"| {median / floor:.1f}x | {statistics.median(self.cpu) * 1000:.0f} ms "
            f"| {max(self.rss_kb) / 1024:.1f} MB |"
        )


def measure(
    socket: Path, root: Path, names: list[str], runs: int, before: Path | None
) -> list[Series]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KUKEON_", "_KUKECTL"))
    }
    env |= {
        "KUKEON_SERVER": f"unix://{socket}",
        "KUKEON_CONFIG": str(root / "no-config.yaml"),
        "HOME": str(root),
        "NO_COLOR": "1",
    }
    scope = ["--realm", REALM, "--space", SPACE, "--stack", STACK]
    kukectl = str(KUKECTL)
    series = [
        Series("`python -c pass` (the floor)", [sys.executable, "-c", "pass"]),
        Series("`kukectl get cells -A`", [kukectl, "get", "cells", "-A"]),
        Series(
            f"`kukectl get cell {names[0]} -o yaml`",
            [kukectl, "get", "cell", names[0], *scope, "-o", "yaml"],
        ),
        Series("`kukectl --help`", [kukectl, "--help"]),
        Series("`kukectl version --client`", [kukectl, "version", "--client"]),
    ]
    if before is not None:
        old = before / "operator"
        series += [
            Series("before: `kukectl get cells -A`", [kukectl, "get", "cells", "-A"], old),
            Series("before: `kukectl --help`", [kukectl, "--help"], old),
        ]
    for each in series:  # warm the page cache and the bytecode caches, unmeasured
        each.run_once(env, root)
        each.seconds.clear()
        each.rss_kb.clear()
        each.cpu.clear()
    listed = series[1].last_output
    if any(name not in listed for name in names):
        raise RuntimeError(f"kukectl get cells -A did not list every cell:\n{listed}")
    for _ in range(runs):
        for each in series:
            each.run_once(env, root)
    return series


async def main(args: argparse.Namespace) -> str:
    root = Path(tempfile.mkdtemp(prefix="kukeon-cli-bench-", dir="/dev/shm"))
    try:
        async with (
            EmbeddedEtcd(data_dir=root / "etcd") as etcd,
            await Registry.connect(etcd.config()) as registry,
        ):
            names = await store_objects(registry, args.cells)
            settings = ApiSettings(socket_path=root / "api.sock", socket_group=None)
            runner = await serve_api(settings, registry)
            try:
                series = await asyncio.to_thread(
                    measure, root / "api.sock", root, names, args.runs, args.before
                )
            finally:
                await runner.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return report(args, series)


def report(args: argparse.Namespace, series: list[Series]) -> str:
    floor = statistics.median(series[0].seconds)
    lines = [
        "## kukectl, whole process (bench/cli_bench.py)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at the end): a private etcd and API server "
        f"(unix socket) holding {args.cells} cells; each command run {args.runs} times, "
        "alternating, after one unmeasured warm-up run. Goal (issue 18): `get cells -A` "
        "≤ 250 ms median, ≤ 40 MB."
        + (f" `before:` rows run the tree at {args.before}." if args.before else ""),
        "",
        "| command | median | p90 | x floor | median CPU | max RSS |",
        "|---|---|---|---|---|---|",
        *[each.row(floor) for each in series],
        "",
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (≥ 10)")
    parser.add_argument("--cells", type=int, default=5)
    parser.add_argument(
        "--before", type=Path, help="a source tree of an earlier commit, measured alongside"
    )
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    text = asyncio.run(main(arguments))
    print(text)
    if arguments.output is not None:
        arguments.output.write_text(text)
