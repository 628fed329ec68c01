"""``kukectl config``: the contexts of ~/.config/kukeon/config.yaml (which server, token and
CA to use); the file's model and how a connection is chosen are in :mod:`kukeon.cli.config`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from kukeon.client.apiclient import ServerAddressError, parse_server

from .config import ConfigError, default_config_path, load_config
from .configfile import Context, KukectlConfig, save_config
from .runner import EXIT_USAGE, Options, fail, warning_line
from .tables import format_rows


def _config_path(ctx: click.Context) -> Path:
    options: Options = ctx.find_root().obj
    return options.config_path or default_config_path()


def _load_or_fail(path: Path) -> KukectlConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def _save_or_fail(path: Path, config: KukectlConfig) -> None:
    try:
        save_config(path, config)
    except ConfigError as exc:  # the file cannot be written there: exit 1, as kubectl
        fail(str(exc))


@click.group("config")
def config_group() -> None:
    """Contexts of ~/.config/kukeon/config.yaml: which server, token and CA to use.

    \b
    Examples:
      kukectl config set-context prod --server https://n1:9443 --token-file t --current
      kukectl config get-contexts
      kukectl config use-context prod
      kukectl config current-context
      kukectl config delete-context old
    """


def _load_with_context(ctx: click.Context, name: str) -> tuple[Path, KukectlConfig]:
    """The config file's path and contents, which must hold context ``name`` (else exit 2)."""
    path = _config_path(ctx)
    config = _load_or_fail(path)
    if config.context(name) is None:
        known = ", ".join(c.name for c in config.contexts) or "none"
        fail(f"context {name!r} not found in {path} (known: {known})", EXIT_USAGE)
    return path, config


