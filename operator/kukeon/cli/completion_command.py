"""``kukectl completion SHELL``: the script a shell sources so that TAB asks kukectl; the
answers themselves come from :mod:`kukeon.cli.completion`."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from .runner import EXIT_USAGE, fail


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script.

    \b
    Examples:
      source <(kukectl completion bash)
      kukectl completion zsh > "${fpath[1]}/_kukectl"
      kukectl completion fish > ~/.config/fish/completions/kukectl.fish
    """
    completion_class = get_completion_class(shell)
    if completion_class is None:  # pragma: no cover - the three shells are built into click
        fail(f"no completion support for {shell}", EXIT_USAGE)
    root = ctx.find_root().command
    script = completion_class(root, {}, "kukectl", "_KUKECTL_COMPLETE").source()
    click.echo(script)
