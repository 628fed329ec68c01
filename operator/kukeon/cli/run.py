"""``kukectl run``: a cell with one container, as ``docker run`` makes one, or a cell made
from a CellProfile (``--profile``, see ``profilerun``); ``--rm`` follows its output,
deletes it once the container has exited and exits with the container's code."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO

import click

from kukeon.api import Cell, Kind, parse_resource
from kukeon.api.imagefields import refuse_bad_images
from kukeon.api.portrules import refuse_unpublishable_ports
from kukeon.cancelling import cancel_and_wait
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.paths import LOG_STREAM_HEADER, object_path

from .createobjects import report_created
from .params import DURATION, IntegerRange, cell_key, scope_options
from .profilerun import CellCreator, profile_creator, refuse_by_hand_options
from .runner import EXIT_SERVER, EXIT_USAGE, fail, run
from .runspec import build_container, container_options

LOG_END_SECONDS = 60.0
"""How long ``run --rm`` waits, once the cell is deleted, for its output's end."""


async def _wait_state(
    client: ApiClient, key: tuple[str, ...], wanted: set[str], *, within: float, show: bool
) -> str:
    """Poll the cell until its state is one of `wanted`; prints transitions when `show`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = ""
    while True:
        cell = await client.get(Kind.CELL, key)
        state = str(cell.status.state)
        reason = f" ({cell.status.reason}: {cell.status.message})" if cell.status.reason else ""
        if show and state + reason != last:  # a new reason too (Pulling an image)
            click.echo(f"cell/{key[-1]} {state}{reason}", err=True)
        last = state + reason
        if state in wanted:
            return state
        if state == "Failed" and "Failed" not in wanted:
            return state
        if loop.time() >= deadline:
            fail(f"timed out after {within:g}s waiting for cell/{key[-1]} (it is {state})")
        await asyncio.sleep(0.25)


@click.command("run")
@click.argument("name", required=False)
@click.option("--image", help="Image of the cell's single container (required without --profile).")
@click.option(
    "--profile",
    help="Make the cell from this CellProfile (looked up in the target stack, then space, "
    "then realm).",
)
@click.option(
    "--param", "params", multiple=True, help="With --profile: a parameter, NAME=VALUE; repeatable."
)
@click.option(
    "--name",
    "cell_name",
    help="The cell's name, as NAME (with --profile, default: the profile's prefix and 6 hex "
    "digits).",
)
@click.option(
    "--stdin",
    "-i",
    is_flag=True,
    help="As docker run -i: the container gets a terminal (attachable) and kukectl attaches "
    "to it once it runs; piped stdin is sent as is.",
)
@click.option("--tty", "-t", is_flag=True, help="Same as -i (an attachable container has a TTY).")
@click.option(
    "--rm",
    "remove",
    is_flag=True,
    help="As docker run --rm: follow the output, exit with the container's code and delete "
    "the cell once it has exited (or failed to start).",
)
@click.option("--wait", "wait_ready", is_flag=True, help="Show progress until the cell is Ready.")
@click.option(
    "--timeout",
    type=DURATION,
    default="120s",
    show_default=True,
    help="With --wait: how long to wait for Ready (e.g. 90s, 5m).",
)
@click.option(
    "--label",
    "-l",
    "labels",
    multiple=True,
    help="A label of the cell, KEY=VALUE (repeatable, or comma-separated as kubectl's).",
)
@click.option(
    "--stop-timeout",
    type=IntegerRange(0, 3600),
    help="Seconds the container has to exit after SIGTERM before SIGKILL (docker's; the cell's "
    "terminationGracePeriodSeconds; kukeond's 10 s when unset).",
)
@container_options
@click.option(
    "--dry-run",
    type=click.Choice(["none", "server", "client"]),
    default="none",
    show_default=True,
    help="client: print the cell without sending it; server: the server checks it and "
    "writes nothing (kubectl's; with -o yaml|json, the cell as a manifest).",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["yaml", "json", "name"]),
    help="Print the created cell (yaml, json: the manifest) instead of 'cell/NAME created'.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@scope_options
@click.pass_context
def run_command(
    ctx: click.Context,
    /,
    name: str | None,
    image: str | None,
    profile: str | None,
    params: tuple[str, ...],
    cell_name: str | None,
    stdin: bool,
    tty: bool,
    remove: bool,
    wait_ready: bool,
    timeout: float,
    labels: tuple[str, ...],
    stop_timeout: int | None,
    dry_run: str,
    output: str | None,
    command: tuple[str, ...],
    realm: str,
    space: str,
    stack: str,
    **container: Any,
) -> None:
    """Create a cell with one container running IMAGE [-- ARGS (of its entrypoint)...].

    \b
    Examples:
      kukectl run web --image nginx:1.27 -p 8080:80 -l app=web
      kukectl run demo --image busybox --rm -- sh -c 'echo hi; exit 4'
      kukectl run app --image busybox -v /srv/data:/data:ro -w /data -u 1000 -- ls
      kukectl run web --image nginx --dry-run=client -o yaml > web.yaml
      kukectl run --profile worker --param QUEUE=jobs --space team
    """
    interactive = stdin or tty
    command = _with_name_as_command(name, cell_name, profile, command)
    dry = dry_run != "none"
    _refuse_mixes(dry=dry, following=remove or interactive, wait=wait_ready, output=output)
    _refuse_restarts_with_rm(remove, container.get("restart", "never"))
    scope = (realm, space, stack)
    if profile is not None:
        refuse_by_hand_options(ctx)
        if dry_run == "client":
            fail("--dry-run=client: the server makes a profile's cell; use server", EXIT_USAGE)
        creator = profile_creator(profile, params, cell_name or name, scope, dry_run=dry)
    elif params:
        fail("--param goes with --profile", EXIT_USAGE)
    elif not (cell_name or name) or not image:
        fail("NAME (or --name) and --image are required (or --profile)", EXIT_USAGE)
    else:
        cell_name = cell_name or name or ""
        cell = _cell_by_hand(
            cell_name,
            build_container(cell_name, image, command, container),
            scope,
            labels=_labels(labels),
            attachable=interactive,
            stop_timeout=stop_timeout,
        )
        if dry_run == "client":
            report_created(cell, output, " (dry run)")
            return
        creator = _creator(cell, dry_run=dry)

    async def work(client: ApiClient) -> int:
        created = await creator(client)
        key = cell_key(realm, space, stack, created.metadata.name)
        _say_created(created, output, dry=dry, following=remove or interactive)
        if interactive:
            return await _run_attached(client, key, within=timeout, remove=remove)
        if remove:
            return await _run_to_exit(client, key, within=timeout)
        if wait_ready:
            state = await _wait_state(client, key, {"Ready", "Exited"}, within=timeout, show=True)
            if state == "Failed":
                return EXIT_SERVER
        return 0

    raise click.exceptions.Exit(run(ctx, work))


def _with_name_as_command(
    name: str | None, cell_name: str | None, profile: str | None, command: tuple[str, ...]
) -> tuple[str, ...]:
    """docker's habit, --name and then the command: NAME is the command's first word."""
    if name and cell_name and name != cell_name:
        if profile is not None:
            fail(f"the cell is named twice: {name} and --name {cell_name}", EXIT_USAGE)
        return (name, *command)
    return command


def _refuse_restarts_with_rm(remove: bool, restart: str) -> None:
    if remove and restart != "never":
        # docker's "Conflicting options: --restart and --rm": the exit --rm waits for, to
        # delete the cell, is one a restart follows: it followed the restarts forever.
        fail(f"--rm and --restart {restart} conflict: --rm ends at the exit", EXIT_USAGE)


def _refuse_mixes(*, dry: bool, following: bool, wait: bool, output: str | None) -> None:
    if dry and (following or wait):
        fail("--dry-run creates nothing to follow: no --rm, -i/-t or --wait", EXIT_USAGE)
    if output is not None and following:
        fail("-o/--output prints the cell: not with --rm or -i/-t", EXIT_USAGE)


def _say_created(cell: Cell, output: str | None, *, dry: bool, following: bool) -> None:
    if following:  # the line only, on stderr: the container's output follows on stdout
        click.echo(f"cell/{cell.metadata.name} created", err=True)
    else:
        report_created(cell, output, " (server dry run)" if dry else "")


def _labels(given: tuple[str, ...]) -> dict[str, str]:
    """``--label`` values (``K=V``, or ``K=V,K2=V2``) as labels; exit 2 for a malformed one."""
    labels: dict[str, str] = {}
    for pair in (part for text in given for part in text.split(",") if part):
        key, equals, value = pair.partition("=")
        if not equals or not key:
            fail(f"--label {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        labels[key] = value
    return labels


def _cell_by_hand(
    name: str,
    container: dict[str, Any],
    scope: tuple[str, str, str],
    *,
    labels: dict[str, str],
    attachable: bool,
    stop_timeout: int | None = None,
) -> Cell:
    """The one-container cell the options describe, validated here (exit 2 naming the
    problem) before anything is sent."""
    realm, space, stack = scope
    if attachable:
        container = {**container, "attachable": True}
    spec: dict[str, Any] = {
        "realmId": realm,
        "spaceId": space,
        "stackId": stack,
        "containers": [container],
    }
    if stop_timeout is not None:
        spec["terminationGracePeriodSeconds"] = stop_timeout
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }
    try:
        cell = parse_resource(document)
        refuse_bad_images(cell)  # the server's 422s, before anything is sent
        refuse_unpublishable_ports(cell)  # `-p 80`, as `-p 99999:80`: usage (exit 2)
    except ValueError as error:
        fail(str(error), EXIT_USAGE)
    assert isinstance(cell, Cell)
    return cell


def _creator(cell: Cell, *, dry_run: bool) -> CellCreator:
    async def create(client: ApiClient) -> Cell:
        created = await client.create(cell, dry_run=dry_run)
        assert isinstance(created, Cell)
        return created

    return create


async def _run_attached(
    client: ApiClient, key: tuple[str, ...], *, within: float, remove: bool
) -> int:
    """``run -it``: attach to the cell's terminal once it runs (its log when it has already
    ended); with ``remove``, delete the cell when the session ends."""
    from .sessions import AttachEnd, attach_session

    end = AttachEnd(code=0, detached=False)
    try:
        wanted = {"Ready", "Exited", "Error"}
        state = await _wait_state(client, key, wanted, within=within, show=False)
        if state == "Failed":
            cell = await client.get(Kind.CELL, key)
            why = f"{cell.status.reason}: {cell.status.message}"
            click.echo(f"error: cell/{key[-1]} failed: {why}", err=True)
            return 127 if cell.status.reason == "CommandNotFound" else EXIT_SERVER
        if state == "Ready":
            # From the log's start (logs=true): nothing it printed before the attach is lost.
            path = object_path(Kind.CELL, key, "attach")
            try:
                end = await attach_session(
                    client, path, [("logs", "true")], cell=key[-1], until_exit=True
                )
                return end.code
            except ApiRequestError as refused:
                if refused.code != 409:  # 409: it ended between the two requests
                    raise
        # Ended before the attach: what it printed, and how it ended.
        async for chunk in client.stream("GET", object_path(Kind.CELL, key, "log")):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return await _exit_code(client, key)
    finally:
        if remove and end.detached:
            # Detached, not ended: it keeps running, as the detach said.
            click.echo(f"--rm: cell/{key[-1]} is left running after the detach", err=True)
        elif remove:
            with contextlib.suppress(Exception):
                await asyncio.shield(client.delete(Kind.CELL, key))


async def _run_to_exit(client: ApiClient, key: tuple[str, ...], *, within: float) -> int:
    """Follow the cell's output until its container has exited, delete the cell, and return
    the container's exit code (1 when it never ran, with the reason on stderr)."""
    path = object_path(Kind.CELL, key, "log")
    try:
        state = await _wait_state(
            client, key, {"Ready", "Exited", "Error"}, within=within, show=False
        )
        if state == "Failed":
            cell = await client.get(Kind.CELL, key)
            why = f"{cell.status.reason}: {cell.status.message}"
            click.echo(f"error: cell/{key[-1]} failed: {why}", err=True)
            return 127 if cell.status.reason == "CommandNotFound" else EXIT_SERVER

        streams = _follow_output(client, path)
        try:
            code = await _exit_code(client, key)
            # The followed log ends once the cell is gone, after its last line: delete it,
            # then read the streams to their end.
            with contextlib.suppress(Exception):
                await asyncio.shield(client.delete(Kind.CELL, key))
            try:
                async with asyncio.timeout(LOG_END_SECONDS):
                    await asyncio.wait(streams)  # their failures are the finally's to take
            except TimeoutError:
                click.echo(
                    f"warning: cell/{key[-1]}'s output did not end within {LOG_END_SECONDS:g}s;"
                    " it may be incomplete",
                    err=True,
                )
        finally:
            for streaming in streams:
                await cancel_and_wait(streaming)
        return code
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(client.delete(Kind.CELL, key))


