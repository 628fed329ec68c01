"""Throughput and CPU of the container logger (runtime/containerd/crilog.py's LOGGER_SCRIPT).

Short numbered lines are written through its stdout pipe as fast as it takes them; the
figure is the time until it has logged them all and exited, and its own CPU (the child's
rusage). ``--before TREE`` runs another tree's logger in the same alternating loop (an
operator tree, e.g. ``git archive <commit> operator | tar -x -C /tmp/before``): the tree
before log rotation has no ``rotation``, so it runs without one. ``--cgroup-procs FILE``
(repeatable): the ``cgroup.procs`` files a tree's logger joins where it can
(``cgroup_procs``), as a realm's copier does; a tree before that joins none.

    flock /tmp/kukeon-bench.lock nice -n 10 .venv/bin/python bench/logger_bench.py \\
        --before /tmp/before-h97/operator --pairs 3 --megabytes 40
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_OPERATOR = Path(__file__).resolve().parent.parent / "operator"

# Run in a fresh interpreter per tree, so each imports its own crilog.
CHILD = r"""
import json, os, resource, subprocess, sys, time
from pathlib import Path
tree, directory, megabytes, max_size, max_files, per_write, procs = sys.argv[1:8]
sys.path.insert(0, tree)
import inspect
from kukeon.runtime.containerd import crilog
kwargs = {}
if hasattr(crilog, "LogRotation"):
    kwargs["rotation"] = crilog.LogRotation(max_size=int(max_size), max_files=int(max_files))
if "cgroup_procs" in inspect.signature(crilog.logger_command).parameters:
    kwargs["cgroup_procs"] = [Path(p) for p in json.loads(procs)]
read_end, write_end = os.pipe()
argv = crilog.logger_command(
    Path(directory) / "c.log", streams={read_end: "stdout"}, ready_fd=None, **kwargs
)
chunk = b"".join(b"line %06d\n" % n for n in range(int(per_write)))
total = int(megabytes) * 1024 * 1024
start = time.monotonic()
logger = subprocess.Popen(argv, pass_fds=(read_end,))
os.close(read_end)
sent = 0
while sent < total:
    os.write(write_end, chunk)
    sent += len(chunk)
os.close(write_end)
logger.wait()
took = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
files = list(Path(directory).iterdir())
print(json.dumps({
    "seconds": took, "cpu": usage.ru_utime + usage.ru_stime, "text_bytes": sent,
    "files": len(files), "largest": max(f.stat().st_size for f in files),
    "rotating": "rotation" in kwargs, "joining": bool(kwargs.get("cgroup_procs")),
}))
"""


def run(
    tree: Path,
    megabytes: int,
    max_size: int,
    max_files: int,
    per_write: int,
    cgroup_procs: list[str],
) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="logger-bench-"))
    try:
        argv = [sys.executable, "-c", CHILD, str(tree), str(directory), str(megabytes)]
        out = subprocess.run(
            [*argv, str(max_size), str(max_files), str(per_write), json.dumps(cgroup_procs)],
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, float] = json.loads(out.stdout)
        return result
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another operator tree, run alternating")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--megabytes", type=int, default=40, help="of text (12-byte lines)")
    parser.add_argument("--max-size", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--max-files", type=int, default=5)
    parser.add_argument(
        "--lines-per-write",
        type=int,
        default=5000,
        help="lines the writer hands the pipe at once (1: a line per write, the most reads)",
    )
    parser.add_argument(
        "--cgroup-procs",
        action="append",
        default=[],
        help="a cgroup.procs file the logger joins (a tree whose logger can), repeatable",
    )
    args = parser.parse_args()
    trees = {"after": REPO_OPERATOR}
    if args.before is not None:
        trees = {"before": args.before, **trees}
    seconds: dict[str, list[float]] = {name: [] for name in trees}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    for pair in range(args.pairs):
        order = list(trees.items())
        if pair % 2:
            order.reverse()  # neither tree always runs first
        for name, tree in order:
            load = os.getloadavg()[0]
            result = run(
                tree,
                args.megabytes,
                args.max_size,
                args.max_files,
                args.lines_per_write,
                args.cgroup_procs,
            )
            seconds[name].append(result["seconds"])
            cpu[name].append(result["cpu"])
            rate = result["text_bytes"] / result["seconds"] / 1e6
            print(
                f"pair {pair + 1} {name:6} {result['seconds']:.2f} s, {rate:.1f} MB/s of text, "
                f"logger CPU {result['cpu']:.2f} s, {result['files']:.0f} files "
                f"(largest {result['largest']:.0f} B), rotating={result['rotating']}, "
                f"joining={result['joining']}, "
                f"load {load:.1f}"
            )
    for name in trees:
        print(
            f"{name:6} median {statistics.median(seconds[name]):.2f} s, "
            f"CPU {statistics.median(cpu[name]):.2f} s"
        )


if __name__ == "__main__":
    main()
