"""kukectl's workload commands: run, logs, exec, attach, start/stop/restart/kill.

`get`/`apply`/`delete` speak about documents; these speak about what runs. Starting and
stopping are spec changes (`desiredState`, the `kukeon.io/restartedAt` annotation) so they
survive a daemon restart and show in `get`; `kill` and `logs` use the node routes that
kukeond serves beside the resource API (the image commands are in `images`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import click

from kukeon.api import Kind, parse_resource
from kukeon.apiserver.client import ApiClient
from kukeon.apiserver.paths import object_path

from .main import DURATION, EXIT_SERVER, EXIT_USAGE, _stderr, cli, fail, run, scope_options

RESTARTED_AT = "kukeon.io/restartedAt"


def _cell_key(realm: str, space: str, stack: str, name: str) -> tuple[str, str, str, str]:
    return (realm, space, stack, name)


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


def _terminal_size(fd: int) -> tuple[int, int] | None:
    """(columns, lines) of the terminal on `fd`; None when unknown (a pseudo-terminal
    nobody sized reports 0 x 0, which no container terminal takes)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    if size.columns <= 0 or size.lines <= 0:
        return None
    return size.columns, size.lines


# --- run --------------------------------------------------------------------------------


@cli.command("run")
@click.argument("name")
@click.option("--image", required=True, help="Image of the cell's single container.")
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
    name: str,
    image: str,
    remove: bool,
    wait_ready: bool,
    timeout: float,
    env: tuple[str, ...],
    restart: str,
    command: tuple[str, ...],
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Create a cell with one container running IMAGE [-- COMMAND ARGS...].

    \b
    Examples:
      kukectl run web --image nginx:1.27
      kukectl run demo --image busybox --rm -- sh -c 'echo hi; exit 4'
      kukectl run job --image busybox --restart never --wait -- date
    """
    container: dict[str, Any] = {"id": name, "image": image, "env": list(env)}
    if command:
        container["command"] = command[0]
        container["args"] = list(command[1:])
    if restart != "never":
        container["restartPolicy"] = restart
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": name},
        "spec": {
            "realmId": realm,
            "spaceId": space,
            "stackId": stack,
            "containers": [container],
        },
    }
    try:
        cell = parse_resource(document)
    except ValueError as error:
        fail(str(error), EXIT_USAGE)

    key = _cell_key(realm, space, stack, name)

    async def work(client: ApiClient) -> int:
        await client.create(cell)
        click.echo(f"cell/{name} created", err=remove)
        if remove:
            return await _run_to_exit(client, key, within=timeout)
        if wait_ready:
            state = await _wait_state(client, key, {"Ready", "Exited"}, within=timeout, show=True)
            if state == "Failed":
                return EXIT_SERVER
        return 0

    raise click.exceptions.Exit(run(ctx, work))


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
            await asyncio.sleep(0.6)  # the last lines: the log route reads every 0.2 s
        finally:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await streaming
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


# --- start / stop / restart / kill -------------------------------------------------------


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


def _pids(cell: Any) -> dict[str, int | None]:
    return {c.id: c.pid for c in getattr(cell.status, "containers", None) or []}


def _settled(verb: str, cell: Any, before: Any) -> bool:
    state = str(cell.status.state)
    if verb != "restart":
        return state in _SETTLED_OK[verb]
    # Restarted: Ready again, every container that ran then runs as a new process now.
    old, new = _pids(before), _pids(cell)
    return state == "Ready" and all(
        new.get(cid) not in (None, pid) for cid, pid in old.items() if pid is not None
    )


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
    progress = _stderr.status(f"waiting for {label} to {verb}") if sys.stderr.isatty() else None
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
            if current and verb != "stop" and state in _SETTLED_BAD:
                fail(f"{label} did not {verb}: {state} ({status.reason}: {status.message})")
            if loop.time() >= deadline:
                fail(f"timed out after {within:g}s waiting for {label} to {verb} (it is {state})")
            if progress is not None:
                progress.update(f"waiting for {label} to {verb} (it is {state})")
            await asyncio.sleep(0.25)
    finally:
        if progress is not None:
            progress.stop()
    click.echo(f"{label} {done}")


@cli.command()
@click.argument("name")
@_wait_options
@scope_options
@click.pass_context
def start(
    ctx: click.Context, name: str, wait: bool, timeout: float, realm: str, space: str, stack: str
) -> None:
    """Start a stopped cell (desiredState: Running); waits until it is Ready.

    \b
    Examples:
      kukectl start web
      kukectl start web --no-wait      # return once the change is stored
    """
    key = _cell_key(realm, space, stack, name)
    patch = {"spec": {"desiredState": "Running"}}
    run(ctx, lambda c: _change_cell(c, key, patch, verb="start", wait=wait, within=timeout))


@cli.command()
@click.argument("name")
@_wait_options
@scope_options
@click.pass_context
def stop(
    ctx: click.Context, name: str, wait: bool, timeout: float, realm: str, space: str, stack: str
) -> None:
    """Stop a cell's containers and keep the cell (desiredState: Stopped); waits until they
    have stopped (SIGTERM, then SIGKILL after kukeond's stop grace, 10 s by default).

    \b
    Examples:
      kukectl stop web
      kukectl stop web --no-wait
    """
    key = _cell_key(realm, space, stack, name)
    patch = {"spec": {"desiredState": "Stopped"}}
    run(ctx, lambda c: _change_cell(c, key, patch, verb="stop", wait=wait, within=timeout))


@cli.command()
@click.argument("name")
@_wait_options
@scope_options
@click.pass_context
def restart(
    ctx: click.Context, name: str, wait: bool, timeout: float, realm: str, space: str, stack: str
) -> None:
    """Restart every container of a cell (as `kubectl rollout restart` does, by annotation);
    waits until each runs as a new process and the cell is Ready.

    \b
    Examples:
      kukectl restart web
    """
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    patch = {
        "metadata": {"annotations": {RESTARTED_AT: stamp}},
        "spec": {"desiredState": "Running"},
    }
    key = _cell_key(realm, space, stack, name)
    run(ctx, lambda c: _change_cell(c, key, patch, verb="restart", wait=wait, within=timeout))


@cli.command()
@click.argument("name")
@click.option(
    "--signal",
    "-s",
    "signal_name",
    default="TERM",
    show_default=True,
    help="Signal name (TERM, SIGKILL, hup...) or number.",
)
@click.option("--container", "-c", help="Only this container.")
@scope_options
@click.pass_context
def kill(
    ctx: click.Context,
    name: str,
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
      kukectl kill web -s HUP -c app
    """
    path = object_path(Kind.CELL, _cell_key(realm, space, stack, name), "kill")
    params = {"signal": signal_name}
    if container:
        params["container"] = container

    async def work(client: ApiClient) -> None:
        answer = await client.request("POST", path, params=params)
        signalled = answer.get("containers", []) if isinstance(answer, dict) else []
        if not signalled:
            click.echo(f"cell/{name}: no running container to signal")
        for cid in signalled:
            click.echo(f"cell/{name} container {cid}: sent {answer['signal']}")

    run(ctx, work)


# --- logs --------------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("--container", "-c", help="Container (default: the cell's root container).")
@click.option("--all-containers", is_flag=True, help="Every container of the cell.")
@click.option(
    "--prefix",
    is_flag=True,
    help="Start each line with [cell/container] (on by default with --all-containers).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new lines.")
@click.option(
    "--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines (N >= 0)."
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
    name: str,
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
      kukectl logs web --since 10m --timestamps
      kukectl logs web --previous           # before the last restart
      kukectl logs web --all-containers -f  # every container, lines prefixed
    """
    if container and all_containers:
        fail("--container and --all-containers: give at most one", EXIT_USAGE)
    if since is not None and since_time is not None:
        fail("--since and --since-time: give at most one", EXIT_USAGE)
    key = _cell_key(realm, space, stack, name)
    path = object_path(Kind.CELL, key, "log")
    params: dict[str, str] = {}
    if follow:
        params["follow"] = "true"
    if tail is not None:
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
            label = f"[{name}/{container}] " if prefix and container else None
            if prefix and not container:
                label = f"[{name}] "
            await one(client, container, label)
            return
        cell = await client.get(Kind.CELL, key)
        ids = [c.id for c in getattr(cell.spec, "containers", None) or []]
        await asyncio.gather(*(one(client, cid, f"[{name}/{cid}] ") for cid in ids))

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


# --- exec --------------------------------------------------------------------------------


@cli.command("exec")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--container", "-c", help="Container (default: the cell's root container).")
@click.option("--stdin", "-i", "interactive", is_flag=True, help="Pass stdin to the process.")
@click.option("--tty", "-t", is_flag=True, help="Allocate a terminal.")
@scope_options
@click.pass_context
def exec_command(
    ctx: click.Context,
    name: str,
    command: tuple[str, ...],
    container: str | None,
    interactive: bool,
    tty: bool,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Run COMMAND in a running container of a cell; its exit code becomes kukectl's.

    \b
    Examples:
      kukectl exec web -- ls /
      kukectl exec -it web -- sh
      kukectl exec web -c sidecar -- cat /etc/hostname
    """
    path = object_path(Kind.CELL, _cell_key(realm, space, stack, name), "exec")
    params = [("command", part) for part in command]
    if container:
        params.append(("container", container))
    if interactive:
        params.append(("stdin", "true"))
    if tty:
        params.append(("tty", "true"))
        size = _terminal_size(sys.stdout.fileno()) if sys.stdout.isatty() else None
        if size is not None:  # the process starts with the terminal's size
            params += [("width", str(size[0])), ("height", str(size[1]))]

    async def work(client: ApiClient) -> int:
        return await _exec_session(client, path, params, interactive=interactive, tty=tty)

    code = run(ctx, work)
    raise click.exceptions.Exit(code)


async def _forward_stdin(socket: aiohttp.ClientWebSocketResponse) -> None:
    """Copy stdin to the exec's stdin channel, then an empty frame for EOF.

    Read when the event loop says stdin is readable, never in a blocking thread: a thread
    stuck in ``read`` would keep kukectl alive after the process has exited (asyncio waits
    for its executor at exit). A regular file, which epoll refuses, is read directly: it
    never blocks.
    """
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
        chunks.put_nowait(data)

    try:
        loop.add_reader(fd, readable)
    except (PermissionError, OSError):
        while data := os.read(fd, 65536):
            await socket.send_bytes(b"\x00" + data)
        await socket.send_bytes(b"\x00")
        return
    try:
        while data := await chunks.get():
            await socket.send_bytes(b"\x00" + data)
        await socket.send_bytes(b"\x00")
    finally:
        loop.remove_reader(fd)


async def _exec_session(
    client: ApiClient,
    path: str,
    params: list[tuple[str, str]],
    *,
    interactive: bool,
    tty: bool,
) -> int:
    restore: Any = None
    if tty and sys.stdin.isatty():
        import termios
        import tty as tty_module

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        tty_module.setraw(fd)

        def restore() -> None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    try:
        async with client.websocket(path, params=params) as socket:
            size = _terminal_size(sys.stdout.fileno()) if tty and sys.stdout.isatty() else None
            if size is not None:
                await socket.send_bytes(
                    b"\x04" + json.dumps({"width": size[0], "height": size[1]}).encode()
                )
            pump: asyncio.Future[None] | None = None
            if interactive:
                pump = asyncio.ensure_future(_forward_stdin(socket))
            code = 1
            try:
                async for message in socket:
                    if message.type is not aiohttp.WSMsgType.BINARY:
                        if message.type is aiohttp.WSMsgType.ERROR:
                            fail(f"exec stream broke: {socket.exception()}")
                        continue
                    channel, payload = message.data[:1], message.data[1:]
                    if channel == b"\x01":
                        sys.stdout.buffer.write(payload)
                        sys.stdout.buffer.flush()
                    elif channel == b"\x02":
                        sys.stderr.buffer.write(payload)
                        sys.stderr.buffer.flush()
                    elif channel == b"\x03":
                        status = json.loads(payload)
                        if "error" in status:
                            fail(f"exec failed: {status['error']}", int(status.get("exitCode", 1)))
                        code = int(status.get("exitCode", 1))
            finally:
                if pump is not None:
                    pump.cancel()
            return code
    except aiohttp.WSServerHandshakeError as error:
        await _upgrade_refusal(client, path, params)  # raises ApiRequestError with the reason
        fail(f"exec refused by the server: HTTP {error.status} {error.message}")
    finally:
        if restore is not None:
            restore()


# --- attach ------------------------------------------------------------------------------

DETACH_KEYS = b"\x1d\x1d"  # Ctrl-] Ctrl-]
QUIET_AFTER_EOF_SECONDS = 1.0
# How an attach session ended, when it is not the container's exit code.
_DETACHED, _SERVER_FAILED, _STREAM_ENDED = -1, -2, -3


class _DetachScanner:
    """Finds the detach sequence in typed input, holding back a partial match."""

    def __init__(self, keys: bytes = DETACH_KEYS) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to send, and whether the sequence was typed (nothing after it is sent)."""
        out = bytearray()
        for byte in data:
            self.held += bytes([byte])
            if self.keys.startswith(self.held):
                if self.held == self.keys:
                    self.held = b""
                    return bytes(out), True
                continue
            # No longer a prefix: release what was held, keep the longest prefix still open.
            while self.held and not self.keys.startswith(self.held):
                out += self.held[:1]
                self.held = self.held[1:]
        return bytes(out), False


@cli.command()
@click.argument("name")
@click.option(
    "--container",
    "-c",
    help="Container (default: the cell's spec.tty.default, else its only attachable one).",
)
@scope_options
@click.pass_context
def attach(
    ctx: click.Context,
    name: str,
    container: str | None,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Attach to an attachable container's terminal; detach with Ctrl-] Ctrl-].

    Detaching leaves the cell running. If the container exits while attached, kukectl
    exits with its exit code. Piped (non-terminal) stdin is sent as is; at its end kukectl
    detaches once the output has been quiet for a second.

    \b
    Examples:
      kukectl attach shell
      kukectl attach web -c console
    """
    path = object_path(Kind.CELL, _cell_key(realm, space, stack, name), "attach")
    params = [("container", container)] if container else []

    async def work(client: ApiClient) -> int:
        return await _attach_session(client, path, params, cell=name)

    code = run(ctx, work)
    raise click.exceptions.Exit(code)


async def _upgrade_refusal(client: ApiClient, path: str, params: list[tuple[str, str]]) -> None:
    """The server's own reason for refusing a WebSocket upgrade.

    aiohttp's client drops the body of a refused upgrade; the same request as a plain GET
    is refused for the same reason, answered as a Status. It never starts anything: the
    routes check everything before the upgrade, and the upgrade itself fails without one.
    """
    await client.request("GET", path, params=dict(params))


async def _attach_session(
    client: ApiClient, path: str, params: list[tuple[str, str]], *, cell: str
) -> int:
    loop = asyncio.get_running_loop()
    stdin_fd = sys.stdin.fileno()
    interactive = os.isatty(stdin_fd)
    try:
        socket: aiohttp.ClientWebSocketResponse = await client.websocket(path, params=params)
    except aiohttp.WSServerHandshakeError as error:
        await _upgrade_refusal(client, path, params)  # raises ApiRequestError with the reason
        fail(f"attach refused by the server: HTTP {error.status} {error.message}")

    restore: Any = None
    done: asyncio.Future[int] = loop.create_future()
    last_output = loop.time()
    stdin_ended = False
    installed: list[signal.Signals] = []
    reader_added = False
    try:
        if interactive:
            import termios
            import tty as tty_module

            saved = termios.tcgetattr(stdin_fd)
            tty_module.setraw(stdin_fd)

            def restore() -> None:
                termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)

            click.echo(
                f"attached to cell/{cell}; detach with Ctrl-] Ctrl-] (the cell keeps running)\r",
                err=True,
            )

        async def send_size() -> None:
            if not interactive:
                return
            size = _terminal_size(stdin_fd)
            if size is None:
                return
            await socket.send_bytes(
                b"\x04" + json.dumps({"width": size[0], "height": size[1]}).encode()
            )

        await send_size()
        pending: set[asyncio.Future[Any]] = set()

        def spawn(coro: Any) -> None:
            task = asyncio.ensure_future(coro)
            pending.add(task)
            task.add_done_callback(pending.discard)

        for signum in (signal.SIGWINCH,):
            loop.add_signal_handler(signum, lambda: spawn(send_size()))
            installed.append(signum)

        def on_signal(signum: int) -> None:
            if not done.done():
                done.set_result(128 + signum)

        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, on_signal, int(signum))
            installed.append(signum)

        scanner = _DetachScanner()
        outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()

        def on_input(data: bytes) -> None:
            nonlocal stdin_ended
            if not data:
                stdin_ended = True
                return
            if interactive:
                data, detach = scanner.feed(data)
                if data:
                    outgoing.put_nowait(data)
                if detach and not done.done():
                    done.set_result(_DETACHED)
            else:
                outgoing.put_nowait(data)

        def readable() -> None:
            try:
                data = os.read(stdin_fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(stdin_fd)
            on_input(data)

        async def read_blocking() -> None:  # stdin that epoll refuses (a regular file)
            while True:
                data = await asyncio.to_thread(os.read, stdin_fd, 65536)
                on_input(data)
                if not data:
                    return

        try:
            loop.add_reader(stdin_fd, readable)
            reader_added = True
        except (PermissionError, OSError):
            spawn(read_blocking())

        async def send_input() -> None:
            while (data := await outgoing.get()) is not None:
                await socket.send_bytes(b"\x00" + data)

        async def receive() -> None:
            nonlocal last_output
            async for message in socket:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    continue
                channel, payload = message.data[:1], message.data[1:]
                if channel == b"\x01":
                    last_output = loop.time()
                    sys.stdout.buffer.write(payload)
                    sys.stdout.buffer.flush()
                elif channel == b"\x03":
                    status = json.loads(payload)
                    if not done.done():
                        done.set_result(
                            int(status.get("exitCode", 1))
                            if "error" not in status
                            else _SERVER_FAILED
                        )
            if not done.done():
                done.set_result(_STREAM_ENDED)  # the server went away

        async def quiet_after_eof() -> None:
            while True:
                await asyncio.sleep(0.1)
                if stdin_ended and loop.time() - last_output >= QUIET_AFTER_EOF_SECONDS:
                    if not interactive and not done.done():
                        done.set_result(_DETACHED)
                    return

        spawn(send_input())
        spawn(receive())
        if not interactive:
            spawn(quiet_after_eof())
        code = await done
        for task in list(pending):
            task.cancel()
        if code == _DETACHED:
            if restore is not None:
                restore()
                restore = None
            click.echo(f"\r\ndetached from cell/{cell} (it keeps running)", err=True)
            return 0
        if code == _SERVER_FAILED:
            fail("attach failed: the server could not follow the container")
        if code == _STREAM_ENDED:
            fail("the attach stream ended: the server went away")
        return code
    finally:
        if reader_added:
            loop.remove_reader(stdin_fd)
        for signum in installed:
            loop.remove_signal_handler(signum)
        if restore is not None:
            restore()
        await socket.close()
