"""CPU of one HTTP probe check in the prober's process: kukeond's check vs a bare GET.

`bench/probe_bench.py` finds kukeond's HTTP checks the largest part of what 200 probed
cells cost. This isolates the client side: a busybox ``httpd`` on loopback, and in this
process ``--checks`` checks, ``--concurrency`` at a time, made by

- **kukeond**: ``kukeon.controllers.probers.Prober.check`` (``controllers.httpcheck``: a
  new connection per check, status line, headers and the body's first KiB read, as kukeond
  probes; it used aiohttp's ``ClientSession`` until 2026-12-03, at about twice the CPU);
- **bare**: ``asyncio.open_connection``, one ``GET`` written, the status line read, the
  connection closed, under the same ``asyncio.timeout``: the least a check can do over a
  new connection.

Each is timed by this process's CPU time (``time.process_time``: user + system, so the
kernel's connect/send/close on the client side is in both), alternating, ``--rounds``
each. Failed checks are counted and reported (the server is one forking busybox with a
short listen backlog: at 20 at a time some connections time out, and a failed check costs
less, so keep the concurrency low).

    .venv/bin/python bench/probe_check_bench.py [--checks 2000] [--concurrency 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from harness import free_port

from kukeon.api.probes import Probe
from kukeon.controllers.probers import Prober, ProbeTarget

Check = Callable[[], Coroutine[Any, Any, bool]]


def bare_check(port: int, timeout: float) -> Check:
    request = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kukeon-probe/1.0\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    async def check() -> bool:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(request)
                    status = (await reader.readline()).split()
                finally:
                    writer.close()
                    await writer.wait_closed()
        except (OSError, TimeoutError):
            return False
        return len(status) > 1 and status[1].isdigit() and 200 <= int(status[1]) < 400

    return check


def kukeond_check(prober: Prober, port: int) -> Check:
    probe = Probe.model_validate({"httpGet": {"port": port}, "periodSeconds": 1})
    target = ProbeTarget(
        namespace="unused", container_id="unused", address="127.0.0.1", fifo_root=Path("/tmp")
    )

    async def check() -> bool:
        return (await prober.check(probe, target)).success

    return check


async def measure(check: Check, *, checks: int, concurrency: int) -> tuple[float, int]:
    """(CPU milliseconds per check, checks that failed)."""
    passed = 0
    started = time.process_time()
    for _ in range(checks // concurrency):
        results = await asyncio.gather(*(asyncio.create_task(check()) for _ in range(concurrency)))
        passed += sum(results)
    done = (checks // concurrency) * concurrency
    return 1000 * (time.process_time() - started) / done, done - passed


async def bench(port: int, *, checks: int, concurrency: int, rounds: int) -> list[str]:
    prober = Prober(None)  # type: ignore[arg-type]  # HTTP checks never reach containerd
    candidates = {"kukeond": kukeond_check(prober, port), "bare": bare_check(port, 1.0)}
    rows = []
    try:
        for number in range(rounds):
            for name, check in candidates.items():
                cpu, failed = await measure(check, checks=checks, concurrency=concurrency)
                rows.append(f"| {number + 1} | {name} | {cpu:.3f} ms | {failed} |")
    finally:
        await prober.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SystemExit("busybox is needed (Debian package busybox-static)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kukeon-probe-check-") as www:
        (Path(www) / "index.html").write_text("ok\n")
        server = subprocess.Popen([busybox, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", www])
        try:
            time.sleep(0.5)
            rows = asyncio.run(
                bench(port, checks=args.checks, concurrency=args.concurrency, rounds=args.rounds)
            )
        finally:
            server.terminate()
            server.wait(10)
    print(".venv/bin/python bench/probe_check_bench.py " + " ".join(sys.argv[1:]))
    print()
    print("| round | check | CPU per check | failed |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
