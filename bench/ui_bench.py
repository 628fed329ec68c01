"""The web console's tree with 1,000 cells, in Debian's chromium: how long until it shows
them all, and how soon it shows a change (issue 22: under 1 s, and live).

The cells are written straight into the registry (an etcd of the bench's own, an API
server with the console's routes, no kukeond and no containers: only documents), spread
over 4 spaces of 5 stacks (50 cells a stack). The page is opened through ``kukectl ui``'s
forward, as a local user opens it; chromium runs headless in a network namespace of its
own (tests/fixtures/browser.py). Measured:

- render: from the navigation's start (``performance.timeOrigin``) to the moment the tree
  holds 1,000 cell rows, each with its state, ``--rounds`` page loads (median and worst);
- live: ``--updates`` status writes through the registry, one at a time; from just before
  the write to the row showing the new state in the page (the page polls with
  requestAnimationFrame, so ~16 ms of it is the poll).

    flock /tmp/kukeon-bench.lock nice -n 10 .venv/bin/python bench/ui_bench.py [--cells 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "operator"))
sys.path.insert(0, str(REPO_ROOT))

from kukeon.api import CellState, Kind, parse_resource  # noqa: E402
from kukeon.apiserver import ApiSettings, build_runner  # noqa: E402
from kukeon.store import EmbeddedEtcd, Registry  # noqa: E402
from kukeon.ui.forward import ConsoleForward  # noqa: E402
from kukeon.ui.routes import UiRoutes  # noqa: E402
from tests.fixtures.browser import chromium, require_chromium  # noqa: E402

REALM = "bench"
SPACES, STACKS = 4, 5
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None

# Polled each animation frame inside the page (a function, not a string: the console's
# Content-Security-Policy forbids eval, which Playwright's wait_for_function uses).
ALL_ROWS = """(count) => new Promise((done) => {
  const check = () => document.querySelectorAll('.row.cell .badge').length === count
    ? done(performance.now()) : requestAnimationFrame(check);
  check();
})"""
TIMINGS = """() => performance.getEntriesByType('resource').map((e) =>
  `${e.name.split('/').slice(-1)[0].slice(0, 40)} ${e.startTime.toFixed(0)}`
  + `-${e.responseEnd.toFixed(0)}`).join('\\n')"""
ROW_SHOWS = """([selector, state]) => new Promise((done) => {
  const check = () => (document.querySelector(selector) || {}).textContent === state
    ? done(true) : requestAnimationFrame(check);
  check();
})"""


def document(kind: str, name: str, **spec: str) -> dict[str, object]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


async def write_tree(registry: Registry, cells: int) -> list[tuple[str, str, str, str]]:
    """The realm, its spaces and stacks, and ``cells`` cells spread over the stacks."""
    await registry.create(parse_resource(document("Realm", REALM)))
    stacks = []
    for s in range(SPACES):
        space = f"space-{s}"
        await registry.create(parse_resource(document("Space", space, realmId=REALM)))
        for t in range(STACKS):
            stack = f"stack-{t}"
            await registry.create(
                parse_resource(document("Stack", stack, realmId=REALM, spaceId=space))
            )
            stacks.append((space, stack))
    keys = [(REALM, *stacks[n % len(stacks)], f"cell-{n:04d}") for n in range(cells)]

    async def create(key: tuple[str, str, str, str]) -> None:
        _, space, stack, name = key
        cell = document("Cell", name, realmId=REALM, spaceId=space, stackId=stack)
        cell["spec"]["containers"] = [{"id": "main", "image": "busybox"}]  # type: ignore[index]
        await registry.create(parse_resource(cell))

    for start in range(0, len(keys), 50):
        await asyncio.gather(*(create(key) for key in keys[start : start + 50]))
    return keys


async def set_state(registry: Registry, key: tuple[str, ...], state: CellState) -> None:
    cell = await registry.get(Kind.CELL, key)
    cell.status.state = state
    await registry.update_status(cell)


async def measure(args: argparse.Namespace, registry: Registry, socket: Path) -> dict[str, object]:
    keys = await write_tree(registry, args.cells)
    forward = ConsoleForward(socket_path=socket)
    await forward.start()
    renders: list[float] = []
    lags: list[float] = []
    try:
        async with chromium([forward.port]) as browser:

            async def load() -> float:
                page = (
                    browser.context.pages[0]
                    if browser.context.pages
                    else await browser.context.new_page()
                )
                await page.goto("about:blank")  # a new document each round, not a hash change
                await page.goto(forward.url)
                shown = float(await page.evaluate(ALL_ROWS, args.cells))
                if args.verbose:
                    print(await page.evaluate(TIMINGS))
                return shown

            for _ in range(args.rounds):
                renders.append(await browser.run(load()))

            async def shown(key: tuple[str, ...], state: str) -> None:
                page = browser.context.pages[0]
                selector = f'.row.cell[data-key="{"/".join(key)}"] .badge'
                await page.evaluate(ROW_SHOWS, [selector, state])

            for n in range(args.updates):
                key = keys[(n * 37) % len(keys)]
                state = CellState.READY if n % 2 == 0 else CellState.DEGRADED
                started = time.perf_counter()
                await set_state(registry, key, state)
                await browser.run(shown(key, state.value))
                lags.append((time.perf_counter() - started) * 1000)
    finally:
        await forward.close()
    return {"renders": renders, "lags": lags}


async def main(args: argparse.Namespace) -> None:
    require_chromium()
    root = Path(tempfile.mkdtemp(prefix="kukeon-ui-bench-", dir=SCRATCH))
    try:
        async with EmbeddedEtcd(data_dir=root / "etcd") as etcd:
            async with await Registry.connect(etcd.config()) as registry:
                settings = ApiSettings(socket_path=root / "kukeond.sock", socket_group=None)
                runner = await build_runner(settings=settings, registry=registry)
                UiRoutes().add_routes(runner.app)
                await runner.start()
                try:
                    result = await measure(args, registry, settings.socket_path)  # type: ignore[arg-type]
                finally:
                    await runner.stop()
            await etcd.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    renders, lags = result["renders"], result["lags"]
    assert isinstance(renders, list)
    assert isinstance(lags, list)
    load = os.getloadavg()[0]
    print(f"{args.cells} cells, chromium headless, {platform.machine()}, load {load:.1f}")
    each = ", ".join(f"{r:.0f}" for r in renders)
    print(
        f"render to {args.cells} rows: median {statistics.median(renders):.0f} ms, "
        f"worst {max(renders):.0f} ms over {len(renders)} loads ({each})"
    )
    print(
        f"status write to row shown: median {statistics.median(lags):.0f} ms, "
        f"worst {max(lags):.0f} ms over {len(lags)} writes"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--verbose", action="store_true", help="print each load's requests")
    asyncio.run(main(parser.parse_args()))
