"""``kukectl apply`` and ``kukectl create -f``: write manifests, parents first.

Everything is validated before anything is sent; the server then validates every document
(one refusal and nothing is written) before :class:`~kukeon.cli.manifests.Applier` creates
or updates them in order. ``create secret`` is in :mod:`kukeon.cli.secret`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import click
import yaml

from kukeon.api import AnyResource, InvalidResource, to_document
from kukeon.api.imagefields import refuse_bad_images
from kukeon.client.apiclient import ApiClient

from .manifests import Applier, Document, Reporter, server_refusals
from .params import (
    FILE_OPTION,
    RECURSIVE_OPTION,
    ManifestScope,
    dry_run_option,
    field_validation,
    load_manifest_files,
    manifest_scope,
    manifest_scope_options,
    validate_option,
)
from .runner import EXIT_SERVER, EXIT_USAGE, error_line, run

OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    type=click.Choice(["name", "yaml", "json"]),
    help="name: print each object's KIND/NAME only (for scripts: | xargs ...); yaml, json: "
    "the objects as written (one, or a List of several), as kubectl's.",
)


def _reporter(output: str | None) -> Reporter:
    objects: list[AnyResource] | None = [] if output in ("yaml", "json") else None
    names_only = output == "name"
    return Reporter(ok=click.echo, error=error_line, names_only=names_only, objects=objects)


def _print_objects(objects: Sequence[AnyResource], output: str) -> None:
    """kubectl's apply -o yaml|json: the object, or a List of them when there are several."""
    documents = [to_document(res) for res in objects]
    if not documents:
        return
    shown = (
        documents[0]
        if len(documents) == 1
        else {"apiVersion": "v1", "kind": "List", "items": documents}
    )
    if output == "json":
        click.echo(json.dumps(shown, indent=2))
    else:
        click.echo(yaml.safe_dump(shown, sort_keys=False), nl=False)


def _client_dry_run(documents: Sequence[Document], output: str | None) -> None:
    """Each document's verdict without the server: valid, or each image the server would
    refuse (its 422's causes; with nothing stored to compare, an image an object already
    has is judged too, where the server lets it through unchanged)."""
    refused = False
    for doc in documents:
        try:
            refuse_bad_images(doc.resource)
        except InvalidResource as error:
            refused = True
            for line in error.lines():
                error_line(f"{doc.source}: document {doc.position}: {line}")
        else:
            if output in ("yaml", "json"):
                continue
            click.echo(doc.name if output == "name" else f"{doc.name} valid (client dry run)")
    if refused:
        raise click.exceptions.Exit(EXIT_USAGE)
    if output in ("yaml", "json"):  # the objects as they would be sent
        _print_objects([doc.resource for doc in documents], output)


def _write(
    ctx: click.Context,
    files: Sequence[str],
    dry_run: str,
    scope: ManifestScope,
    *,
    create_only: bool,
    validate: str,
    output: str | None,
    recursive: bool,
) -> None:
    # Everything is validated before anything is sent.
    documents = load_manifest_files(files, scope=scope, validate=validate, recursive=recursive)
    if dry_run == "client":
        _client_dry_run(documents, output)
        return

    async def work(client: ApiClient) -> bool:
        client.field_validation = field_validation(validate)
        if dry_run != "server":
            # The server validates everything first; one refusal and nothing is written.
            # Its warnings are said once: by the writes, or here when nothing is written.
            warned: list[str] = []
            say, client.on_warning = client.on_warning, warned.append
            try:
                refusals = await server_refusals(client, documents, create_only=create_only)
            finally:
                client.on_warning = say
            if refusals:
                for text in warned:
                    say(text)
                for line in refusals:
                    error_line(line)
                error_line("nothing was written: the server refused the documents above")
                return False
        reporter = _reporter(output)
        applier = Applier(client=client, reporter=reporter, dry_run=dry_run == "server")
        ok = await applier.apply(documents, create_only=create_only)
        if output is not None and reporter.objects is not None:
            _print_objects(reporter.objects, output)
        return ok

    if not run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)


@click.command()
@FILE_OPTION
@RECURSIVE_OPTION
@dry_run_option
@validate_option
@OUTPUT_OPTION
@manifest_scope_options
@click.pass_context
def apply(
    ctx: click.Context,
    files: tuple[str, ...],
    recursive: bool,
    dry_run: str,
    validate: str,
    output: str | None,
    realm: str | None,
    space: str | None,
    stack: str | None,
) -> None:
    """Create or update objects from manifests, parents first.

    Every document is validated before anything is written; one invalid document aborts
    the whole apply. Missing parent realms, spaces and stacks are created with defaults.

    \b
    Examples:
      kukectl apply -f app.yaml
      kukectl apply -f app/                    # every *.yaml, *.yml, *.json in it
      kukectl apply -R -f app/                 # and in every directory below it
      kukectl apply -f - < app.yaml
      kukectl apply -f app.yaml --dry-run=server
      kukectl apply -f cell.yaml --realm prod --space web --stack site   # as kubectl's -n
      kukectl apply -f old.yaml --validate=warn   # unknown fields left out, each named
      kukectl apply -f app/ -o name | grep ^cell/ | xargs kukectl wait --for=condition=Ready
    """
    scope = manifest_scope(ctx, realm, space, stack)
    _write(
        ctx,
        files,
        dry_run,
        scope,
        create_only=False,
        validate=validate,
        output=output,
        recursive=recursive,
    )


@click.group(invoke_without_command=True)
@FILE_OPTION
@RECURSIVE_OPTION
@dry_run_option
@validate_option
@OUTPUT_OPTION
@manifest_scope_options
@click.pass_context
def create(
    ctx: click.Context,
    files: tuple[str, ...],
    recursive: bool,
    dry_run: str,
    validate: str,
    output: str | None,
    realm: str | None,
    space: str | None,
    stack: str | None,
) -> None:
    """Create objects from manifests; an object that already exists is an error.

    `kukectl create secret generic NAME ...` creates a Secret from literals and files.

    \b
    Examples:
      kukectl create -f app.yaml
      kukectl create secret generic api --realm prod --from-literal token=s3cr3t
    """
    if ctx.invoked_subcommand is None:
        scope = manifest_scope(ctx, realm, space, stack)
        _write(
            ctx,
            files,
            dry_run,
            scope,
            create_only=True,
            validate=validate,
            output=output,
            recursive=recursive,
        )
