"""``kukectl logs``: a container's output (stdout and stderr) through the node route kukeond
serves beside the resource API, as ``kubectl logs`` prints it."""

from __future__ import annotations

import asyncio
import sys

import click

from kukeon.api import Kind
from kukeon.client.apiclient import ApiClient
from kukeon.client.paths import object_path

from .params import DURATION, cell_argument, cell_key, cell_named, scope_options
from .runner import EXIT_USAGE, fail, run


@click.command()
@cell_argument
@click.option("--container", "-c", help="Container (default: the cell's root container).")
@click.option("--all-containers", is_flag=True, help="Every container of the cell.")
@click.option(
    "--prefix",
    is_flag=True,
    help="Start each line with [cell/container] (on by default with --all-containers).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new lines.")
@click.option(
    "--tail",
    type=click.IntRange(min=-1),
    default=None,
    help="Only the last N lines (N >= 0; -1, as kubectl's default: every line).",
)
@click.option("--timestamps", is_flag=True, help="Start each line with the time it was written.")
@click.option("--since", type=DURATION, help="Only lines newer than this (e.g. 30s, 5m, 2h).")
@click.option("--since-time", help="Only lines written at or after this RFC 3339 time.")
@click.option(
    "--previous", "-p", is_flag=True, help="The output of the container's previous instance."
)
@scope_options
@click.pass_context
def logs(
    ctx: click.Context,
    name: tuple[str, ...],
    container: str | None,
    all_containers: bool,
    prefix: bool,
    follow: bool,
    tail: int | None,
    timestamps: bool,
    since: float | None,
    since_time: str | None,
    previous: bool,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Print a container's output (stdout and stderr), as `kubectl logs` does.

    \b
    Examples:
      kukectl logs web                      # the root container's output
      kukectl logs web -c sidecar -f        # follow another container
      kukectl logs cell/web -f              # as kubectl names it
      kukectl logs web --since 10m --timestamps
      kukectl logs web --previous           # before the last restart
      kukectl logs web --all-containers -f  # every container, lines prefixed
    """
    if container and all_containers:
        fail("--container and --all-containers: give at most one", EXIT_USAGE)
    if since is not None and since_time is not None:
        fail("--since and --since-time: give at most one", EXIT_USAGE)
    cell = cell_named(name)
    key = cell_key(realm, space, stack, cell)
    path = object_path(Kind.CELL, key, "log")
    params: dict[str, str] = {}
    if follow:
        params["follow"] = "true"
    if tail is not None and tail >= 0:
        params["tailLines"] = str(tail)
    if timestamps:
        params["timestamps"] = "true"
    if since is not None:
        params["sinceSeconds"] = str(max(1, int(since)))
    if since_time is not None:
        params["sinceTime"] = since_time
    if previous:
        params["previous"] = "true"

    async def one(client: ApiClient, container_id: str | None, label: str | None) -> None:
        query = {**params, "container": container_id} if container_id else params
        at_line_start = True
        async for chunk in client.stream("GET", path, params=query):
            if label is not None:
                chunk, at_line_start = _prefixed(chunk, label.encode(), at_line_start)
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()

    async def work(client: ApiClient) -> None:
        if not all_containers:
            label = f"[{cell}/{container}] " if prefix and container else None
            if prefix and not container:
                label = f"[{cell}] "
            await one(client, container, label)
            return
        found = await client.get(Kind.CELL, key)
        ids = [c.id for c in getattr(found.spec, "containers", None) or []]
        await asyncio.gather(*(one(client, cid, f"[{cell}/{cid}] ") for cid in ids))

    run(ctx, work)


def _prefixed(chunk: bytes, label: bytes, at_line_start: bool) -> tuple[bytes, bool]:
    """``chunk`` with ``label`` before each line's start; whether it ends at a line start."""
    out: list[bytes] = []
    for piece in chunk.splitlines(keepends=True):
        if at_line_start:
            out.append(label)
        out.append(piece)
        at_line_start = piece.endswith(b"\n")
    return b"".join(out), at_line_start
