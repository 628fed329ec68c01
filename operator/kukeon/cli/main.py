"""``kukectl``: the root command, its options, and every command registered on it.

This is the one module that knows all of kukectl: each command lives in the module of its
concept and imports only the shared helpers (:mod:`~kukeon.cli.runner`,
:mod:`~kukeon.cli.params`, :mod:`~kukeon.cli.output`), never this module; here they are
added to :func:`cli`. :func:`main` is what the console script runs (through
:mod:`kukeon.cli.entry`, which answers shell completion without importing this).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

import kukeon

from .lazygroup import LazyGroup
from .params import CONTEXT, DURATION, SERVER, TOKEN
from .runner import EXIT_SERVER, EXIT_USAGE, Options, error_line


def _show_version(ctx: click.Context, wanted: bool) -> None:
    """``--version``: click's own line, with the version looked up only when asked."""
    if wanted and not ctx.resilient_parsing:
        click.echo(f"kukectl, version {kukeon.__version__}")
        ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
# An explicitly empty --context, --server or --token is refused (exit 2, naming the option),
# not read as "not given": that fell back to the environment or the config file, so
# `--server "$UNSET"` talked to whatever KUKEON_SERVER or the current context named.
@click.option("--context", type=CONTEXT, help="Context of the config file to use.")
@click.option(
    "--server",
    "-s",
    type=SERVER,
    help="unix:///path/to/kukeond.sock or https://host:port (also KUKEON_SERVER).",
)
@click.option("--token", type=TOKEN, help="Bearer token for an https server (also KUKEON_TOKEN).")
@click.option(
    "--certificate-authority",
    "ca_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CA file that signed the server's certificate (also KUKEON_CA).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default ~/.config/kukeon/config.yaml, also KUKEON_CONFIG).",
)
@click.option(
    "--request-timeout",
    type=DURATION,
    default="30s",
    show_default=True,
    help="How long one request may take (0: no limit, as kubectl's).",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _show_version(ctx, value),
    help="Show the version and exit.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    context: str | None,
    server: str | None,
    token: str | None,
    ca_file: Path | None,
    config_path: Path | None,
    request_timeout: float,
) -> None:
    """kukectl controls kukeon: realms, spaces, stacks and cells on your hosts."""
    ctx.obj = Options(context, server, token, ca_file, config_path, request_timeout)


# Every command, by where it lives ("module:attribute" in kukeon.cli), one line each; a
# module is imported only when its command runs, completes or is listed by --help.
COMMANDS = {
    # objects: write, read, change, remove
    "apply": "apply:apply",
    "create": "apply:create",
    "get": "get:get",
    "describe": "get:describe_command",
    "edit": "edit:edit",
    "diff": "diff:diff",
    "label": "metadata:label",
    "annotate": "metadata:annotate",
    "patch": "metadata:patch",
    "delete": "delete:delete",
    "wait": "wait:wait",
    "explain": "explain:explain",
    "api-resources": "apiresources:api_resources",
    "events": "events:events_command",
    "secret": "secret:secret_group",
    # what runs
    "run": "run:run_command",
    "start": "lifecycle:start",
    "stop": "lifecycle:stop",
    "restart": "lifecycle:restart",
    "kill": "lifecycle:kill",
    "logs": "logs:logs",
    "exec": "sessions:exec_command",
    "attach": "sessions:attach",
    "cp": "transfer:cp_command",
    "port-forward": "portforward:port_forward",
    "image": "images:image",
    "top": "top:top",
    "ui": "ui:ui_command",
    "cordon": "nodes:cordon",
    "uncordon": "nodes:uncordon",
    "drain": "nodes:drain",
    "scale": "cellsets:scale",
    "rollout": "cellsets:rollout",
    "set": "setcommands:set_group",
    # kukectl itself
    "config": "config_commands:config_group",
    "version": "version:version",
    "completion": "completion_command:completion",
}
# Commands added to a group of another module: (group, name) -> "module:attribute".
SUBCOMMANDS: dict[tuple[str, ...], str] = {
    ("create", "secret"): "secret:create_secret",
    ("create", "realm"): "createobjects:create_realm",
    ("create", "space"): "createobjects:create_space",
    ("create", "stack"): "createobjects:create_stack",
    ("create", "cellset"): "createobjects:create_cellset",
}
cli.register(__package__ or "kukeon.cli", COMMANDS, SUBCOMMANDS)


