"""``kukectl run``: a cell with one container, as ``docker run`` makes one, or a cell made
from a CellProfile (``--profile``, see ``profilerun``); ``--rm`` follows its output,
deletes it once the container has exited and exits with the container's code."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from typing import Any

import click

from kukeon.api import Kind, parse_resource
from kukeon.cancelling import cancel_and_wait
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.paths import object_path

from .params import DURATION, cell_key, scope_options
from .profilerun import CellCreator, profile_creator, refuse_by_hand_options
from .runner import EXIT_SERVER, EXIT_USAGE, fail, run

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
@click.option("--env", "-e", multiple=True, help="KEY=VALUE, repeatable.")
@click.option(
    "--label",
    "-l",
    "labels",
    multiple=True,
    help="A label of the cell, KEY=VALUE (repeatable, or comma-separated as kubectl's).",
)
@click.option(
    "--publish",
    "-p",
    "ports",
    multiple=True,
    metavar="[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]",
    help="Publish a port of the cell on its node (DNAT to the cell's address); repeatable.",
)
@click.option(
    "--stop-timeout",
    type=click.IntRange(0, 3600),
    help="Seconds the container has to exit after SIGTERM before SIGKILL (docker's; the cell's "
    "terminationGracePeriodSeconds; kukeond's 10 s when unset).",
)
@click.option(
    "--stop-signal",
    metavar="SIGNAL",
    help="The signal that asks the container to stop (docker's; a name or number, e.g. SIGINT; "
    "the image's StopSignal when unset, else SIGTERM).",
)
@click.option(
    "--cpus",
    type=click.FloatRange(0.01, 1000),
    help="At most this many CPUs of time (docker's; e.g. 0.5; the container's "
    "resources.cpuLimitMillicores).",
)
@click.option(
    "--memory",
    "-m",
    metavar="BYTES",
    help="Memory limit (docker's; e.g. 64m, 1g: b, k, m, g, powers of 1024; the "
    "container's resources.memoryLimitBytes).",
)
@click.option(
    "--restart",
    type=click.Choice(["always", "on-failure", "never"]),
    default="never",
    show_default=True,
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@scope_options
@click.pass_context
def run_command(
    ctx: click.Context,
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
    env: tuple[str, ...],
    labels: tuple[str, ...],
    ports: tuple[str, ...],
    stop_timeout: int | None,
    stop_signal: str | None,
    cpus: float | None,
    memory: str | None,
    restart: str,
    command: tuple[str, ...],
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Create a cell with one container running IMAGE [-- COMMAND ARGS...].

    \b
    Examples:
      kukectl run web --image nginx:1.27 -p 8080:80 -l app=web
      kukectl run demo --image busybox --rm -- sh -c 'echo hi; exit 4'
      kukectl run job --image busybox --restart never --wait -- date
      kukectl run --profile worker --param QUEUE=jobs --space team
    """
    interactive = stdin or tty
    if name and cell_name and name != cell_name:
        if profile is not None:
            fail(f"the cell is named twice: {name} and --name {cell_name}", EXIT_USAGE)
        command = (name, *command)  # docker's habit: --name, then the command
    if profile is not None:
        refuse_by_hand_options(ctx)
        creator = profile_creator(profile, params, cell_name or name, (realm, space, stack))
    elif params:
        fail("--param goes with --profile", EXIT_USAGE)
    elif not (cell_name or name) or not image:
        fail("NAME (or --name) and --image are required (or --profile)", EXIT_USAGE)
    else:
        scope = (realm, space, stack)
        built = _container(cell_name or name or "", image, env, ports, restart, command)
        if stop_signal is not None:
            built["stopSignal"] = stop_signal
        resources = _resources(cpus, memory)
        if resources:
            built["resources"] = resources
        creator = _by_hand(
            cell_name or name or "",
            built,
            scope,
            labels=_labels(labels),
            attachable=interactive,
            stop_timeout=stop_timeout,
        )

    async def work(client: ApiClient) -> int:
        created = await creator(client)
        key = cell_key(realm, space, stack, created)
        click.echo(f"cell/{created} created", err=remove or interactive)
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


def _container(
    name: str,
    image: str,
    env: tuple[str, ...],
    ports: tuple[str, ...],
    restart: str,
    command: tuple[str, ...],
) -> dict[str, Any]:
    container: dict[str, Any] = {"id": name, "image": image, "env": list(env)}
    if command:
        container["command"] = command[0]
        container["args"] = list(command[1:])
    if ports:
        container["ports"] = list(ports)
    if restart != "never":
        container["restartPolicy"] = restart
    return container


_SIZE = re.compile(r"(\d+)\s*([kmg]?)(?:i?b)?")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _resources(cpus: float | None, memory: str | None) -> dict[str, int]:
    """``--cpus`` and ``--memory`` as the container's resources; exit 2 for a bad size."""
    resources: dict[str, int] = {}
    if cpus is not None:
        resources["cpuLimitMillicores"] = round(cpus * 1000)
    if memory is not None:
        size = _SIZE.fullmatch(memory.strip().lower())
        if size is None:
            fail(f"--memory {memory!r}: expected a number of bytes, e.g. 64m or 1g", EXIT_USAGE)
        resources["memoryLimitBytes"] = int(size[1]) * _UNITS[size[2]]
    return resources


def _labels(given: tuple[str, ...]) -> dict[str, str]:
    """``--label`` values (``K=V``, or ``K=V,K2=V2``) as labels; exit 2 for a malformed one."""
    labels: dict[str, str] = {}
    for pair in (part for text in given for part in text.split(",") if part):
        key, equals, value = pair.partition("=")
        if not equals or not key:
            fail(f"--label {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        labels[key] = value
    return labels


def _by_hand(
    name: str,
    container: dict[str, Any],
    scope: tuple[str, str, str],
    *,
    labels: dict[str, str],
    attachable: bool,
    stop_timeout: int | None = None,
) -> CellCreator:
    """What creates the one-container cell the options describe (validated here first)."""
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
    except ValueError as error:
        fail(str(error), EXIT_USAGE)

    async def create(client: ApiClient) -> str:
        await client.create(cell)
        return name

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

        async def follow() -> None:
            async for chunk in client.stream("GET", path, params={"follow": "true"}):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()

        streaming = asyncio.ensure_future(follow())
        try:
            code = await _exit_code(client, key)
            # The followed log ends once the cell is gone, after its last line: delete it,
            # then read the stream to its end.
            with contextlib.suppress(Exception):
                await asyncio.shield(client.delete(Kind.CELL, key))
            try:
                async with asyncio.timeout(LOG_END_SECONDS):
                    await asyncio.wait([streaming])  # its failure is the finally's to take
            except TimeoutError:
                click.echo(
                    f"warning: cell/{key[-1]}'s output did not end within {LOG_END_SECONDS:g}s;"
                    " it may be incomplete",
                    err=True,
                )
        finally:
            await cancel_and_wait(streaming)
        return code
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(client.delete(Kind.CELL, key))


async def _exit_code(client: ApiClient, key: tuple[str, ...]) -> int:
    """Wait until the cell's container has exited with no restart to come; its exit code."""
    while True:
        cell = await client.get(Kind.CELL, key)
        containers = getattr(cell.status, "containers", None) or []
        state = str(cell.status.state)
        if containers and containers[0].exit_code is not None and state in {"Exited", "Error"}:
            return int(containers[0].exit_code)
        await asyncio.sleep(0.25)
