"""``kukectl start``, ``stop``, ``restart`` and ``kill``: what a cell's containers do.

Starting and stopping are spec changes (``desiredState``; a restart is the
``kukeon.io/restartedAt`` annotation, as ``kubectl rollout restart``), so they survive a
daemon restart and show in ``get``; by default the command waits until the cell has done
it. ``kill`` signals the running containers through the node route kukeond serves.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from kukeon.api import Kind
from kukeon.client.apiclient import ApiClient
from kukeon.client.errors import listed
from kukeon.client.paths import object_path

from .params import CONTAINER, DURATION, SIGNAL, cell_argument, cell_key, cell_named, scope_options
from .runner import fail, run, stderr

RESTARTED_AT = "kukeon.io/restartedAt"


_SETTLED_OK = {"start": {"Ready", "Exited"}, "stop": {"Stopped", "Exited"}}
_SETTLED_BAD = {"Failed", "Error"}


def _wait_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--timeout",
        type=DURATION,
        default="60s",
        show_default=True,
        help="How long to wait before giving up (exit 1; the change stays).",
    )(func)
    return click.option(
        "--wait/--no-wait",
        default=True,
        show_default=True,
        help="Wait until the cell has done it (as docker start/stop/restart).",
    )(func)


def _runs(cell: Any) -> dict[str, tuple[Any, Any]]:
    """Each container's current run and last ended run, by their start times."""
    runs = {}
    for c in getattr(cell.status, "containers", None) or []:
        last = getattr(c, "last_state", None)
        runs[c.id] = (c.start_time, getattr(last, "started_at", None))
    return runs


def _acted_on(verb: str, cell: Any, before: Any) -> bool:
    """Whether the cell's state answers this change. A restart is an annotation (the
    generation does not move): it is answered once every container the cell had ran
    again since (a new start time, or a new ended run for one that failed again at
    once and waits out its back-off); until then the state is the one from before, a
    Failed, Error or back-off included."""
    if verb != "restart":
        return True
    old, new = _runs(before), _runs(cell)
    return all(
        (now := new.get(cid)) is not None
        and (now[0] not in (None, started) or now[1] not in (None, ended))
        for cid, (started, ended) in old.items()
    )


def _exit_said(container: str, code: Any, said: Any) -> str:
    exited = f"exited with {code}" if code is not None else "exited"
    return f"container {container} {exited}" + (f": {said}" if said else "")


def _waiting(cell: Any) -> str | None:
    """Why the cell's first container waiting out a restart back-off (CrashLoopBackOff)
    waits: its exit, or None when none waits."""
    for c in getattr(cell.status, "containers", None) or []:
        if str(c.state) == "Waiting":
            last = getattr(c, "last_state", None)
            code, said = getattr(last, "exit_code", None), getattr(last, "message", None)
            return _exit_said(c.id, code, said)
    return None


def _failed(cell: Any) -> str | None:
    """The cell's first container that ended Failed or Error and stays down: its exit."""
    for c in getattr(cell.status, "containers", None) or []:
        if str(c.state) in _SETTLED_BAD:
            return _exit_said(c.id, c.exit_code, c.message)
    return None


def _settled(verb: str, cell: Any, before: Any) -> bool:
    state = str(cell.status.state)
    if verb != "restart":
        return state in _SETTLED_OK[verb]
    return state == "Ready" and _acted_on(verb, cell, before)


async def _change_cell(
    client: ApiClient,
    key: tuple[str, ...],
    patch: dict[str, Any],
    *,
    verb: str,
    wait: bool,
    within: float,
) -> None:
    """Patch the cell; with `wait`, poll until it has done `verb` (progress on a terminal)."""
    label = f"cell/{key[-1]}"
    done = {"start": "started", "stop": "stopped", "restart": "restarted"}[verb]
    before = await client.get(Kind.CELL, key)
    patched = await client.patch(Kind.CELL, key, patch)
    if not wait:
        click.echo(f"{label} {done}")
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    progress = stderr.status(f"waiting for {label} to {verb}") if sys.stderr.isatty() else None
    if progress is not None:
        progress.start()
    try:
        while True:
            cell = await client.get(Kind.CELL, key)
            status = cell.status
            state = str(status.state)
            current = status.observed_generation >= patched.metadata.generation
            if current and _settled(verb, cell, before):
                break
            if current and verb != "stop" and _acted_on(verb, cell, before):
                _fail_if_down(label, verb, cell)
            if loop.time() >= deadline:
                fail(f"timed out after {within:g}s waiting for {label} to {verb} (it is {state})")
            if progress is not None:
                progress.update(f"waiting for {label} to {verb} (it is {state})")
            await asyncio.sleep(0.25)
    finally:
        if progress is not None:
            progress.stop()
    click.echo(f"{label} {done}")


