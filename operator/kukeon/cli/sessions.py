"""``kukectl exec`` and ``kukectl attach``: a terminal session with a container's process.

Both are a WebSocket to the cell's node route, framed in channels as Kubernetes' exec is:
0 stdin, 1 stdout, 2 stderr, 3 the final status (JSON), 4 a terminal size. ``exec`` runs a
new process and exits with its code; ``attach`` joins the terminal of an attachable
container and detaches with Ctrl-] Ctrl-], leaving the cell running.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from kukeon.api import Kind
from kukeon.client.apiclient import ApiClient
from kukeon.client.paths import object_path

from .params import CONTAINER, cell_key, cell_or_set_named, scope_options
from .runner import fail, run, warning_line
from .setcells import cell_of_set

if TYPE_CHECKING:
    import aiohttp


def raw_terminal(fd: int) -> Callable[[], None]:
    """Put the terminal on ``fd`` in raw mode; what restores it. Switched at once
    (``TCSANOW``), not with ``tty.setraw``'s default ``TCSAFLUSH``, which discards the
    input not read yet: what was typed while the session opened (a line typed as `kukectl
    run -it` made the cell) is sent on to the process, as docker's raw mode keeps it."""
    import termios
    import tty as tty_module

    saved = termios.tcgetattr(fd)
    tty_module.setraw(fd, termios.TCSANOW)

    def restore() -> None:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    return restore


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


# --- exec --------------------------------------------------------------------------------


@click.command("exec")
@click.argument("name", metavar="NAME|cell/NAME|cellset/NAME")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--container", "-c", type=CONTAINER, help="Container (default: the cell's root container)."
)
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
      kukectl exec cell/web -- ls /
      kukectl exec -it web -- sh
      kukectl exec web -c sidecar -- cat /etc/hostname
      kukectl exec cellset/web -- date      # in one of the set's cells
    """
    # Not `cell NAME`: the word after `cell` could as well be the command's.
    kind, name = cell_or_set_named((name,))
    params = [("command", part) for part in command]
    if container:
        params.append(("container", container))
    if interactive:
        params.append(("stdin", "true"))
    if tty and interactive and not sys.stdin.isatty():
        # kubectl's: piped input (`exec -it web -- sh < script`) goes to the process as it
        # is. Through a terminal it was echoed, and its end hung the terminal up (SIGHUP:
        # exit 129, the output lost).
        warning_line("Unable to use a TTY - input is not a terminal; running without one")
        tty = False
    if tty:
        params.append(("tty", "true"))
        size = _terminal_size(sys.stdout.fileno()) if sys.stdout.isatty() else None
        if size is not None:  # the process starts with the terminal's size
            params += [("width", str(size[0])), ("height", str(size[1]))]

    async def work(client: ApiClient) -> int:
        cell = name if kind == Kind.CELL else await cell_of_set(client, (realm, space, stack), name)
        path = object_path(Kind.CELL, cell_key(realm, space, stack, cell), "exec")
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
    import aiohttp  # only the commands that open a WebSocket load it

    restore: Callable[[], None] | None = None
    if tty and sys.stdin.isatty():
        restore = raw_terminal(sys.stdin.fileno())
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


@click.command()
@click.argument("name", nargs=-1, required=True, metavar="[cell] NAME|cell/NAME|cellset/NAME")
@click.option(
    "--container",
    "-c",
    type=CONTAINER,
    help="Container (default: the cell's spec.tty.default, else its only attachable one).",
)
@scope_options
@click.pass_context
def attach(
    ctx: click.Context,
    name: tuple[str, ...],
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
      kukectl attach cell/shell
      kukectl attach web -c console
    """
    kind, named = cell_or_set_named(name)
    params = [("container", container)] if container else []

    async def work(client: ApiClient) -> int:
        scope = (realm, space, stack)
        cell = named if kind == Kind.CELL else await cell_of_set(client, scope, named)
        path = object_path(Kind.CELL, cell_key(realm, space, stack, cell), "attach")
        return (await attach_session(client, path, params, cell=cell)).code

    code = run(ctx, work)
    raise click.exceptions.Exit(code)


async def _upgrade_refusal(client: ApiClient, path: str, params: list[tuple[str, str]]) -> None:
    """The server's own reason for refusing a WebSocket upgrade.

    aiohttp's client drops the body of a refused upgrade; the same request as a plain GET
    is refused for the same reason, answered as a Status. It never starts anything: the
    routes check everything before the upgrade, and the upgrade itself fails without one.
    """
    await client.request("GET", path, params=dict(params))


