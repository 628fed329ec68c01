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
        accept_short_equals(command)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, split_short_equals(self, args))

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


def _valued_options(command: click.Command) -> tuple[set[str], set[str]]:
    """The short options (``-o``) of ``command`` that take a value, and all of them (long
    ones too): the argument after one of these is its value, never an option."""
    valued = {
        opt
        for param in command.params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for opt in param.opts
    }
    return {opt for opt in valued if len(opt) == 2}, valued


def split_short_equals(command: click.Command, args: list[str]) -> list[str]:
    """kubectl's (pflag's) ``-o=json``: a short option's value after ``=``. click reads
    ``-o=json`` as the value ``=json``, so ``get -o=jsonpath=...``, ``-l=app=web`` and
    ``logs -c=main``, as kubectl's documentation writes them, failed. Each such argument
    is split in two, ``-o`` and ``json``, up to ``--``; a value of an option (``-p
    -o=x``) is left alone, as is everything after a group's command name (that command
    splits its own)."""
    short, valued = _valued_options(command)
    out: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        position += 1
        if arg == "--":
            return [*out, arg, *args[position:]]
        if arg[:2] in short and arg[2:3] == "=" and not arg.startswith("--"):
            out += [arg[:2], arg[3:]]
            continue
        out.append(arg)
        if arg in valued and position < len(args):
            out.append(args[position])  # this option's value, whatever it looks like
            position += 1
        elif isinstance(command, click.Group) and not arg.startswith("-"):
            return [*out, *args[position:]]
    return out


def accept_short_equals(command: click.Command) -> None:
    """``command`` (and, for a group, each of its commands) reads ``-o=json`` as kubectl
    does (``split_short_equals``)."""
    if isinstance(command, LazyGroup) or getattr(command, "_short_equals", False):
        return  # a LazyGroup splits its own arguments
    parse_args = command.parse_args

    def split_then_parse(ctx: click.Context, args: list[str]) -> list[str]:
        return parse_args(ctx, split_short_equals(command, args))

    setattr(command, "parse_args", split_then_parse)  # noqa: B010 - this instance's only
    setattr(command, "_short_equals", True)  # noqa: B010
    for sub in command.commands.values() if isinstance(command, click.Group) else ():
        accept_short_equals(sub)
