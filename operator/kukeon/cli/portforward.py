"""kukectl port-forward, as kubectl has it: listens here and opens one ``portforward``
WebSocket (``kukeon.daemon.transfer``) to the cell per connection."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import signal
from socket import gaierror
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from kukeon.api import Kind
from kukeon.cancelling import cancel_and_wait
from kukeon.client.apiclient import ApiClient, ApiRequestError, ServerUnreachable
from kukeon.client.paths import object_path

from .params import cell_or_set_named, scope_options
from .runner import EXIT_USAGE, fail, run
from .setcells import cell_of_set
from .transfer import CHUNK, upgrade_refusal, wake

if TYPE_CHECKING:
    import aiohttp

CELL_POLL_SECONDS = 2.0
_NO_SUCH_ADDRESS = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT})


def host_cannot_listen(error: OSError) -> bool:
    """Whether a listener failed because this host has no such address (``::1`` without
    IPv6), not because the port is held: another local user listening first on
    ``[::1]:PORT`` would get every connection to ``localhost:PORT`` a client makes over
    IPv6 first (browsers do) while kukectl forwarded ``127.0.0.1`` alone, saying nothing."""
    return isinstance(error, gaierror) or error.errno in _NO_SUCH_ADDRESS


class PortPair(NamedTuple):
    local: int  # 0: any free port
    remote: int


def _port_number(text: str, spec: str, side: str, lowest: int) -> int:
    """One side of ``[LOCAL:]REMOTE`` as a port, or a usage error naming the argument and
    the side, as kubectl's ``error parsing remote port 'nan'``."""
    # isascii: str.isdigit is also true of '²', which int() refuses.
    if text.isascii() and text.isdigit() and lowest <= int(text) <= 65535:
        return int(text)
    free = " (0 or none: any free local port)" if lowest == 0 else ""
    raise click.BadParameter(
        f"{spec!r}: the {side} port {text!r} is not a port number, {lowest}-65535{free}"
    )


def parse_ports(specs: tuple[str, ...]) -> list[PortPair]:
    """``[LOCAL:]REMOTE`` each, as kubectl reads them (``:80`` or ``0:80``: a free port)."""
    pairs: list[PortPair] = []
    for spec in specs:
        local_text, sep, remote_text = spec.rpartition(":")
        if ":" in local_text or not remote_text:
            raise click.BadParameter(f"{spec!r}: expected [LOCAL:]REMOTE, e.g. 8080:80")
        # The remote port first, as kubectl: a lone port is both, and is named remote.
        remote = _port_number(remote_text, spec, "remote", 1)
        local = _port_number(local_text or "0", spec, "local", 0) if sep else remote
        pairs.append(PortPair(local, remote))
    return pairs


