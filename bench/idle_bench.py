"""What an idle single-node kukeond costs etcd and the CPU (issue 18).

Starts a private control plane (`harness.control_plane`), creates a few sleeping cells,
waits for them to be Ready and settles, then counts over a window how many Range requests
etcd served (its own /metrics: ``grpc_server_handled_total{grpc_method="Range"}``) and the
CPU seconds kukeond used (/proc/<pid>/stat). Run the trees to compare alternately, e.g.::

    flock /tmp/kukeon-bench.lock nice -n 10 .venv/bin/python bench/idle_bench.py
    PYTHONPATH=/tmp/before-x/operator flock /tmp/kukeon-bench.lock nice -n 10 \
        .venv/bin/python bench/idle_bench.py

(kukeond is started with the environment, so ``PYTHONPATH`` picks its tree.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import ssl
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    IMAGE,
    SLEEPER,
    ControlPlane,
    cell_document,
    control_plane,
    key,
    wait_ready,
)

from kukeon.api import Kind
from kukeon.store.endpoints import UNIX_TLS_NAME, split_endpoint, unix_socket_path

_RANGE = re.compile(r'^grpc_server_handled_total\{[^}]*grpc_method="Range"[^}]*\} (\S+)$', re.M)


def _tls(plane: ControlPlane) -> ssl.SSLContext:
    config = plane.config
    context = ssl.create_default_context(cafile=str(config.etcd_ca_file))
    context.load_cert_chain(str(config.etcd_cert_file), str(config.etcd_key_file))
    return context


async def range_requests(plane: ControlPlane) -> float:
    """Range requests etcd has served so far (every code)."""
    endpoint = plane.config.etcd_endpoints[0]
    socket_path = unix_socket_path(endpoint)
    if socket_path is not None:  # the embedded etcd's unixs:// socket (808bc48)
        host = UNIX_TLS_NAME
        reader, writer = await asyncio.open_unix_connection(
            socket_path, ssl=_tls(plane), server_hostname=host
        )
    else:
        _, host, port = split_endpoint(endpoint)
        reader, writer = await asyncio.open_connection(host, port, ssl=_tls(plane))
    writer.write(f"GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    body = (await reader.read()).decode()
    writer.close()
    return sum(float(value) for value in _RANGE.findall(body))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(cells: int, window: float, settle: float) -> None:
    async with control_plane("idle") as plane:
        for index in range(cells):
            container = {"id": "main", "image": IMAGE, "command": SLEEPER[0], "args": SLEEPER[1:]}
            await plane.registry.create(cell_document(f"idle-{index}", [container]))
        for index in range(cells):
            await wait_ready(plane.registry, Kind.CELL, key(f"idle-{index}"))
        await asyncio.sleep(settle)
        pid = plane.daemon.pid
        ranges, cpu, started = await range_requests(plane), cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(window)
        ranges = await range_requests(plane) - ranges
        cpu = cpu_seconds(pid) - cpu
        elapsed = time.monotonic() - started
        load = os.getloadavg()
        print(
            f"tree={os.environ.get('PYTHONPATH', 'working')} cells={cells} "
            f"window={elapsed:.1f}s range_per_s={ranges / elapsed:.2f} "
            f"cpu_pct={100 * cpu / elapsed:.2f} load={load[0]:.2f},{load[1]:.2f},{load[2]:.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(measure(args.cells, args.window, args.settle))


if __name__ == "__main__":
    main()
