"""``kukectl run --profile NAME [--param K=V]... [--name N]``: a cell made from a CellProfile.

The API server makes the cell (``POST .../stacks/ST/profileruns``): it looks the profile
up in the target stack, then space, then realm, fills in the parameters and writes the
cell as any other, with the same checks. Here only the command line is read: each
``--param`` is ``K=V`` (a value may hold `=`), and the options that build a cell by hand
(``--image``, ``--env``, ``--publish``, ``--restart``, a command) do not mix with a profile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import click

from kukeon.api import Cell, parse_resource
from kukeon.client.apiclient import ApiClient
from kukeon.client.paths import profile_runs_path

from .runner import EXIT_USAGE, fail
from .runspec import CONTAINER_OPTION_NAMES

CellCreator = Callable[[ApiClient], Awaitable[Cell]]
"""Creates the cell of a run and returns it (as the server answered)."""

_BY_HAND = {
    "image": "--image",
    "labels": "--label",
    "stop_timeout": "--stop-timeout",
    **CONTAINER_OPTION_NAMES,
    "command": "a command",
}
"""The parameters of `run` that build a cell by hand, and how the command line says them."""


def parameter_values(pairs: Sequence[str]) -> dict[str, str]:
    """``("K=V", ...)`` as a mapping; a usage error names a pair without `=` or repeated."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            fail(f"--param {pair!r}: expected NAME=VALUE", EXIT_USAGE)
        if name in values:
            fail(f"--param {name} is given twice", EXIT_USAGE)
        values[name] = value
    return values


def refuse_by_hand_options(ctx: click.Context) -> None:
    """A usage error when an option that builds a cell by hand comes with --profile."""
    for option, shown in _BY_HAND.items():
        source = ctx.get_parameter_source(option)
        if source is not None and source != click.core.ParameterSource.DEFAULT:
            fail(f"{shown} cannot be given with --profile: the profile says it", EXIT_USAGE)


def profile_creator(
    profile: str,
    params: Sequence[str],
    name: str | None,
    scope: tuple[str, str, str],
    *,
    dry_run: bool = False,
) -> CellCreator:
    """What creates the cell of a ``run --profile``: one POST of the run to the API."""
    body: dict[str, Any] = {"profile": profile, "parameters": parameter_values(params)}
    if name:
        body["name"] = name

    async def create(client: ApiClient) -> Cell:
        document = await client.request(
            "POST",
            profile_runs_path(*scope),
            params={"dryRun": "All"} if dry_run else None,
            body=body,
        )
        cell = parse_resource(document)
        assert isinstance(cell, Cell)
        return cell

    return create