def _shown(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@click.command("port-forward")
@click.argument("name", metavar="NAME|cell/NAME|cellset/NAME")
@click.argument("ports", nargs=-1, required=True, metavar="[LOCAL:]REMOTE...")
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Local addresses to listen on, comma-separated (localhost: 127.0.0.1 and ::1).",
)
@scope_options
@click.pass_context
def port_forward(
    ctx: click.Context,
    name: str,
    ports: tuple[str, ...],
    address: str,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Forward local ports to ports of a cell, until interrupted.

    \b
    Examples:
      kukectl port-forward web 8080:80     # localhost:8080 -> port 80 of the cell
      kukectl port-forward web 5432 :9090  # 5432 -> 5432, a free local port -> 9090
      kukectl port-forward web 8080:80 --address 0.0.0.0
      kukectl port-forward cellset/web 8080:80  # one of the set's cells

    Each connection is a stream through the API to the node that runs the cell, which
    connects to the cell's own address.
    """
    try:
        pairs = parse_ports(ports)
    except click.BadParameter as error:
        fail(f"port-forward: {error.message}", EXIT_USAGE)
    addresses: list[str] = []
    for text in (a.strip() for a in address.split(",")):
        if text == "localhost":  # as kubectl: both loopbacks (::1 only where there is one)
            addresses += ["127.0.0.1", "::1?"]
        elif text:
            addresses.append(text)
    if not addresses:
        fail("--address: give at least one address", EXIT_USAGE)
    kind, named = cell_or_set_named((name,))

    async def work(client: ApiClient) -> None:
        scope = (realm, space, stack)
        name = named if kind == Kind.CELL else await cell_of_set(client, scope, named)
        key = (realm, space, stack, name)
        route = object_path(Kind.CELL, key, "portforward")
        cell = await client.get(Kind.CELL, key)
        state = str(cell.status.state)
        if state != "Ready":
            fail(f"cell/{name} is not running (it is {state}): nothing to forward to")
        for remote in sorted({pair.remote for pair in pairs}):
            await _preflight(client, route, remote)
        await _forward(client, route, pairs, addresses, cell=key)

    run(ctx, work)


async def _preflight(client: ApiClient, route: str, remote: int) -> None:
    """Ask the route once without an upgrade, before listening: it checks everything (the
    caller's rights, the port, the cell's address) and then refuses for the missing
    upgrade alone; any other refusal is the command's error (ApiRequestError)."""
    try:
        await client.request("GET", route, params={"port": str(remote)})
    except ApiRequestError as error:
        if error.code == 400 and "WebSocket" in error.message:
            return
        raise


async def _forward(
    client: ApiClient,
    route: str,
    pairs: list[PortPair],
    addresses: list[str],
    *,
    cell: tuple[str, str, str, str],
) -> None:
    """Listen until a signal (return) or the cell is deleted (exit 1). An address ending in
    ``?`` is skipped when this host has no such address (``host_cannot_listen``)."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    gone: asyncio.Future[None] = loop.create_future()
    connections: set[asyncio.Task[None]] = set()
    servers: list[asyncio.Server] = []

    def serve(pair: PortPair, chosen: list[int]) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            click.echo(f"Handling connection for {chosen[0]}")
            try:
                await _connection(client, route, pair.remote, reader, writer, chosen[0])
            finally:
                connections.discard(task)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        return handle

    try:
        for pair in pairs:
            chosen = [pair.local]  # a free port (0) is the one the first address got
            for wanted in addresses:
                host = wanted.removesuffix("?")
                try:
                    server = await asyncio.start_server(
                        serve(pair, chosen), host, chosen[0], limit=CHUNK
                    )
                except OSError as error:
                    if wanted.endswith("?") and host_cannot_listen(error):
                        continue
                    where = _shown(host, chosen[0])
                    fail(f"unable to listen on {where}: {error.strerror or error}")
                servers.append(server)
                chosen[0] = server.sockets[0].getsockname()[1]
                click.echo(f"Forwarding from {_shown(host, chosen[0])} -> {pair.remote}")
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, wake, stop)
        watching = asyncio.ensure_future(_watch_gone(client, cell, gone))
        await asyncio.wait([stop, gone], return_when=asyncio.FIRST_COMPLETED)
        watching.cancel()
        if gone.done() and not stop.done():
            fail(f"cell/{cell[-1]} was deleted: lost the cell, nothing left to forward to")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for server in servers:
            server.close()
        await cancel_and_wait(*connections)


async def _watch_gone(
    client: ApiClient, cell: tuple[str, str, str, str], gone: asyncio.Future[None]
) -> None:
    """Wake ``gone`` once the cell is deleted (as kubectl ends when its pod goes)."""
    while True:
        await asyncio.sleep(CELL_POLL_SECONDS)
        try:
            await client.get(Kind.CELL, cell)
        except ApiRequestError as error:
            if error.code == 404:
                wake(gone)
                return
        except ServerUnreachable:
            continue  # for a while, maybe: the cell is not known to be gone


async def _open_stream(
    client: ApiClient, route: str, remote: int, what: str
) -> aiohttp.ClientWebSocketResponse | None:
    """The portforward stream to ``remote``; None (the reason on stderr) when refused."""
    import aiohttp  # only the commands that open a WebSocket load it

    params = [("port", str(remote))]
    try:
        socket: aiohttp.ClientWebSocketResponse = await client.websocket(route, params=params)
        return socket
    except aiohttp.WSServerHandshakeError as error:
        try:
            await upgrade_refusal(client, route, params)
            why = f"HTTP {error.status} {error.message}"
        except ApiRequestError as refused:
            why = refused.message
        click.echo(f"error: {what}: {why}", err=True)
    except ApiRequestError as busy:  # 429 still, after the client's waits: this one fails
        click.echo(f"error: {what}: {busy.message}", err=True)
    except (aiohttp.ClientError, ServerUnreachable) as error:  # this connection's alone
        click.echo(f"error: {what}: {error}", err=True)
    return None


async def _connection(
    client: ApiClient,
    route: str,
    remote: int,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    local: int,
) -> None:
    """Carry one accepted connection through a portforward stream until both ends end."""
    import aiohttp  # only the commands that open a WebSocket load it

    what = f"forwarding {local} -> {remote}"
    socket = await _open_stream(client, route, remote, what)
    if socket is None:
        return

    async def upstream() -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                await socket.send_bytes(b"\x00" + data)
        await socket.send_bytes(b"\x00")  # this side ended

    async def downstream() -> None:
        async for message in socket:
            if message.type is not aiohttp.WSMsgType.BINARY or not message.data:
                continue
            channel, payload = message.data[:1], message.data[1:]
            if channel == b"\x01":
                if not payload:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(payload)
                await writer.drain()  # the next frame waits for the local reader
            elif channel == b"\x03":
                click.echo(f"error: {what}: {json.loads(payload).get('error')}", err=True)
                raise ConnectionResetError
        raise ConnectionResetError  # the stream closed: end the connection

    tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.exception() is not None for t in done):
                break
    finally:
        try:
            await cancel_and_wait(*tasks)
        finally:
            await socket.close()
