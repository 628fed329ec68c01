"""How long one TAB takes: the whole `kukectl` process a shell runs for a completion.

The issue's goal is at most 0.3 s per completion. A fake kukeond (Python's http.server on a
unix socket, answering lists of 50 names) serves the names, so the figures are kukectl's
own. Rows, each the wall time of whole processes run one after the other:

- `python -c pass` and `python -c "import click"`: the floor any Python CLI pays;
- the console script before completion had its own path (`kukeon.cli.main:main`): click's
  completion on the real commands, which imports pydantic, aiohttp and rich (and completes
  verbs only);
- the console script now (`kukeon.cli.entry:main`), with the description of the commands
  cached (every TAB but the first after an upgrade), completing names from the server;
- the same with no cache (the first TAB after kukectl changed);
- the same with no cache of the user's but the installation's description, which
  hack/install.sh writes beside the package (`python -m kukeon.cli.completion prebuild`).

Usage:  .venv/bin/python bench/completion_bench.py [--runs 20] [--output FILE]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kukeon.cli import completion

NAMES = [f"cell-{i:02d}" for i in range(50)]


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Handler(http.server.BaseHTTPRequestHandler):
    def address_string(self) -> str:
        return "local"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        items = [{"metadata": {"name": name}} for name in NAMES]
        body = json.dumps({"items": items, "metadata": {"resourceVersion": "1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def timed(command: list[str], env: dict[str, str], runs: int) -> tuple[list[float], str]:
    times: list[float] = []
    out = ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        out = done.stdout
    return times, out


def row(label: str, times: list[float], answer: str) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    names = sum(1 for line in answer.splitlines() if line.startswith("plain,cell-"))
    return (
        f"| {label} | {statistics.median(times) * 1000:.0f} ms | {p90 * 1000:.0f} ms "
        f"| {min(times) * 1000:.0f} ms | {names} |"
    )


def uncached(
    command: list[str], env: dict[str, str], cache: Path, runs: int
) -> tuple[list[float], str]:
    """One TAB at a time, each with the user's cache of the description removed first."""
    times: list[float] = []
    answer = ""
    for _ in range(runs):
        for cached in cache.glob("kukeon/*.json"):
            cached.unlink()
        once, answer = timed(command, env, 1)
        times += once
    return times, answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--output", type=Path, help="write the record (Markdown) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        socket_path = str(Path(tmp) / "kukeond.sock")
        server = Server(socket_path, Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = {
            **os.environ,
            "KUKEON_SERVER": f"unix://{socket_path}",
            "KUKEON_CONFIG": str(Path(tmp) / "config.yaml"),
            "XDG_CACHE_HOME": str(Path(tmp) / "cache"),
            "_KUKECTL_COMPLETE": "bash_complete",
            "COMP_WORDS": "kukectl get cells ",
            "COMP_CWORD": "3",
        }
        python = sys.executable
        before = [python, "-c", "import sys; sys.argv[0] = 'kukectl'\n"
                  "from kukeon.cli.main import main; main()"]  # fmt: skip
        now = [python, "-c", "import sys; sys.argv[0] = 'kukectl'\n"
               "from kukeon.cli.entry import main; main()"]  # fmt: skip
        rows = [
            row("`python -c pass`", *timed([python, "-c", "pass"], env, args.runs)),
            row('`python -c "import click"`', *timed([python, "-c", "import click"], env, 5)),
            row("before: `kukeon.cli.main:main` (verbs only)", *timed(before, env, args.runs)),
        ]
        timed(now, env, 1)  # writes the user's cache: the row's first TAB is not a cold one
        rows.append(row("now: `kukeon.cli.entry:main`, cache warm", *timed(now, env, args.runs)))
        shipped = completion.shipped_path()
        kept = shipped.read_bytes() if shipped.exists() else None
        try:
            shipped.unlink(missing_ok=True)
            cold = uncached(now, env, Path(tmp) / "cache", max(3, args.runs // 4))
            rows.append(row("now, no cache (first TAB after an upgrade)", *cold))
            completion.prebuild()  # what hack/install.sh does after installing
            cold = uncached(now, env, Path(tmp) / "cache", max(3, args.runs // 4))
            rows.append(row("now, no cache, the installation's description", *cold))
        finally:
            shipped.unlink(missing_ok=True)
            if kept is not None:
                shipped.write_bytes(kept)
        server.shutdown()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    record = "\n".join(
        [
            "## Shell completion (`bench/completion_bench.py`)",
            "",
            "Command (from the repository root; the script serves the names itself):",
            "",
            "```",
            f".venv/bin/python bench/completion_bench.py --runs {args.runs} "
            "--output docs/benchmarks/completion.md",
            "```",
            "",
            "Each row is the wall time of whole processes, as a shell runs them for one TAB "
            "(`_KUKECTL_COMPLETE=bash_complete COMP_WORDS='kukectl get cells ' COMP_CWORD=3`), "
            f"{args.runs} runs one after the other; the server answers {len(NAMES)} names.",
            "",
            f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
            f"{os.cpu_count()} cores, load average {load} at the end.",
            "",
            "| process | p50 | p90 | min | names offered |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(record)
    if args.output:
        args.output.write_text(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