def _fail_if_down(label: str, verb: str, cell: Any) -> None:
    """Fail the command when the cell answered it by failing: Failed or Error, or a
    container that ran and waits out its back-off (kubectl's CrashLoopBackOff)."""
    status = cell.status
    state = str(status.state)
    if state in _SETTLED_BAD:
        why = ": ".join(str(part) for part in (status.reason, status.message) if part)
        why = why or _failed(cell) or ""
        fail(f"{label} did not {verb}: {state}" + (f" ({why})" if why else ""))
    if (waiting := _waiting(cell)) is not None:
        fail(f"{label} did not {verb}: CrashLoopBackOff ({waiting})")


@click.command()
@cell_argument
@_wait_options
@scope_options
@click.pass_context
def start(
    ctx: click.Context,
    name: tuple[str, ...],
    wait: bool,
    timeout: float,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Start a stopped cell (desiredState: Running); waits until it is Ready.

    \b
    Examples:
      kukectl start web
      kukectl start cell/web --no-wait      # return once the change is stored
    """
    key = cell_key(realm, space, stack, cell_named(name))
    patch = {"spec": {"desiredState": "Running"}}
    run(ctx, lambda c: _change_cell(c, key, patch, verb="start", wait=wait, within=timeout))


@click.command()
@cell_argument
@_wait_options
@scope_options
@click.pass_context
def stop(
    ctx: click.Context,
    name: tuple[str, ...],
    wait: bool,
    timeout: float,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Stop a cell's containers and keep the cell (desiredState: Stopped); waits until they
    have stopped (SIGTERM, then SIGKILL after kukeond's stop grace, 10 s by default).

    \b
    Examples:
      kukectl stop web
      kukectl stop cell web --no-wait
    """
    key = cell_key(realm, space, stack, cell_named(name))
    patch = {"spec": {"desiredState": "Stopped"}}
    run(ctx, lambda c: _change_cell(c, key, patch, verb="stop", wait=wait, within=timeout))


@click.command()
@cell_argument
@_wait_options
@scope_options
@click.pass_context
def restart(
    ctx: click.Context,
    name: tuple[str, ...],
    wait: bool,
    timeout: float,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Restart every container of a cell (as `kubectl rollout restart` does, by annotation);
    waits until each runs as a new process and the cell is Ready.

    \b
    Examples:
      kukectl restart web
      kukectl restart cell/web            # as kubectl names it
      kukectl restart cell web --realm prod --space edge --stack app
    """
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    patch = {
        "metadata": {"annotations": {RESTARTED_AT: stamp}},
        "spec": {"desiredState": "Running"},
    }
    key = cell_key(realm, space, stack, cell_named(name))
    run(ctx, lambda c: _change_cell(c, key, patch, verb="restart", wait=wait, within=timeout))


@click.command()
@cell_argument
@click.option(
    "--signal",
    "-s",
    "signal_name",
    type=SIGNAL,
    default="TERM",
    show_default=True,
    help="Signal name (TERM, SIGKILL, hup, RTMIN+3...) or number.",
)
@click.option("--container", "-c", type=CONTAINER, help="Only this container.")
@scope_options
@click.pass_context
def kill(
    ctx: click.Context,
    name: tuple[str, ...],
    signal_name: str,
    container: str | None,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Send a signal to a cell's running containers (the restart policy then applies).

    \b
    Examples:
      kukectl kill web                         # SIGTERM
      kukectl kill cell/web -s HUP -c app
    """
    cell = cell_named(name)
    path = object_path(Kind.CELL, cell_key(realm, space, stack, cell), "kill")
    params = {"signal": signal_name}
    if container:
        params["container"] = container

    async def work(client: ApiClient) -> None:
        answer = await client.request("POST", path, params=params)
        signalled = listed(answer, "containers", f"POST {path}")
        if not signalled:
            click.echo(f"cell/{cell}: no running container to signal")
        for cid in signalled:
            click.echo(f"cell/{cell} container {cid}: sent {answer['signal']}")

    run(ctx, work)
