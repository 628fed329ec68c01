"""Secrets from the command line: ``kukectl create secret generic`` (values from literals
and files, sent once and never shown again) and ``kukectl secret rotate-key`` (encryption
at rest under a new key)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from kukeon.api import API_VERSION, InvalidResource, Kind, parse_resource
from kukeon.client.apiclient import ApiClient
from kukeon.client.paths import API_ROOT

from .params import ScopeOption, dry_run_option
from .runner import EXIT_SERVER, EXIT_USAGE, error_line, fail, run


@click.group("secret")
def create_secret() -> None:
    """Create a Secret (values are sent once and never shown again)."""


def secret_values(literals: Sequence[str], sources: Sequence[str]) -> dict[str, bytes]:
    """The values of ``--from-literal KEY=VALUE`` and ``--from-file [KEY=]PATH`` by key."""
    values: dict[str, bytes] = {}

    def add(key: str, value: bytes, origin: str) -> None:
        if key in values:
            fail(f"key {key!r} is given twice ({origin})", EXIT_USAGE)
        values[key] = value

    for literal in literals:
        key, sep, value = literal.partition("=")
        if not sep or not key:
            fail(f"--from-literal {literal.split('=')[0]!r}...: must be KEY=VALUE", EXIT_USAGE)
        add(key, value.encode(), "--from-literal")
    for source in sources:
        key, sep, path = source.partition("=")
        if not sep:
            key, path = Path(source).name, source
        try:
            add(key, Path(path).read_bytes(), f"--from-file {path}")
        except OSError as exc:
            fail(f"--from-file {path}: {exc.strerror or exc}", EXIT_USAGE)
    return values


@create_secret.command("generic")
@click.argument("name")
@click.option(
    "--from-literal",
    "literals",
    multiple=True,
    help="KEY=VALUE (repeatable). The value ends up in your shell history: prefer files.",
)
@click.option(
    "--from-file",
    "sources",
    multiple=True,
    help="KEY=PATH or PATH (the key is the file's name); repeatable.",
)
@click.option(
    "--realm", cls=ScopeOption, required=True, help="Realm of the Secret (else the context's)."
)
@click.option(
    "--space", cls=ScopeOption, help="Narrow the Secret to a space of the realm (or the context's)."
)
@click.option(
    "--stack",
    cls=ScopeOption,
    help="Narrow the Secret to a stack of the space (needs --space; or the context's).",
)
@click.option("-l", "--label", "labels", multiple=True, help="A label, key=value (repeatable).")
@dry_run_option
@click.pass_context
def create_secret_generic(
    ctx: click.Context,
    name: str,
    literals: tuple[str, ...],
    sources: tuple[str, ...],
    realm: str,
    space: str | None,
    stack: str | None,
    labels: tuple[str, ...],
    dry_run: str,
) -> None:
    """Create a Secret NAME from --from-literal and --from-file values, as kubectl does."""
    values = secret_values(literals, sources)
    metadata: dict[str, Any] = {"name": name, "realm": realm}
    if space:
        metadata["space"] = space
    if stack:
        metadata["stack"] = stack
    if labels:
        metadata["labels"] = dict(label.partition("=")[::2] for label in labels)
    document = {
        "apiVersion": API_VERSION,
        "kind": Kind.SECRET.value,
        "metadata": metadata,
        "data": {key: base64.b64encode(value).decode() for key, value in values.items()},
    }
    try:
        secret = parse_resource(document)
    except InvalidResource as exc:
        for line in exc.lines():
            error_line(line)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    if dry_run == "client":
        click.echo(f"secret/{name} created (client dry run)")
        return

    async def work(client: ApiClient) -> None:
        await client.create(secret, dry_run=dry_run == "server")
        click.echo(f"secret/{name} created" + (" (server dry run)" if dry_run == "server" else ""))

    run(ctx, work)


@click.group("secret")
def secret_group() -> None:
    """Secrets' encryption at rest.

    \b
    Examples:
      kukectl secret rotate-key                # seal every Secret with a new key
      kukectl secret rotate-key --prune        # and drop the keys no Secret uses
    """


@secret_group.command("rotate-key")
@click.option(
    "--key-id",
    help="Make this key of kukeond's key file current (a fleet: add it to every node's "
    "file first); default: generate a new key.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Afterwards remove the keys no stored value uses from the key file.",
)
@click.pass_context
def rotate_key(ctx: click.Context, key_id: str | None, prune: bool) -> None:
    """Seal every Secret and registry password again under a new key (admin only)."""
    body: dict[str, Any] = {"prune": prune}
    if key_id:
        body["keyId"] = key_id

    async def work(client: ApiClient) -> Any:
        return await client.request("POST", f"{API_ROOT}/encryption/rotate-key", body=body)

    answer = run(ctx, work)
    click.echo(
        f"encryption key {answer['currentKeyId']} is current (was {answer['previousKeyId']}); "
        f"{answer['documentsResealed']} document(s) sealed again"
    )
    for failure in answer.get("failed") or []:
        error_line(f"not sealed again: {failure}")
    if answer.get("removedKeyIds"):
        click.echo(f"removed key(s): {', '.join(answer['removedKeyIds'])}")
    if answer.get("failed"):
        raise click.exceptions.Exit(EXIT_SERVER)
