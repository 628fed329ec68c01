"""Benchmark of kukeon.runtime.network: a space and one cell, by the CNI plugins and in-process.

Each round: ``ensure_space_network`` (deny policy) -> ``attach_cell`` -> ``attach_cell``
again (a running cell's pass) -> ``detach_cell`` -> ``remove_space_network``, through
``SpaceNetworks`` with a private nft table, state directory and subnet pool. Rounds of the
two paths alternate (CNI first), in batches, so both see the same machine. As root.

    .venv/bin/python bench/network_bench.py --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import tempfile
import time
from ipaddress import IPv4Network
from pathlib import Path

from kukeon.runtime.network import EgressRuleset, NetworkSettings, SpaceNetworks

STEPS = ("ensure", "attach", "again", "detach", "remove")


async def _round(nets: SpaceNetworks, root: Path, index: int, builtin: bool) -> list[float]:
    realm, space = f"b{secrets.token_hex(2)}", f"s{index}"
    path = root / "cni" / f"{space}.conflist"
    cell = f"kkb-{secrets.token_hex(3)}-{index}"
    times: list[float] = []
    start = time.perf_counter()
    await nets.ensure_space_network(
        realm=realm,
        space=space,
        cni_config_path=path,
        egress=EgressRuleset(default="deny"),
        builtin=builtin,
    )
    times.append(time.perf_counter() - start)
    for _ in range(2):
        start = time.perf_counter()
        await nets.attach_cell(cell_id=cell, cni_config_path=path, builtin=builtin)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    await nets.detach_cell(cell_id=cell, cni_config_path=path)
    times.append(time.perf_counter() - start)
    start = time.perf_counter()
    await nets.remove_space_network(realm=realm, space=space, cni_config_path=path)
    times.append(time.perf_counter() - start)
    return times


async def _batch(builtin: bool, rounds: int) -> list[list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        pool = IPv4Network(f"10.{secrets.randbelow(30) + 160}.{secrets.randbelow(16) * 16}.0/20")
        settings = NetworkSettings(
            state_dir=Path(tmp), nft_table=f"kukeon_bench_{secrets.token_hex(3)}", subnet_pool=pool
        )
        nets = SpaceNetworks(settings=settings)
        try:
            return [await _round(nets, Path(tmp), i, builtin) for i in range(rounds)]
        finally:
            await asyncio.to_thread(
                subprocess.run,
                ["nft", "delete", "table", "inet", settings.nft_table],
                capture_output=True,
                check=False,
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds per path")
    args = parser.parse_args()
    results: dict[str, list[list[float]]] = {"CNI plugins": [], "in-process": []}
    half = max(1, args.rounds // 2)
    for _ in range(2):
        results["CNI plugins"] += await _batch(False, half)
        results["in-process"] += await _batch(True, half)
    print("| path | " + " | ".join(f"{step} p50 / max" for step in STEPS) + " |")
    print("|---" * (len(STEPS) + 1) + "|")
    for name, rows in results.items():
        cells = []
        for column in range(len(STEPS)):
            values = [row[column] * 1000 for row in rows]
            cells.append(f"{statistics.median(values):.0f} / {max(values):.0f} ms")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