_IN_SCOPE = (
    "kukeon has no namespaces: an object is in a realm, a space and a stack (--realm R "
    "--space S --stack ST, or a context's: kukectl config set-context --current --realm R)"
)
_NAMESPACE_OPTIONS = {
    "-n": _IN_SCOPE,
    "--namespace": _IN_SCOPE,
    "--all-namespaces": "kukeon has no namespaces: -A lists across every realm",
}
"""kubectl's options typed by habit, and what they are here (click suggested nothing for
-n, and '--space' for --namespace and --all-namespaces)."""
_DELETE_FORCE = (
    "a cell's containers are always stopped before it is removed (kubectl's --force skips "
    "that wait); --grace-period 0 kills them at once"
)


_RUN_DETACHED = (
    "kukectl run returns once the cell is created, as docker's run -d (-i, --rm or --wait "
    "stay with it)"
)
_HABITS = {
    ("kukectl delete", "--force"): _DELETE_FORCE,
    ("kukectl run", "-d"): _RUN_DETACHED,
    ("kukectl run", "--detach"): _RUN_DETACHED,
}
"""kubectl's and docker's options one command lacks, by (command, option)."""


def _kubectl_option(exc: click.NoSuchOption, where: str) -> str | None:
    """What kubectl's option, typed by habit, is here; None for any other."""
    said = _NAMESPACE_OPTIONS.get(exc.option_name) or _HABITS.get((where, exc.option_name))
    # Not click's "Did you mean '--space'?": a namespace is nearer a realm.
    return f"No such option '{exc.option_name}': {said}" if said else None


_ROOT_VALUE_OPTIONS = (
    "--context",
    "--server",
    "-s",
    "--token",
    "--certificate-authority",
    "--config",
    "--request-timeout",
)
"""The root's options that take a value: kubectl takes its global flags (`--context`,
`--server`, `--token`, `--request-timeout`, ...) after the command as well."""


def _command_at(args: Sequence[str]) -> int:
    """Where the command starts: after the root's options given before it."""
    at = 0
    while at < len(args) and args[at].startswith("-") and args[at] != "--":
        at += 2 if args[at] in _ROOT_VALUE_OPTIONS else 1
    return at


def _given_as(word: str, name: str) -> bool:
    """``word`` is root option ``name`` with its value in it (``--token=x``, ``-sunix://``)."""
    joined = name + "=" if name.startswith("--") else name
    return word.startswith(joined) and len(word) > len(name)


def _root_option_first(args: list[str], name: str) -> list[str] | None:
    """``args`` with root option ``name``, given after the command (that does not have it),
    moved just before the command (after any given there: the later one wins, as kubectl's);
    None when it is not there (not a root option, or only after ``--``, the container's)."""
    if name not in _ROOT_VALUE_OPTIONS:
        return None
    start = _command_at(args)
    for at in range(start + 1, len(args)):
        word = args[at]
        if word == "--":
            return None
        if word == name and at + 1 < len(args):
            taken = args[at : at + 2]
        elif _given_as(word, name):
            taken = [word]
        else:
            continue
        rest = args[:at] + args[at + len(taken) :]
        return rest[:start] + taken + rest[start:]
    return None


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
"""What kubectl's boolean flags take after `=` (Go's strconv.ParseBool)."""


def _bool_option(ctx: click.Context | None, name: str, args: list[str]) -> click.Option | None:
    """The boolean flag ``name`` of the command ``ctx`` parses, if it has one: for a group,
    of its subcommand named in ``args``, as click raises a subcommand's option error with
    its group's context (`rollout status --watch=false` was refused as 'does not take a
    value')."""
    if ctx is None:
        return None
    command = ctx.command
    for word in args:
        if not isinstance(command, click.Group):
            break
        command = command.get_command(ctx, word) or command
    for param in command.params:
        named = name in param.opts or name in param.secondary_opts
        if named and isinstance(param, click.Option) and param.is_bool_flag:
            return param
    return None


