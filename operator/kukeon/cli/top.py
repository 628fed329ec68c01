"""``kukectl top cells|nodes``: CPU, memory and tasks, as ``kubectl top`` prints them.

The figures come from the stats routes that each node's kukeond serves from its cgroups
(``GET .../cells/{cell}/stats``, ``GET .../nodes/{node}/stats``; any node's API forwards
them to the right node). CPU time is a cumulative counter, so kukectl reads twice,
``SAMPLE_SECONDS`` apart, and prints the rate in millicores (``250m`` is a quarter of a
core), computed with the times the node read its cgroups (or kukectl's own measure of
the time between them when a step of the node's clock put those out of it). Memory is the
working set (usage less the inactive file cache, what the kernel cannot simply drop), in
``Mi``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import click

from kukeon.api import Cell, Kind, Node, NodeState, key_of
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.paths import object_path

from .params import kubectl_kind, nonempty_name, scope_options
from .runner import EXIT_SERVER, EXIT_USAGE, fail, run, warning_line
from .tables import format_rows

SAMPLE_SECONDS = 1.0
KiB = 1024
MiB = 1024 * KiB
UNKNOWN = "<unknown>"

SortKey = Literal["cpu", "memory"]
CellKey = tuple[str, str, str, str]


# --- figures and their formatting -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer's figures for a cell, a container or a node."""

    at: float
    """When the node read them (seconds since the epoch)."""
    cpu_seconds: float | None
    memory_bytes: int | None
    pids: int | None


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def reading_of(document: Mapping[str, Any], at: float) -> Reading:
    """A cell's or container's figures (``memoryWorkingSetBytes``) from a stats answer."""
    cpu = document.get("cpuUsageSeconds")
    return Reading(
        at=at,
        cpu_seconds=float(cpu) if isinstance(cpu, int | float) else None,
        memory_bytes=_int(document.get("memoryWorkingSetBytes")),
        pids=_int(document.get("pids")),
    )


Window = tuple[float, float]
"""The least and the most time between two answers' readings, on kukectl's monotonic
clock: from the end of the first request to the start of the second, from the start of
the first to the end of the second (a node reads its figures while it answers)."""

WINDOW_SLACK = 0.1
"""Beyond the window: the timestamps' rounding, the two clocks' rates over a second."""


def cpu_millicores(first: Reading, second: Reading, window: Window | None = None) -> float | None:
    """The CPU rate between two readings in thousandths of a core, or None when there is
    none to compute (a figure missing, no time between them, the counter went back).

    The time between them is the node's timestamps' (wall clock), unless it falls out of
    ``window``: the node's clock stepped between the two (NTP, a resumed VM), which made a
    busy cell look idle, or no rate at all; the window's middle is taken then."""
    if first.cpu_seconds is None or second.cpu_seconds is None:
        return None
    elapsed = second.at - first.at
    if window is not None and not window[0] - WINDOW_SLACK <= elapsed <= window[1] + WINDOW_SLACK:
        elapsed = (window[0] + window[1]) / 2
    used = second.cpu_seconds - first.cpu_seconds
    if elapsed <= 0 or used < 0:
        return None
    return used / elapsed * 1000


def format_cpu(millicores: float | None) -> str:
    """``kubectl top``'s CPU column: whole millicores, ``250m``."""
    return UNKNOWN if millicores is None else f"{round(millicores)}m"


def format_memory(size: int | None) -> str:
    """``kubectl top``'s MEMORY column: whole mebibytes, ``12Mi`` (rounded down, as
    kubectl's). Under a mebibyte, kubectl's ``0Mi`` reads as nothing used, so a cell
    using some shows kibibytes, rounded up (``348Ki``; any byte is at least ``1Ki``)."""
    if size is None:
        return UNKNOWN
    if 0 < size < MiB:
        return f"{-(-size // KiB)}Ki"
    return f"{size // MiB}Mi"


