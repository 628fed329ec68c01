"""`kukectl diff -f`: what `apply -f` would change, as the server would store it.

Each document is sent as a server-side dry run (validated, admitted and defaulted exactly as
the write would be) and the result is compared with what is stored, over what a manifest
owns: labels, annotations and spec. Exit codes as kubectl's: 0 no difference, 1 some, 2 a
manifest that does not load, 3 the server refused something.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import click
import yaml

from kukeon.api import AnyResource, Kind, key_of, to_document
from kukeon.client.apiclient import ApiClient, ApiRequestError

from .manifests import apply_creation, apply_order, apply_update
from .params import (
    FILE_OPTION,
    RECURSIVE_OPTION,
    load_manifest_files,
    manifest_scope,
    manifest_scope_options,
)
from .runner import api_error_text, error_line, run
from .tables import kind_slug

EXIT_DIFFERENT = 1
EXIT_REFUSED = 3


def owned_view(res: AnyResource | None) -> str:
    """The part of an object a manifest owns, as YAML (empty for an absent object)."""
    if res is None:
        return ""
    document = to_document(res)
    metadata = document.get("metadata", {})
    view: dict[str, Any] = {
        "apiVersion": document.get("apiVersion"),
        "kind": document.get("kind"),
        "metadata": {
            key: metadata[key] for key in ("name", "labels", "annotations") if metadata.get(key)
        },
    }
    if "spec" in document:
        view["spec"] = document["spec"]
    return yaml.safe_dump(view, sort_keys=False)


def unified(label: str, live: str, merged: str) -> list[str]:
    return list(
        difflib.unified_diff(
            live.splitlines(keepends=True),
            merged.splitlines(keepends=True),
            fromfile=f"live/{label}",
            tofile=f"merged/{label}",
        )
    )


async def _merged(client: ApiClient, res: AnyResource) -> tuple[AnyResource | None, AnyResource]:
    """(stored object or None, what the server would store after apply)."""
    try:
        current = await client.get(Kind(res.kind), key_of(res))
    except ApiRequestError as exc:
        if exc.code != 404:
            raise
        created = apply_creation(res)
        try:
            return None, await client.create(created, dry_run=True)
        except ApiRequestError as create_error:
            if create_error.code != 404:
                raise
            # Its parent does not exist yet (apply creates it first): the document as
            # validated locally is what would be written.
            return None, created
    update = apply_update(res, current)
    if update is None:
        return current, current
    return current, await client.update(update, dry_run=True)


@click.command()
@FILE_OPTION
@RECURSIVE_OPTION
@manifest_scope_options
@click.pass_context
def diff(
    ctx: click.Context,
    files: Sequence[str],
    recursive: bool,
    realm: str | None,
    space: str | None,
    stack: str | None,
) -> None:
    """Show what `apply -f` would change (server-side dry run), as a unified diff.

    Exit 0: no difference; 1: differences; 2: a manifest does not load; 3: refused.

    \b
    Examples:
      kukectl diff -f app.yaml
      kukectl diff -f app/ && echo "nothing to apply"
    """
    documents = apply_order(
        load_manifest_files(
            files, scope=manifest_scope(ctx, realm, space, stack), recursive=recursive
        )
    )

    async def work(client: ApiClient) -> int:
        different = False
        refused = False
        for doc in documents:
            label = f"{kind_slug(doc.resource.kind)}/{doc.resource.metadata.name}"
            try:
                current, merged = await _merged(client, doc.resource)
            except ApiRequestError as exc:
                error_line(f"{doc.name}: {api_error_text(exc)}")
                refused = True
                continue
            lines = unified(label, owned_view(current), owned_view(merged))
            if lines:
                different = True
                click.echo("".join(lines), nl=False)
        if refused:
            return EXIT_REFUSED
        return EXIT_DIFFERENT if different else 0

    code = run(ctx, work)
    if code:
        raise click.exceptions.Exit(code)