def _bool_flag_spelled(args: list[str], exc: click.BadOptionUsage) -> list[str] | None:
    """``args`` with a boolean flag given a value as kubectl's take one (`--wait=false`,
    `--overwrite=true`: 'does not take a value' here) spelled as click reads it: the flag
    (`--overwrite`), its negative (`--no-wait`), or nothing for a flag off by default
    given false. None when the error is another."""
    option = _bool_option(exc.ctx, exc.option_name, args)
    if option is None:
        return None
    for at, word in enumerate(args):
        if word == "--":
            return None
        flag, equals, value = word.partition("=")
        if flag != exc.option_name or not equals:
            continue
        spelled = _flag_words(option, flag, value, exc.ctx)
        return None if spelled is None else args[:at] + spelled + args[at + 1 :]
    return None


def _short_bool_flag_spelled(args: list[str], exc: click.NoSuchOption) -> list[str] | None:
    """``args`` with a short boolean flag given a value as pflag takes one (`-w=false`:
    click reads the flag, then an option '-=') spelled as click reads it; None when the
    error is another."""
    if exc.option_name != "-=":
        return None
    for at, word in enumerate(args):
        if word == "--":
            return None
        flag, equals, value = word.partition("=")
        if not equals or len(flag) != 2 or flag[0] != "-" or flag == "--":
            continue
        option = _bool_option(exc.ctx, flag, args)
        if option is not None:
            spelled = _flag_words(option, flag, value, exc.ctx)
            return None if spelled is None else args[:at] + spelled + args[at + 1 :]
    return None


def _flag_words(
    option: click.Option, flag: str, value: str, ctx: click.Context | None
) -> list[str] | None:
    """The words click reads for boolean ``flag`` given ``value``: the flag, its negative,
    or nothing for a flag off by default given false; None when none says it."""
    if value not in _TRUE | _FALSE:
        message = f"{value!r} is not true or false (a flag: {flag}, {flag}=true or =false)"
        raise click.BadOptionUsage(flag, message, ctx=ctx)
    on = (value in _TRUE) == (flag in option.opts)  # the flag's own value
    if on:
        return [option.opts[0]]
    if option.secondary_opts:
        return [option.secondary_opts[0]]
    if option.default is not True:  # off unless given (click's default: unset)
        return []
    return None


def _invoke(args: list[str]) -> object:
    """Run the command line; a root option after the command (`get cells --context prod`,
    `logs web --request-timeout 5s`: said 'No such option') is moved before it first, a
    flag given kubectl's `=true|false` (`delete --wait=false`) spelled as click reads it."""
    while True:
        # Both are raised while parsing, before any command ran (a group's callback only
        # reads its options): the line is parsed again as the root or the command reads it.
        try:
            return cli.main(args=args, prog_name="kukectl", standalone_mode=False)
        except click.NoSuchOption as exc:
            moved = _root_option_first(args, exc.option_name)
            if moved is None:
                moved = _short_bool_flag_spelled(args, exc)
            if moved is None:
                raise
            args = moved
        except click.BadOptionUsage as exc:
            spelled = _bool_flag_spelled(args, exc)
            if spelled is None:
                raise
            args = spelled


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``kukectl``: every failure is one ``error:`` line (Click's
    usage errors included) and the documented exit code (1 server, 2 usage)."""
    try:
        code = _invoke(list(argv) if argv is not None else sys.argv[1:])
    except click.exceptions.NoArgsIsHelpError as exc:
        # `kukectl`, `kukectl config`, `kukectl rollout` alone: their help on stdout and
        # exit 0, as kubectl's; it was the whole help as one "error:" line, exit 2.
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "kukectl"
        # Click lists a missing argument's choices one per line, tab-indented ("Choose
        # from:\n\tbash,\n\tzsh"): one line, as every error of kukectl's.
        message = exc.format_message().replace("\n\t", " ")
        if isinstance(exc, click.NoSuchOption):
            message = _kubectl_option(exc, where) or message
        error_line(f"{message} (see '{where} --help')")
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        error_line(exc.format_message())
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        sys.exit(130)
    except Exception as exc:  # never a traceback
        error_line(f"unexpected failure: {type(exc).__name__}: {exc}")
        sys.exit(EXIT_SERVER)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