def format_percent(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return UNKNOWN
    return f"{round(part / whole * 100)}%"


def format_count(value: int | None) -> str:
    return UNKNOWN if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Row:
    """One printed line of ``top cells``: a cell, or one of its containers."""

    key: CellKey
    container: str | None
    millicores: float | None
    memory_bytes: int | None
    pids: int | None

    def columns(self, *, with_parents: bool, containers: bool) -> list[str]:
        realm, space, stack, cell = self.key
        names = [realm, space, stack] if with_parents else []
        names += [cell, self.container or ""] if containers else [cell]
        return [
            *names,
            format_cpu(self.millicores),
            format_memory(self.memory_bytes),
            format_count(self.pids),
        ]


def cell_rows(
    first: Sequence[Mapping[str, Any]],
    second: Sequence[Mapping[str, Any]],
    *,
    containers: bool,
    window: Window | None = None,
) -> list[Row]:
    """Rows for the cells of the second set of answers, their CPU rate from the first
    (a cell that was not in the first has none)."""
    earlier: dict[tuple[CellKey, str | None], Reading] = {}
    for document in first:
        key, at = _key(document), parse_time(str(document["timestamp"]))
        earlier[(key, None)] = reading_of(document, at)
        for container in document.get("containers") or []:
            earlier[(key, str(container["name"]))] = reading_of(container, at)
    rows: list[Row] = []
    for document in second:
        key, at = _key(document), parse_time(str(document["timestamp"]))
        parts: list[tuple[str | None, Mapping[str, Any]]] = (
            [(str(c["name"]), c) for c in document.get("containers") or []]
            if containers
            else [(None, document)]
        )
        for name, figures in parts:
            now = reading_of(figures, at)
            before = earlier.get((key, name))
            rows.append(
                Row(
                    key=key,
                    container=name,
                    millicores=cpu_millicores(before, now, window) if before is not None else None,
                    memory_bytes=now.memory_bytes,
                    pids=now.pids,
                )
            )
    return rows


def _key(document: Mapping[str, Any]) -> CellKey:
    return (
        str(document["realm"]),
        str(document["space"]),
        str(document["stack"]),
        str(document["cell"]),
    )


def sort_rows(rows: list[Row], sort_by: SortKey | None) -> list[Row]:
    """By name (parents first), or biggest first by ``cpu`` or ``memory``."""
    ordered = sorted(rows, key=lambda row: (row.key, row.container or ""))
    if sort_by == "cpu":
        return sorted(ordered, key=lambda row: -(row.millicores or 0.0))
    if sort_by == "memory":
        return sorted(ordered, key=lambda row: -(row.memory_bytes or 0))
    return ordered


def render_cells(
    rows: Sequence[Row], *, with_parents: bool, containers: bool, headers: bool = True
) -> str:
    header = ["REALM", "SPACE", "STACK"] if with_parents else []
    header += ["CELL", "NAME"] if containers else ["NAME"]
    header += ["CPU(cores)", "MEMORY(bytes)", "PIDS"]
    table = [header] + [
        row.columns(with_parents=with_parents, containers=containers) for row in rows
    ]
    return "\n".join(format_rows(table)[0 if headers else 1 :])


@dataclass(frozen=True, slots=True)
class NodeRow:
    name: str
    millicores: float | None = None
    cpus: int | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    load: float | None = None

    def columns(self) -> list[str]:
        return [
            self.name,
            format_cpu(self.millicores),
            format_percent(self.millicores, self.cpus * 1000 if self.cpus is not None else None),
            format_memory(self.memory_used_bytes),
            format_percent(
                float(self.memory_used_bytes) if self.memory_used_bytes is not None else None,
                self.memory_total_bytes,
            ),
            UNKNOWN if self.load is None else f"{self.load:.2f}",
        ]


def node_row(
    name: str, first: Mapping[str, Any], second: Mapping[str, Any], window: Window | None = None
) -> NodeRow:
    """A node's line from two of its stats answers."""

    def host(document: Mapping[str, Any]) -> Reading:
        cpu = document.get("cpuUsageSeconds")
        return Reading(
            at=parse_time(str(document["timestamp"])),
            cpu_seconds=float(cpu) if isinstance(cpu, int | float) else None,
            memory_bytes=_int(document.get("memoryUsedBytes")),
            pids=None,
        )

    load = second.get("loadAverage") or []
    return NodeRow(
        name=name,
        millicores=cpu_millicores(host(first), host(second), window),
        cpus=_int(second.get("cpus")),
        memory_used_bytes=_int(second.get("memoryUsedBytes")),
        memory_total_bytes=_int(second.get("memoryTotalBytes")),
        load=float(load[0]) if load and isinstance(load[0], int | float) else None,
    )


def render_nodes(rows: Sequence[NodeRow], *, headers: bool = True) -> str:
    header = ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%", "LOAD(1m)"]
    return "\n".join(format_rows([header] + [row.columns() for row in rows])[0 if headers else 1 :])


# --- talking to the API -------------------------------------------------------------------


async def _twice(
    read: Callable[[], Awaitable[list[Mapping[str, Any]]]],
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], Window]:
    """Two answers ``SAMPLE_SECONDS`` apart, and the ``Window`` between their readings."""
    started = time.monotonic()
    first = await read()
    first_done = time.monotonic()
    await asyncio.sleep(SAMPLE_SECONDS)
    second_started = time.monotonic()
    second = await read()
    return first, second, (second_started - first_done, time.monotonic() - started)


