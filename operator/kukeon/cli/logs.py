"""``kukectl logs``: a container's output (stdout and stderr) through the node route kukeond
serves beside the resource API, as ``kubectl logs`` prints it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import click

from kukeon.api import Kind
from kukeon.client.apiclient import ApiClient
from kukeon.client.paths import object_path

from .params import (
    CONTAINER,
    DURATION,
    SET_CELL_FORMS,
    IntegerRange,
    cell_key,
    cell_or_set_named,
    scope_options,
)
from .runner import EXIT_USAGE, fail, run, write_stdout
from .setcells import cell_of_set

if TYPE_CHECKING:
    from kukeon.api import Cell

MAX_FOLLOWED = 5
"""Cells `logs -l -f` follows at most (kubectl's --max-log-requests default)."""
HELD_LINE_BYTES = 64 << 10
"""A line longer than this, of streams printed at once, is printed in pieces: holding it
whole until its newline would hold a container's output without bound."""


@click.command()
@click.argument("name", nargs=-1, metavar="[cell] NAME|cell/NAME|cellset/NAME")
@click.option("-l", "--selector", help="The cells of the scope matching it, instead of NAME.")
@click.option(
    "--container", "-c", type=CONTAINER, help="Container (default: the cell's root container)."
)
@click.option("--all-containers", is_flag=True, help="Every container of the cell.")
@click.option(
    "--prefix",
    is_flag=True,
    help="Start each line with [cell/NAME/CONTAINER] (off by default, as kubectl's).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new lines.")
@click.option(
    "--tail",
    type=IntegerRange(min=-1),
    default=None,
    help="Only the last N lines (N >= 0; -1, as kubectl's default: every line).",
)
@click.option("--timestamps", is_flag=True, help="Start each line with the time it was written.")
@click.option("--since", type=DURATION, help="Only lines newer than this (e.g. 30s, 5m, 2h).")
@click.option("--since-time", help="Only lines written at or after this RFC 3339 time.")
@click.option(
    "--previous", "-p", is_flag=True, help="The output of the container's previous instance."
)
@click.option(
    "--limit-bytes",
    type=IntegerRange(min=0),
    default=0,
    help="Stop after this many bytes, even mid-line (0, as kubectl's default: no limit).",
)
@scope_options
@click.pass_context
def logs(
    ctx: click.Context,
    name: tuple[str, ...],
    selector: str | None,
    container: str | None,
    all_containers: bool,
    prefix: bool,
    follow: bool,
    tail: int | None,
    timestamps: bool,
    since: float | None,
    since_time: str | None,
    previous: bool,
    limit_bytes: int,
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
      kukectl logs web --limit-bytes 4096   # its first 4 KiB
      kukectl logs web --all-containers     # every container, one after the other
      kukectl logs web --all-containers -f --prefix  # all at once, lines prefixed
      kukectl logs -l kukeon.io/cellset=web --prefix  # each cell of a set
      kukectl logs cellset/web              # one of them (Ready, the oldest)
    """
    if container and all_containers:
        fail("--container and --all-containers: give at most one", EXIT_USAGE)
    if since is not None and since_time is not None:
        fail("--since and --since-time: give at most one", EXIT_USAGE)
    if bool(name) == bool(selector):
        fail(f"give the cell ({SET_CELL_FORMS}) or -l SELECTOR, one of them", EXIT_USAGE)
    kind, named = cell_or_set_named(name) if name else (Kind.CELL, "")
    params = _query(
        follow=follow,
        tail=tail,
        timestamps=timestamps,
        since=since,
        since_time=since_time,
        previous=previous,
        limit_bytes=limit_bytes,
    )

    async def one(client: ApiClient, cell: str, *, beside_others: bool = False) -> None:
        printer = _CellLogs(client, cell_key(realm, space, stack, cell), params)
        await printer.print(
            container, all_containers=all_containers, prefix=prefix, beside_others=beside_others
        )

    async def work(client: ApiClient) -> None:
        if not selector:
            scope = (realm, space, stack)
            cell = named if kind == Kind.CELL else await cell_of_set(client, scope, named)
            await one(client, cell)
            return
        scope = (realm, space, stack)
        listed = await client.list(Kind.CELL, scope, label_selector=selector)
        cells = [res.metadata.name for res in listed.items]
        if not cells:
            click.echo(f"No cells match {selector!r} in {'/'.join(scope)}.", err=True)
        elif not follow:
            for cell in cells:  # one after the other, as kubectl prints them
                await one(client, cell)
        elif len(cells) > MAX_FOLLOWED:
            fail(
                f"{len(cells)} cells match {selector!r}: -f follows at most {MAX_FOLLOWED} "
                "(narrow the selector)"
            )
        else:
            await asyncio.gather(*(one(client, cell, beside_others=True) for cell in cells))

    run(ctx, work)


def _query(
    *,
    follow: bool,
    tail: int | None,
    timestamps: bool,
    since: float | None,
    since_time: str | None,
    previous: bool,
    limit_bytes: int,
) -> dict[str, str]:
    """The log route's query parameters for these options."""
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
    if limit_bytes > 0:
        params["limitBytes"] = str(limit_bytes)
    return params


class _CellLogs:
    """One cell's log route: a container's output, or each container's, prefixed or not.

    As kubectl's: ``--all-containers`` prints each container's output after the other's
    (in the spec's order), or with ``-f`` all at once; lines are prefixed only with
    ``--prefix``. Streams printed at once (``-f`` of several containers or cells) are
    printed by whole lines, so that one's line is not cut by another's."""

    def __init__(self, client: ApiClient, key: tuple[str, ...], params: dict[str, str]) -> None:
        self.client = client
        self.key = key
        self.cell = key[-1]
        self.path = object_path(Kind.CELL, key, "log")
        self.params = params

    async def print(
        self,
        container: str | None,
        *,
        all_containers: bool,
        prefix: bool,
        beside_others: bool = False,
    ) -> None:
        """``beside_others``: other cells' streams are printed at the same time."""
        if not all_containers:
            if prefix and not container:  # the route's default: the cell's root container
                found = await self.client.get(Kind.CELL, self.key)
                container = cast("Cell", found).spec.root_container().id
            await self._stream(container, self._label(container, prefix), whole_lines=beside_others)
            return
        found = await self.client.get(Kind.CELL, self.key)
        ids = [c.id for c in getattr(found.spec, "containers", None) or []]
        if "follow" not in self.params:
            for cid in ids:
                await self._stream(cid, self._label(cid, prefix), whole_lines=beside_others)
            return
        await asyncio.gather(
            *(self._stream(cid, self._label(cid, prefix), whole_lines=True) for cid in ids)
        )

    def _label(self, container_id: str | None, prefix: bool) -> str | None:
        """kubectl's --prefix: ``[pod/NAME/CONTAINER] ``, here ``[cell/NAME/CONTAINER] ``."""
        return f"[cell/{self.cell}/{container_id}] " if prefix else None

    async def _stream(
        self, container_id: str | None, label: str | None, *, whole_lines: bool
    ) -> None:
        query = {**self.params, "container": container_id} if container_id else self.params
        at_line_start = True
        held = b""

        def out(text: bytes) -> None:
            nonlocal at_line_start
            if label is not None:
                text, at_line_start = _prefixed(text, label.encode(), at_line_start)
            write_stdout(text)

        async for chunk in self.client.stream("GET", self.path, params=query):
            if not whole_lines:
                out(chunk)
                continue
            held += chunk
            end = len(held) if len(held) > HELD_LINE_BYTES else held.rfind(b"\n") + 1
            if end:
                out(held[:end])
                held = held[end:]
        if held:
            out(held)  # the last line, without its newline


def _prefixed(chunk: bytes, label: bytes, at_line_start: bool) -> tuple[bytes, bool]:
    """``chunk`` with ``label`` before each line's start; whether it ends at a line start."""
    out: list[bytes] = []
    for piece in chunk.splitlines(keepends=True):
        if at_line_start:
            out.append(label)
        out.append(piece)
        at_line_start = piece.endswith(b"\n")
    return b"".join(out), at_line_start
