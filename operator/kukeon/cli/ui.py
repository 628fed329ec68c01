"""``kukectl ui``: the web console in a browser, through a local port-forward.

Against the local daemon (a ``unix://`` server) it opens ``ConsoleForward`` on 127.0.0.1
and prints the URL to open, which carries a token made for this run (see
``kukeon.ui.forward`` for why a bare forward would hand the socket's rights to every local
user); against a remote kukeond (``https://``) there is nothing to forward: it prints the
console's address on that listener, where the page asks for the bearer token once.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .config import ConfigError, default_config_path, load_config, resolve_connection
from .params import IntegerRange
from .runner import EXIT_USAGE, Options, fail

if TYPE_CHECKING:
    from kukeon.ui.forward import ConsoleForward

UNIX_SCHEME = "unix://"


def _server(ctx: click.Context) -> str:
    options: Options = ctx.find_root().obj
    try:
        config = load_config(options.config_path or default_config_path())
        return resolve_connection(
            config=config,
            context=options.context,
            server=options.server,
            token=options.token,
            ca_file=options.ca_file,
        ).server
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


async def _serve(forward: ConsoleForward) -> None:
    await forward.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        click.echo(
            f"Forwarding {forward.host}:{forward.port} -> {UNIX_SCHEME}{forward.socket_path}"
        )
        click.echo("Open the web console at (the URL holds this run's token; keep it private):")
        click.echo(f"  {forward.url}")
        click.echo("Press Ctrl-C to stop.")
        await stop.wait()
    finally:
        await forward.close()


@click.command("ui")
@click.option(
    "--port",
    type=IntegerRange(0, 65535),
    default=0,
    show_default=True,
    help="The local port on 127.0.0.1 (0: any free one).",
)
@click.pass_context
def ui_command(ctx: click.Context, port: int) -> None:
    """Open the web console: forward a local port to kukeond and print the URL.

    \b
    The forward listens on 127.0.0.1 only and relays API requests only with the token
    in the printed URL (made for this run, kept by the browser tab), so other users of
    this host cannot use it. Against a remote server (https://) it prints the console's
    address there: the page asks for your bearer token once.

    \b
    Examples:
      kukectl ui
      kukectl ui --port 8800
    """
    server = _server(ctx)
    if server.startswith(("https://", "http://")):
        click.echo(f"Open the web console at {server.rstrip('/')}/ui/ and enter your token.")
        return
    if not server.startswith(UNIX_SCHEME):
        fail(f"server {server!r}: expected unix:///path or https://host:port", EXIT_USAGE)
    socket_path = Path(server.removeprefix(UNIX_SCHEME))
    if not socket_path.exists():
        fail(f"kukeond's socket {socket_path} does not exist (is kukeond running?)")
    from kukeon.ui.forward import ConsoleForward

    try:
        asyncio.run(_serve(ConsoleForward(socket_path=socket_path, port=port)))
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc}")