class _AttachSession:
    """One attach: the terminal, stdin, the signals and the WebSocket, until it ends.

    ``done`` receives how it ended: the container's exit code, ``128 + signal`` when
    kukectl is signalled, or one of ``_DETACHED``, ``_SERVER_FAILED``, ``_STREAM_ENDED``.
    """

    def __init__(
        self,
        socket: aiohttp.ClientWebSocketResponse,
        *,
        cell: str,
        stdin_fd: int,
        until_exit: bool = False,
    ) -> None:
        self.detached = False
        self.loop = asyncio.get_running_loop()
        self.socket = socket
        self.cell = cell
        self.stdin_fd = stdin_fd
        self.until_exit = until_exit
        """``run -i``: the end of piped stdin is typed as Ctrl-D (the terminal's end of
        input) and the session lasts until the container exits, as ``docker run -i``."""
        self.interactive = os.isatty(stdin_fd)
        self.done: asyncio.Future[int] = self.loop.create_future()
        self.last_output = self.loop.time()
        self.stdin_ended = False
        self.scanner = _DetachScanner()
        self.outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.pending: set[asyncio.Future[Any]] = set()
        self.installed: list[signal.Signals] = []
        self.reader_added = False
        self.restore: Callable[[], None] | None = None

    def end(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    # --- the terminal and the signals ---

    def enter_raw_mode(self) -> None:
        """A terminal on stdin passes every key through (Ctrl-C included) until restored."""
        self.restore = raw_terminal(self.stdin_fd)

    def restore_terminal(self) -> None:
        if self.restore is not None:
            self.restore()
            self.restore = None

    async def send_size(self) -> None:
        if not self.interactive:
            return
        size = _terminal_size(self.stdin_fd)
        if size is None:
            return
        await self.socket.send_bytes(
            b"\x04" + json.dumps({"width": size[0], "height": size[1]}).encode()
        )

    def install_signals(self) -> None:
        """A resized terminal sends its size; SIGTERM and SIGHUP end the session."""
        for signum in (signal.SIGWINCH,):
            self.loop.add_signal_handler(signum, lambda: self.spawn(self.send_size()))
            self.installed.append(signum)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self.loop.add_signal_handler(signum, self.end, 128 + int(signum))
            self.installed.append(signum)

    # --- stdin to the container ---

    def on_input(self, data: bytes) -> None:
        if not data:
            self.stdin_ended = True
            if self.until_exit and not self.interactive:
                self.outgoing.put_nowait(b"\x04")
            return
        if not self.interactive:
            self.outgoing.put_nowait(data)
            return
        data, detach = self.scanner.feed(data)
        if data:
            self.outgoing.put_nowait(data)
        if detach:
            self.end(_DETACHED)

    def readable(self) -> None:
        try:
            data = os.read(self.stdin_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.stdin_fd)
        self.on_input(data)

    async def read_blocking(self) -> None:  # stdin that epoll refuses (a regular file)
        while True:
            data = await asyncio.to_thread(os.read, self.stdin_fd, 65536)
            self.on_input(data)
            if not data:
                return

    def watch_stdin(self) -> None:
        try:
            self.loop.add_reader(self.stdin_fd, self.readable)
            self.reader_added = True
        except (PermissionError, OSError):
            self.spawn(self.read_blocking())

    async def send_input(self) -> None:
        while (data := await self.outgoing.get()) is not None:
            await self.socket.send_bytes(b"\x00" + data)

    # --- the container's output ---

    async def receive(self) -> None:
        import aiohttp  # only the commands that open a WebSocket load it

        async for message in self.socket:
            if message.type is not aiohttp.WSMsgType.BINARY:
                continue
            channel, payload = message.data[:1], message.data[1:]
            if channel == b"\x01":
                self.last_output = self.loop.time()
                sys.stdout.buffer.write(payload)
                sys.stdout.buffer.flush()
            elif channel == b"\x02":  # kukeond's notice (output this session lost)
                sys.stdout.buffer.flush()
                sys.stderr.buffer.write(payload)
                sys.stderr.buffer.flush()
            elif channel == b"\x03":
                status = json.loads(payload)
                self.end(
                    int(status.get("exitCode", 1)) if "error" not in status else _SERVER_FAILED
                )
        self.end(_STREAM_ENDED)  # the server went away

    async def quiet_after_eof(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            if self.stdin_ended and self.loop.time() - self.last_output >= QUIET_AFTER_EOF_SECONDS:
                if not self.interactive:
                    self.end(_DETACHED)
                return

    # --- the session ---

    async def run(self) -> int:
        """Attach until the session ends; kukectl's exit code."""
        if self.interactive:
            self.enter_raw_mode()
            click.echo(
                f"attached to cell/{self.cell}; detach with Ctrl-] Ctrl-] "
                "(the cell keeps running)\r",
                err=True,
            )
        await self.send_size()
        self.install_signals()
        self.watch_stdin()
        self.spawn(self.send_input())
        self.spawn(self.receive())
        if not self.interactive and not self.until_exit:
            self.spawn(self.quiet_after_eof())
        code = await self.done
        for task in list(self.pending):
            task.cancel()
        if code == _DETACHED:
            self.detached = True
            self.restore_terminal()
            click.echo(f"\r\ndetached from cell/{self.cell} (it keeps running)", err=True)
            return 0
        if code == _SERVER_FAILED:
            fail("attach failed: the server could not follow the container")
        if code == _STREAM_ENDED:
            fail("the attach stream ended: the server went away")
        return code

    async def close(self) -> None:
        if self.reader_added:
            self.loop.remove_reader(self.stdin_fd)
        for signum in self.installed:
            self.loop.remove_signal_handler(signum)
        self.restore_terminal()
        await self.socket.close()


class AttachEnd(NamedTuple):
    """How an attach session ended: kukectl's exit code, and whether it was a detach."""

    code: int
    detached: bool


async def attach_session(
    client: ApiClient,
    path: str,
    params: list[tuple[str, str]],
    *,
    cell: str,
    until_exit: bool = False,
) -> AttachEnd:
    import aiohttp  # only the commands that open a WebSocket load it

    stdin_fd = sys.stdin.fileno()
    try:
        socket: aiohttp.ClientWebSocketResponse = await client.websocket(path, params=params)
    except aiohttp.WSServerHandshakeError as error:
        await _upgrade_refusal(client, path, params)  # raises ApiRequestError with the reason
        fail(f"attach refused by the server: HTTP {error.status} {error.message}")
    session = _AttachSession(socket, cell=cell, stdin_fd=stdin_fd, until_exit=until_exit)
    try:
        code = await session.run()
    finally:
        await session.close()
    return AttachEnd(code, session.detached)