async def _node_cells(
    client: ApiClient, nodes: Sequence[str], params: Mapping[str, str]
) -> list[Mapping[str, Any]]:
    """The cells of ``nodes`` in the scope ``params``, one request per node; a node that
    does not answer is named on stderr and left out."""

    async def one(node: str) -> list[Mapping[str, Any]]:
        try:
            answer = await client.request(
                "GET", object_path(Kind.NODE, (node,), "stats"), params=params
            )
        except ApiRequestError as error:
            if error.code in (401, 403):
                raise
            warning_line(f"node {node}: {error.message}")
            return []
        return list(answer.get("cells") or [])

    found = await asyncio.gather(*(one(node) for node in nodes))
    return [cell for cells in found for cell in cells]


async def _named_cells(
    client: ApiClient, keys: Sequence[CellKey], params: Mapping[str, str]
) -> list[Mapping[str, Any]]:
    async def one(key: CellKey) -> Mapping[str, Any]:
        answer: Mapping[str, Any] = await client.request(
            "GET", object_path(Kind.CELL, key, "stats"), params=params
        )
        return answer

    return list(await asyncio.gather(*(one(key) for key in keys)))


# --- the commands -------------------------------------------------------------------------


class _TopGroup(click.Group):
    """`top cell` and `top node` as kubectl's `top pod` and `top node`: the singular too."""

    ALIASES = {"cell": "cells", "node": "nodes"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # kubectl's most typed `top pod` was "Did you mean 'nodes'?".
        if args and kubectl_kind(args[0]) == "cells":
            ctx.fail(f"No such command {args[0]!r}: kubectl's pods are kukeon's cells (top cells)")
        return super().resolve_command(ctx, args)


NO_HEADERS = click.option("--no-headers", is_flag=True, help="The table without its header.")


@click.group("top", cls=_TopGroup)
def top() -> None:
    """CPU, memory and tasks of running cells or of nodes, read from their cgroups.

    \b
    Examples:
      kukectl top cells
      kukectl top cells -A --sort-by memory
      kukectl top nodes
    """


@top.command("cells")
@click.argument("names", nargs=-1)
@click.option("-A", "--all", "all_parents", is_flag=True, help="Cells of every parent.")
@click.option("--containers", is_flag=True, help="One line per container of each cell.")
@click.option(
    "--sort-by",
    type=click.Choice(["cpu", "memory"]),
    help="Biggest first by CPU or memory (default: by name).",
)
@click.option("-l", "--selector", help="Only the cells matching this label selector.")
@NO_HEADERS
@scope_options
@click.pass_context
def top_cells(
    ctx: click.Context,
    names: tuple[str, ...],
    all_parents: bool,
    containers: bool,
    sort_by: SortKey | None,
    selector: str | None,
    no_headers: bool,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Show the CPU (millicores), memory (working set) and tasks of running cells.

    Without NAMES, every running cell of the scope (--realm/--space/--stack, or -A), or
    those matching -l; CPU is measured over one second.
    """
    if all_parents and names:
        fail("a name needs its parents: use --realm/--space/--stack instead of -A", EXIT_USAGE)
    if selector is not None and names:
        fail("-l selects among all cells: give no names with it", EXIT_USAGE)
    names = tuple(nonempty_name(name) for name in names)
    scope = () if all_parents else (realm, space, stack)
    params = {"containers": "true"} if containers else {}

    async def work(client: ApiClient) -> None:
        if names:
            keys = [(realm, space, stack, name) for name in names]
            first, second, window = await _twice(lambda: _named_cells(client, keys, params))
        else:
            listing = await client.list(Kind.CELL, scope, label_selector=selector)
            chosen = {key_of(cell) for cell in listing.items}
            nodes = sorted(
                {
                    cell.spec.node_name
                    for cell in listing.items
                    if isinstance(cell, Cell) and cell.spec.node_name
                }
            )
            query = {**dict(zip(("realm", "space", "stack"), scope, strict=False)), **params}
            first, second, window = await _twice(lambda: _node_cells(client, nodes, query))
        rows = sort_rows(cell_rows(first, second, containers=containers, window=window), sort_by)
        if not names:  # the node answers for the whole scope: -l keeps those it chose
            rows = [row for row in rows if row.key in chosen]
        if not rows:
            where = "anywhere" if all_parents else f"in {'/'.join(scope)}"
            click.echo(f"No running cells found {where}.", err=True)
            return
        shape = {"with_parents": all_parents, "containers": containers}
        click.echo(render_cells(rows, **shape, headers=not no_headers))

    run(ctx, work)


@top.command("nodes")
@click.argument("names", nargs=-1)
@NO_HEADERS
@click.pass_context
def top_nodes(ctx: click.Context, names: tuple[str, ...], no_headers: bool) -> None:
    """Show each node's CPU (millicores and % of its CPUs), memory in use and load.

    CPU is the host's busy time over one second; memory is what is not available
    (MemTotal - MemAvailable). A node that is not Ready shows <unknown>.
    """
    names = tuple(nonempty_name(name) for name in names)

    async def work(client: ApiClient) -> None:
        if names:
            nodes = [await client.get(Kind.NODE, (name,)) for name in names]
        else:
            nodes = list((await client.list(Kind.NODE)).items)
        ready = [
            node.metadata.name
            for node in nodes
            if isinstance(node, Node) and node.status.state == NodeState.READY
        ]
        params = {"cells": "false"}

        async def read() -> list[Mapping[str, Any]]:
            async def one(name: str) -> Mapping[str, Any]:
                try:
                    answer: Mapping[str, Any] = await client.request(
                        "GET", object_path(Kind.NODE, (name,), "stats"), params=params
                    )
                except ApiRequestError as error:
                    if error.code in (401, 403):
                        raise
                    warning_line(f"node {name}: {error.message}")
                    return {}
                return answer

            return list(await asyncio.gather(*(one(name) for name in ready)))

        first, second, window = await _twice(read)
        measured = {
            name: node_row(name, before, after, window)
            for name, before, after in zip(ready, first, second, strict=True)
            if before and after
        }
        rows = [measured.get(node.metadata.name, NodeRow(node.metadata.name)) for node in nodes]
        if not rows:
            click.echo("No nodes found.", err=True)
            return
        click.echo(render_nodes(sorted(rows, key=lambda row: row.name), headers=not no_headers))
        if not measured:
            raise click.exceptions.Exit(EXIT_SERVER)

    run(ctx, work)