@config_group.command("view")
@click.option(
    "-o",
    "--output",
    default="yaml",
    help="yaml (default), json or jsonpath=TEMPLATE, as kubectl's config view.",
)
@click.option("--minify", is_flag=True, help="Only the current context.")
@click.pass_context
def config_view(ctx: click.Context, output: str, minify: bool) -> None:
    """Print the config file (tokens masked)."""
    from .jsonpath import JsonPathError, render_template

    if output not in ("yaml", "json") and not output.startswith("jsonpath="):
        fail(f"-o {output!r}: expected yaml, json or jsonpath=TEMPLATE", EXIT_USAGE)
    config = _load_or_fail(_config_path(ctx))
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    if minify:  # kubectl's: what the current context uses, alone
        if not config.current_context:
            fail("current-context must exist in order to minify", EXIT_USAGE)
        document["contexts"] = [
            c for c in document.get("contexts", []) if c["name"] == config.current_context
        ]
    for context in document.get("contexts", []):
        if "token" in context:
            context["token"] = "REDACTED"
    if output == "json":
        click.echo(json.dumps(document, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(document, sort_keys=False).rstrip())
    else:
        try:
            click.echo(render_template(output.partition("=")[2], document), nl=False)
        except JsonPathError as exc:
            fail(f"-o jsonpath: {exc}", EXIT_USAGE)


@config_group.command("get-contexts")
@click.argument("names", nargs=-1)
@click.option("-o", "--output", type=click.Choice(["name"]), help="name: the names alone.")
@click.option("--no-headers", is_flag=True, help="The table without its header.")
@click.pass_context
def config_get_contexts(
    ctx: click.Context, names: tuple[str, ...], output: str | None, no_headers: bool
) -> None:
    """List the contexts (or those named); * marks the current one."""
    path = _config_path(ctx)
    config = _load_or_fail(path)
    missing = [name for name in names if config.context(name) is None]
    chosen = [c for c in config.contexts if not names or c.name in names]
    if output == "name":
        for context in chosen:
            click.echo(context.name)
    else:
        rows = [] if no_headers else [["CURRENT", "NAME", "SERVER", "REALM", "SPACE", "STACK"]]
        for context in chosen:
            current = "*" if context.name == config.current_context else ""
            scope = [context.realm or "", context.space or "", context.stack or ""]
            rows.append([current, context.name, context.server, *scope])
        if rows:
            click.echo("\n".join(format_rows(rows)))
    if missing:  # kubectl's: each one named, exit 1, after those found
        fail("\n".join(f"context {name} not found in {path}" for name in missing))


@config_group.command("current-context")
@click.pass_context
def config_current_context(ctx: click.Context) -> None:
    """Print the current context's name (exit 1 when none is set)."""
    config = _load_or_fail(_config_path(ctx))
    if not config.current_context:
        fail("current-context is not set")
    click.echo(config.current_context)


@config_group.command("use-context")
@click.argument("name")
@click.pass_context
def config_use_context(ctx: click.Context, name: str) -> None:
    """Make NAME the current context."""
    path, config = _load_with_context(ctx, name)
    config.current_context = name
    _save_or_fail(path, config)
    click.echo(f"switched to context {name!r}")


@config_group.command("rename-context")
@click.argument("old")
@click.argument("new")
@click.pass_context
def config_rename_context(ctx: click.Context, old: str, new: str) -> None:
    """Rename context OLD to NEW (the current context stays current under its new name)."""
    path, config = _load_with_context(ctx, old)
    if config.context(new) is not None:
        fail(f"cannot rename the context {old!r}, the context {new!r} already exists in {path}")
    existing = config.context(old)
    assert existing is not None  # _load_with_context checked it
    try:
        renamed = Context.model_validate({**existing.model_dump(), "name": new})
    except ValidationError as exc:
        fail(f"context {new!r}: {exc.errors()[0]['msg']}", EXIT_USAGE)
    config.contexts = [renamed if c.name == old else c for c in config.contexts]
    if config.current_context == old:
        config.current_context = new
    _save_or_fail(path, config)
    click.echo(f"context {old!r} renamed to {new!r}")


@config_group.command("delete-context")
@click.argument("name")
@click.pass_context
def config_delete_context(ctx: click.Context, name: str) -> None:
    """Remove context NAME (the current one too: then none is current, as kubectl)."""
    path, config = _load_with_context(ctx, name)
    config.contexts = [c for c in config.contexts if c.name != name]
    was_current = config.current_context == name
    if was_current:
        config.current_context = None
    _save_or_fail(path, config)
    if was_current:
        warning_line(
            "this removed the current context; kukectl config use-context NAME picks another"
        )
    click.echo(f"deleted context {name} from {path}")


@config_group.command("set-context")
@click.argument("name", required=False)
@click.option("--server", "context_server", help="unix:///path or https://host:port.")
@click.option("--token", "context_token", help="Bearer token.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--certificate-authority", "context_ca", type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "--realm",
    "context_realm",
    help="The realm of commands that give no --realm (kubectl's --namespace); '' unsets it.",
)
@click.option(
    "--space", "context_space", help="The space of commands that give no --space; '' unsets it."
)
@click.option(
    "--stack", "context_stack", help="The stack of commands that give no --stack; '' unsets it."
)
@click.option(
    "--current",
    is_flag=True,
    help="Also make it the current context; without NAME: change the current context "
    "(kubectl's set-context --current).",
)
@click.pass_context
def config_set_context(
    ctx: click.Context,
    name: str | None,
    context_server: str | None,
    context_token: str | None,
    token_file: Path | None,
    context_ca: Path | None,
    current: bool,
    context_realm: str | None,
    context_space: str | None,
    context_stack: str | None,
) -> None:
    """Create or change a context; options not given keep their value.

    A new context without --server connects as the current context does (its server,
    token and CA, those not given); with --server it takes nothing of it.

    \b
    --realm, --space and --stack set where commands act when they give none (a manifest's
    own parents still win), as kubectl's context namespace:
      kukectl config set-context team --realm shop --space web --current
      kukectl get cells                  # the cells of shop/web/default
      kukectl config set-context --current --space api   # kubectl's form
    """
    if context_token is not None and token_file is not None:
        fail("give --token or --token-file, not both", EXIT_USAGE)
    if context_server is not None:
        try:
            parse_server(context_server)
        except ServerAddressError as exc:
            fail(str(exc), EXIT_USAGE)
    path = _config_path(ctx)
    config = _load_or_fail(path)
    if name is None:
        if not current:
            fail("give the context's NAME, or --current to change the current one", EXIT_USAGE)
        if not config.current_context:
            fail("--current: no context is current (kukectl config use-context NAME)", EXIT_USAGE)
        name = config.current_context
    existing = config.context(name)
    updates = {
        "server": context_server,
        "token": context_token,
        "token_file": token_file.resolve() if token_file else None,
        "certificate_authority": context_ca.resolve() if context_ca else None,
    }
    given = {key: value for key, value in updates.items() if value is not None}
    fields, inherited = _starting_fields(config, name, given)
    fields.update(given)
    scope = {"realm": context_realm, "space": context_space, "stack": context_stack}
    fields.update({level: value or None for level, value in scope.items() if value is not None})
    try:
        context = Context.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        fail(f"context {name!r}: {problems}", EXIT_USAGE)
    config.contexts = [c for c in config.contexts if c.name != name] + [context]
    if current or config.current_context is None:
        config.current_context = name
    _save_or_fail(path, config)
    how = f" (the server and credentials of context {inherited!r})" if inherited else ""
    click.echo(f"context {name!r} {'modified' if existing else 'created'}{how}")
    _note_overrides(ctx.find_root().obj, context)


def _note_overrides(options: Options, context: Context) -> None:
    """Say which connection the context will not get: ``--server``, ``--token`` and
    ``--certificate-authority`` before the command, and ``KUKEON_SERVER``, ``KUKEON_TOKEN``
    and ``KUKEON_CA``, win over every context but are never written into one (kubectl
    never writes its overrides into the kubeconfig either). Without this, a context made
    while ``KUKEON_SERVER`` named a remote server silently held another server, and acted
    there the day the variable was gone."""
    env = os.environ
    secret = "(a token)"
    overrides = (
        ("server", "--server", options.server, "KUKEON_SERVER", context.server),
        ("token", "--token", options.token, "KUKEON_TOKEN", context.token),
        (
            "certificate authority",
            "--certificate-authority",
            options.ca_file,
            "KUKEON_CA",
            context.certificate_authority,
        ),
    )
    for field, flag, flagged, variable, stored in overrides:
        source, value = (flag, str(flagged)) if flagged else (variable, env.get(variable))
        if not value or value == (str(stored) if stored is not None else None):
            continue
        shown, held = (secret, "") if field == "token" else (value, f" ({stored or 'none'})")
        warning_line(
            f"{source}={shown} overrides the {field}{held} of context {context.name!r} in "
            f"every command while it is given, but is not written into the context (kubectl "
            f"writes none of its overrides either): set-context {context.name} "
            f"{'--token-file FILE' if field == 'token' else flag + ' ' + value} stores it"
        )


_CREDENTIALS = ("token", "token_file")
_CONNECTION = ("server", *_CREDENTIALS, "certificate_authority")


def _starting_fields(
    config: KukectlConfig, name: str, given: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """What a context starts from before the options given: its own fields when it exists;
    for a new one without --server, the current context's server, token and CA (those not
    given), and that context's name: a context carries its server, and one made for another
    realm of the same server would otherwise talk to the local socket. With --server
    nothing is taken, so no token goes to a server it was not made for."""
    existing = config.context(name)
    if existing is not None:
        fields = existing.model_dump()
        if given.keys() & set(_CREDENTIALS):  # a new token replaces the other kind too
            fields.update(dict.fromkeys(_CREDENTIALS))
        return fields, None
    fields = {"name": name}
    current = config.context(config.current_context) if config.current_context else None
    if current is None or "server" in given:
        return fields, None
    taken = set(_CONNECTION) - given.keys()
    if given.keys() & set(_CREDENTIALS):
        taken -= set(_CREDENTIALS)
    fields.update({key: value for key, value in current.model_dump().items() if key in taken})
    return fields, current.name
