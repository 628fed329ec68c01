"""kukectl's node commands: cordon, uncordon, drain.

`get nodes` and `describe node` are the generic `get`/`describe` (Node is a kind like the
others). Cordoning is a spec change (`spec.unschedulable`), so the scheduler leader sees
it on its next pass wherever it runs. Draining cordons the node, then asks it
(annotation `kukeon.io/evict-from: <node>`) to stop every cell the scheduler put there
(annotation `kukeon.io/scheduled-by`) and another node can take (``api.placement``, the
scheduler's own decision, its memory rule included: a realm reserves no more of a node than
its memory cap); the node stops its copy, *then* clears `nodeName`, so the
scheduler places the cell elsewhere only once the old copy is gone. drain waits for that
(`--timeout`), printing each cell as it leaves. Cells pinned by the user with `nodeName`,
and cells no other node can take, are listed and left running in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import click

from kukeon.api import Cell, CellSet, Kind, Node, Realm, key_of
from kukeon.api.placement import (
    EVICT_ANNOTATION,
    choose_node,
    count_cells,
    is_scheduler_placed,
    node_view,
    realm_memory_caps,
    spread_key,
)
from kukeon.api.spread import rules_by_set, spread_limit
from kukeon.client.apiclient import ApiClient

from .params import DURATION
from .runner import EXIT_SERVER, run

POLL_EVERY = 0.5
PROGRESS_EVERY = 5.0


async def set_unschedulable(client: ApiClient, node: str, unschedulable: bool) -> None:
    await client.patch(Kind.NODE, (node,), {"spec": {"unschedulable": unschedulable}})


@click.command("cordon")
@click.argument("node")
@click.pass_context
def cordon(ctx: click.Context, node: str) -> None:
    """Mark NODE unschedulable: no new cell is placed there; running cells stay.

    \b
    Examples:
      kukectl cordon n2
    """

    async def work(client: ApiClient) -> None:
        await set_unschedulable(client, node, True)
        click.echo(f"node/{node} cordoned")

    run(ctx, work)


@click.command("uncordon")
@click.argument("node")
@click.pass_context
def uncordon(ctx: click.Context, node: str) -> None:
    """Mark NODE schedulable again.

    \b
    Examples:
      kukectl uncordon n2
    """

    async def work(client: ApiClient) -> None:
        await set_unschedulable(client, node, False)
        click.echo(f"node/{node} uncordoned")

    run(ctx, work)


@dataclass
class DrainPlan:
    """What ``kukectl drain`` does with each cell of the node (decided before any write)."""

    evict: list[Cell] = field(default_factory=list)
    """Scheduler-placed cells another node can take: the node stops them, then hands them
    back to the scheduler."""
    pinned: list[str] = field(default_factory=list)
    stuck: list[tuple[str, str]] = field(default_factory=list)
    """(cell, why no other node can take it): left running where they are."""


def plan_drain(
    node: str,
    nodes: Iterable[Node],
    cells: Iterable[Cell],
    cellsets: Iterable[CellSet] = (),
    *,
    realms: Iterable[Realm],
) -> DrainPlan:
    """Decide per cell of ``node``, as the scheduler would place it among the other nodes
    (a set's cell keeping its set's spread rule, each realm reserving no more of a node's
    memory than its cap: ``realms``).

    Each cell planned to move counts on the node it would go to, so several big cells
    are not all promised the same free memory.
    """
    cells = list(cells)
    caps = realm_memory_caps(realms)
    views = {n.metadata.name: node_view(n, caps) for n in nodes if n.metadata.name != node}
    count_cells(views, cells)
    rules = rules_by_set(cellsets)
    plan = DrainPlan()
    for cell in sorted(cells, key=key_of):
        if cell.spec.node_name != node or cell.metadata.deletion_timestamp is not None:
            continue
        name = "/".join(key_of(cell))
        if not is_scheduler_placed(cell):
            plan.pinned.append(name)
            continue
        rule = rules.get(spread_key(cell) or "")
        limit = spread_limit(rule, cell, views.values()) if rule is not None else None
        placement = choose_node(cell, views.values(), limit)
        if placement.node is None:
            # The drained node is not a candidate: with no other, say so.
            why = placement.message() if views else "no other node is registered"
            plan.stuck.append((name, why))
            continue
        views[placement.node].count(cell)
        plan.evict.append(cell)
    return plan


async def drain_node(client: ApiClient, node: str) -> DrainPlan:
    """Cordon ``node`` and ask it to stop and hand back the cells another node can take."""
    await set_unschedulable(client, node, True)
    nodes = [n for n in (await client.list(Kind.NODE)).items if isinstance(n, Node)]
    cells = [c for c in (await client.list(Kind.CELL)).items if isinstance(c, Cell)]
    sets = [s for s in (await client.list(Kind.CELL_SET)).items if isinstance(s, CellSet)]
    realms = [r for r in (await client.list(Kind.REALM)).items if isinstance(r, Realm)]
    plan = plan_drain(node, nodes, cells, sets, realms=realms)
    for cell in plan.evict:
        await client.patch(
            Kind.CELL, key_of(cell), {"metadata": {"annotations": {EVICT_ANNOTATION: node}}}
        )
    return plan


async def wait_drained(
    client: ApiClient, node: str, names: Iterable[str], *, within: float
) -> list[str]:
    """Wait until each cell left ``node`` (its copy there stopped); the ones that did not."""
    waiting = set(names)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    reported = loop.time()
    while waiting:
        cells = {
            "/".join(key_of(c)): c
            for c in (await client.list(Kind.CELL)).items
            if isinstance(c, Cell)
        }
        for name in sorted(waiting):
            cell = cells.get(name)
            if cell is None or cell.spec.node_name != node:
                waiting.discard(name)
                click.echo(f"cell/{name} stopped on node/{node}, handed back to the scheduler")
        now = loop.time()
        if not waiting or now >= deadline:
            break
        if now - reported >= PROGRESS_EVERY:
            reported = now
            click.echo(f"waiting for {len(waiting)} cell(s) to stop on node/{node}...")
        await asyncio.sleep(min(POLL_EVERY, deadline - now))
    return sorted(waiting)


@click.command("drain")
@click.argument("node")
@click.option(
    "--timeout",
    type=DURATION,
    default="300s",
    show_default=True,
    help="How long to wait for the node to stop the moved cells (exit 1; they still move).",
)
@click.pass_context
def drain(ctx: click.Context, node: str, timeout: float) -> None:
    """Cordon NODE and move its scheduler-placed cells to other nodes.

    NODE stops each cell first, then hands it back to the scheduler: no cell runs on two
    nodes at once. drain returns once NODE has stopped them all. Pinned cells (nodeName set
    by the user) and cells no other node can take stay running on NODE, and are listed.

    \b
    Examples:
      kukectl drain n2
      kukectl drain n2 --timeout 10m
    """

    async def work(client: ApiClient) -> bool:
        plan = await drain_node(client, node)
        click.echo(f"node/{node} cordoned")
        for name in plan.pinned:
            click.echo(f"cell/{name} is pinned to node/{node} (spec.nodeName): left in place")
        for name, why in plan.stuck:
            click.echo(f"cell/{name}: no other node can take it ({why}): left running on {node}")
        names = ["/".join(key_of(cell)) for cell in plan.evict]
        for name in names:
            click.echo(f"cell/{name} evicting: node/{node} stops it, then the scheduler moves it")
        left = await wait_drained(client, node, names, within=timeout)
        for name in left:
            click.echo(f"cell/{name} still on node/{node} after {timeout:g}s", err=True)
        return not left

    if not run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)
