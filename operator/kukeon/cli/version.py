"""``kukectl version``: the client's version, and the server's when it can be reached."""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

import kukeon

from .runner import run


@click.command()
@click.option("--client", "client_only", is_flag=True, help="Only the client's version.")
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text")
@click.pass_context
def version(ctx: click.Context, client_only: bool, output: str) -> None:
    """Show the client's and the server's versions.

    \b
    Examples:
      kukectl version
      kukectl version --client -o json
    """
    info: dict[str, Any] = {"clientVersion": {"gitVersion": kukeon.__version__}}
    if output == "text":
        # The client's version is printed even when the server cannot be reached.
        click.echo(f"Client Version: {kukeon.__version__}")
    if not client_only:
        info["serverVersion"] = run(ctx, lambda client: client.version())
    if output == "json":
        click.echo(json.dumps(info, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(info, sort_keys=False).rstrip())
    elif not client_only:
        click.echo(f"Server Version: {info['serverVersion'].get('gitVersion', 'unknown')}")
