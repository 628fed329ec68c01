"""docs/kukectl.md names every kukectl command and every option of it: a new flag cannot
land undocumented."""

from __future__ import annotations

from pathlib import Path

import click

from kukeon.cli.main import cli

DOC = (Path(__file__).resolve().parents[3] / "docs" / "kukectl.md").read_text()


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        found: list[tuple[tuple[str, ...], click.Command]] = [(path, command)] if path else []
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            found += _commands(sub, (*path, name))
        return found
    return [(path, command)]


def test_every_command_is_documented() -> None:
    missing = [" ".join(path) for path, _ in _commands(cli) if path[-1] not in DOC]
    assert not missing, "\n".join(missing)


def test_every_option_is_documented() -> None:
    missing = []
    for path, command in [((), cli), *_commands(cli)]:
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden or "--help" in param.opts:
                continue
            names = [n for n in (*param.opts, *param.secondary_opts) if n.startswith("--")]
            if not any(f"{name}" in DOC for name in names or param.opts):
                missing.append(f"{' '.join(('kukectl', *path))} {'/'.join(param.opts)}")
    assert not missing, "\n".join(missing)
