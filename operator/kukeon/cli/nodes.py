"""kukectl's node commands: cordon, uncordon, drain.

`get nodes` and `describe node` are the generic `get`/`describe` (Node is a kind like the
others). Cordoning is a spec change (`spec.unschedulable`), so the scheduler leader sees
it on its next pass wherever it runs. Draining cordons the node and then clears the
placement of every cell the scheduler put there (annotation `kukeon.io/scheduled-by`), so
the scheduler places them elsewhere and the node's orphan collector removes the old
containers; cells pinned by the user with `nodeName` are listed and left in place.
"""

from __future__ import annotations

import click

from kukeon.api import SCHEDULED_BY_ANNOTATION, SCHEDULED_BY_SCHEDULER, Cell, Kind, key_of
from kukeon.apiserver.client import ApiClient

from .runner import run


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


async def drain_node(client: ApiClient, node: str) -> tuple[list[str], list[str]]:
    """Cordon ``node`` and release its scheduler-placed cells: (moved, pinned) cell keys."""
    await set_unschedulable(client, node, True)
    moved: list[str] = []
    pinned: list[str] = []
    for cell in (await client.list(Kind.CELL)).items:
        if not isinstance(cell, Cell) or cell.spec.node_name != node:
            continue
        name = "/".join(key_of(cell))
        if cell.metadata.annotations.get(SCHEDULED_BY_ANNOTATION) != SCHEDULED_BY_SCHEDULER:
            pinned.append(name)
            continue
        await client.patch(
            Kind.CELL,
            key_of(cell),
            {
                "spec": {"nodeName": None},
                "metadata": {"annotations": {SCHEDULED_BY_ANNOTATION: None}},
            },
        )
        moved.append(name)
    return moved, pinned


@click.command("drain")
@click.argument("node")
@click.pass_context
def drain(ctx: click.Context, node: str) -> None:
    """Cordon NODE and hand its scheduler-placed cells back to the scheduler.

    \b
    Examples:
      kukectl drain n2
    """

    async def work(client: ApiClient) -> None:
        moved, pinned = await drain_node(client, node)
        click.echo(f"node/{node} cordoned")
        for name in moved:
            click.echo(f"cell/{name} released for rescheduling")
        for name in pinned:
            click.echo(f"cell/{name} is pinned to node/{node} (spec.nodeName): left in place")

    run(ctx, work)