def _follow_output(client: ApiClient, path: str) -> list[asyncio.Future[None]]:
    """The cell's log followed as ``docker run`` shows it: its stdout on stdout, its
    stderr on stderr. Both streams are opened at once, before the cell can be gone. A
    server without the log route's ``stream`` answers both with the whole log and no
    header: it is written once, as stdout."""

    async def follow(stream: str, out: BinaryIO) -> None:
        ours = True

        def check(headers: Mapping[str, str]) -> None:
            nonlocal ours
            ours = headers.get(LOG_STREAM_HEADER) == stream or stream == "Stdout"

        params = {"follow": "true", "stream": stream}
        async for chunk in client.stream("GET", path, params=params, on_headers=check):
            if not ours:
                return
            out.write(chunk)
            out.flush()

    return [
        asyncio.ensure_future(follow("Stdout", sys.stdout.buffer)),
        asyncio.ensure_future(follow("Stderr", sys.stderr.buffer)),
    ]


async def _exit_code(client: ApiClient, key: tuple[str, ...]) -> int:
    """Wait until the cell's container has exited with no restart to come; its exit code."""
    while True:
        cell = await client.get(Kind.CELL, key)
        containers = getattr(cell.status, "containers", None) or []
        state = str(cell.status.state)
        if containers and containers[0].exit_code is not None and state in {"Exited", "Error"}:
            return int(containers[0].exit_code)
        await asyncio.sleep(0.25)
