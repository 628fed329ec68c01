"""kukectl's CellSet commands: ``scale cellset/NAME --replicas N`` and ``rollout status``.

`get cellsets`, `describe cellset`, `apply` and `delete` are the generic commands (a
CellSet is a kind like the others); the table columns and describe lines they show for a
set are `cellsetview`'s. `scale` patches
`spec.replicas`; `rollout status` waits until the set controller has seen the latest
spec and every replica is up to date and Ready (`updated == ready == replicas`), and
fails (exit 1) when the rollout stopped at its progress deadline.
"""

from __future__ import annotations

import asyncio
import sys

import click

from kukeon.api import AnyResource, CellSet, Kind
from kukeon.api.cellset import PROGRESS_DEADLINE_EXCEEDED
from kukeon.apiserver.client import ApiClient

from .params import DURATION, scope_options
from .runner import EXIT_USAGE, fail, run, stderr

POLL_EVERY = 0.5
_FORMS = "cellset/NAME, cellset NAME or NAME"


def set_named(words: tuple[str, ...]) -> str:
    """The set's name in any of `_FORMS`; exit 2 otherwise."""
    if len(words) == 2:
        words = (f"{words[0]}/{words[1]}",)
    if len(words) != 1:
        fail(f"{' '.join(words)!r}: expected {_FORMS}", EXIT_USAGE)
    kind, sep, name = words[0].rpartition("/")
    if sep and kind.lower() not in ("cellset", "cellsets", "cs"):
        fail(f"{words[0]!r}: expected {_FORMS} (this command acts on cell sets)", EXIT_USAGE)
    return name


@click.command("scale")
@click.argument("name", nargs=-1, required=True, metavar="cellset/NAME")
@click.option("--replicas", type=click.IntRange(min=0), required=True, help="How many cells.")
@scope_options
@click.pass_context
def scale(
    ctx: click.Context, name: tuple[str, ...], replicas: int, realm: str, space: str, stack: str
) -> None:
    """Set a CellSet's replicas (the set controller adds or removes cells).

    \b
    Examples:
      kukectl scale cellset/web --replicas 5
    """
    key = (realm, space, stack, set_named(name))

    async def work(client: ApiClient) -> None:
        await client.patch(Kind.CELL_SET, key, {"spec": {"replicas": replicas}})
        click.echo(f"cellset/{key[-1]} scaled to {replicas}")

    run(ctx, work)


def rollout_done(res: AnyResource) -> tuple[bool, str]:
    """Whether the set's rollout is complete, and what it is at."""
    assert isinstance(res, CellSet)
    status, wanted = res.status, res.spec.replicas
    seen = status.observed_generation >= res.metadata.generation
    at = (
        f"{status.updated_replicas} of {wanted} updated, {status.ready_replicas} ready, "
        f"{status.replicas} in all"
    )
    done = (
        seen
        and status.template_hash == res.template_hash()
        and status.updated_replicas == status.ready_replicas == status.replicas == wanted
    )
    return done, at


def rollout_stalled(res: AnyResource) -> str | None:
    """The message of a rollout stopped by its progress deadline (None while it may go on)."""
    assert isinstance(res, CellSet)
    if res.status.observed_generation < res.metadata.generation:
        return None
    for condition in res.status.conditions:
        if condition.type == "Progressing" and condition.reason == PROGRESS_DEADLINE_EXCEEDED:
            return condition.message or "progress deadline exceeded"
    return None


@click.group("rollout")
def rollout() -> None:
    """Follow a CellSet's rollout."""


@rollout.command("status")
@click.argument("name", nargs=-1, required=True, metavar="cellset/NAME")
@click.option("--timeout", type=DURATION, default="5m", show_default=True, help="Give up after.")
@scope_options
@click.pass_context
def rollout_status(
    ctx: click.Context, name: tuple[str, ...], timeout: float, realm: str, space: str, stack: str
) -> None:
    """Wait until every replica of a CellSet is up to date and Ready.

    Exits 1 if the rollout stopped at its progress deadline (Progressing=False).

    \b
    Examples:
      kukectl rollout status cellset/web --timeout 2m
    """
    key = (realm, space, stack, set_named(name))

    async def work(client: ApiClient) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = ""
        while True:
            found = await client.get(Kind.CELL_SET, key)
            done, at = rollout_done(found)
            if done:
                click.echo(f'cellset "{key[-1]}" successfully rolled out ({at})')
                return
            if (stalled := rollout_stalled(found)) is not None:
                fail(f'cellset "{key[-1]}" exceeded its progress deadline: {stalled}')
            if at != last and sys.stderr.isatty():
                stderr.print(f'waiting for cellset "{key[-1]}": {at}')
            last = at
            if loop.time() >= deadline:
                fail(f"timed out after {timeout:g}s waiting for cellset/{key[-1]}: {at}")
            await asyncio.sleep(POLL_EVERY)

    run(ctx, work)
