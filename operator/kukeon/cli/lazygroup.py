"""A click group whose commands are imported when first asked for.

kukectl runs once per command typed: importing every command module (and what they
import: pydantic models, yaml, tar, terminals) to run one of them was most of a ``kukectl
get``'s time. Commands are registered by where they live, ``"module:attribute"`` in the
group's package, and a module is imported only when click asks for its command: to run
it, to complete it, or to list the commands with their help (``kukectl --help``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click


class LazyGroup(click.Group):
    """A group whose commands are ``name -> "module:attribute"`` until first used.

    ``subcommands`` adds commands to a loaded command that is itself a group, by path
    (``("create", "secret")``): one module may extend another's group without importing it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.package = ""
        self.homes: dict[str, str] = {}
        self.subcommands: dict[tuple[str, ...], str] = {}

    def register(
        self,
        package: str,
        homes: Mapping[str, str],
        subcommands: Mapping[tuple[str, ...], str] | None = None,
    ) -> None:
        """Commands of ``package``'s modules: ``{"get": "get:get"}`` names ``get`` of
        ``package.get``; each is imported on first use."""
        self.package = package
        self.homes.update(homes)
        self.subcommands.update(subcommands or {})

    def _import(self, home: str) -> click.Command:
        module, _, attribute = home.partition(":")
        command = getattr(importlib.import_module(f"{self.package}.{module}"), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{home} is not a click command")
        return command

    def _load(self, name: str) -> click.Command:
        command = self._import(self.homes[name])
        for path, home in self.subcommands.items():
            if path[:-1] == (name,) and isinstance(command, click.Group):
                command.add_command(self._import(home), path[-1])
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.homes})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.homes:
            self.add_command(self._load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """click's, with "Did you mean" drawn from every command, loaded or not."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            raise click.exceptions.NoSuchCommand(
                str(args[0]), possibilities=self.list_commands(ctx), ctx=ctx
            ) from exc

    def invoke(self, ctx: click.Context) -> Any:
        """click's, with a subcommand's option error pointed at that subcommand: click's
        parser raises some without their context ("Option '--tail' requires an argument"),
        which then said "see 'kukectl --help'", where the option is not."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            name = ctx.invoked_subcommand
            command = self.get_command(ctx, name) if exc.ctx is None and name else None
            if command is not None:
                exc.ctx = click.Context(command, info_name=name, parent=ctx)
            raise
