"""`kukectl label`, `annotate` and `patch`: change an object in place, as kubectl does.

All three send a JSON merge patch (RFC 7386), so a concurrent status write by kukeond never
conflicts with them. `label`/`annotate` take `key=value` to set and `key-` to remove; a key
that already holds another value needs `--overwrite` (kubectl's rule, so a typo does not
silently replace a value). `-l` or `--all` apply the change to every matching object of the
kind in scope.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import click
import yaml

from kukeon.api import KIND_MODELS, AnyResource, Kind, to_document
from kukeon.api.yamlread import load_yaml
from kukeon.client.apiclient import ApiClient, ApiRequestError

from .params import (
    KIND_OR_OBJECT,
    dry_run_option,
    one_object,
    scope_for,
    scope_options,
    with_names,
)
from .patchwords import resolve_bool_words
from .readlimit import TooLarge, read_limited
from .runner import EXIT_SERVER, EXIT_USAGE, api_error_text, error_line, fail, run
from .tables import kind_slug


def split_changes(
    words: Sequence[str], noun: str = "label"
) -> tuple[list[str], dict[str, str | None]]:
    """Names, then `key=value` (set) and `key-` (remove) in kubectl's order. A key both set
    and removed is refused (exit 2), as kubectl refuses it: which one was meant is unknown,
    and the later word silently won."""
    names: list[str] = []
    setting: dict[str, str] = {}
    removing: dict[str, None] = {}
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            setting[key] = value
        elif word.endswith("-") and len(word) > 1:
            removing[word[:-1]] = None
        elif setting or removing:
            fail(f"{word!r}: names come before KEY=VALUE and KEY- arguments", EXIT_USAGE)
        else:
            names.append(word)
    if not setting and not removing:
        fail("give at least one KEY=VALUE or KEY-", EXIT_USAGE)
    if both := sorted(removing.keys() & setting.keys()):
        keys = ", ".join(repr(key) for key in both)
        fail(f"can not both set and remove {noun} {keys} in the same command", EXIT_USAGE)
    return names, {**setting, **removing}


async def _targets(
    client: ApiClient,
    kind: Kind,
    scope: tuple[str, ...],
    names: Sequence[str],
    selector: str | None,
    every: bool,
) -> list[AnyResource]:
    if names:
        return [await client.get(kind, (*scope, name)) for name in names]
    listing = await client.list(kind, scope, label_selector=selector if not every else None)
    return listing.items


def change_word(verb: str, old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """What kubectl says of a label change: labeled, unlabeled, label(s) changed (both),
    not labeled (nothing changed). kubectl's annotate says "annotated" whatever changed."""
    if verb != "label":
        return "annotated"
    added = any(key not in old or old[key] != value for key, value in new.items())
    removed = any(key not in new for key in old)
    if added and removed:
        return "label(s) changed"
    return "labeled" if added else "unlabeled" if removed else "not labeled"


@dataclass(frozen=True)
class _Change:
    """One `label`/`annotate` command's change, made on each object it chose."""

    field: str
    noun: str
    verb: str
    changes: dict[str, str | None]
    overwrite: bool
    dry_run: bool
    names_only: bool = False  # kubectl's -o name: KIND/NAME alone

    async def make(
        self, client: ApiClient, kind: Kind, scope: tuple[str, ...], res: AnyResource
    ) -> bool:
        """False when this object was not changed for an error (said)."""
        label = f"{kind_slug(kind)}/{res.metadata.name}"
        current: dict[str, str] = getattr(res.metadata, self.field)
        changes = self.changes.items()
        clashes = [k for k, v in changes if v is not None and k in current and current[k] != v]
        if clashes and not self.overwrite:
            error_line(
                f"{label}: {self.noun} {', '.join(clashes)} already set to another value "
                "(--overwrite replaces it)"
            )
            return False
        if self.verb == "label":  # as kubectl's label: a removal of nothing is said
            for key in (k for k, v in changes if v is None and k not in current):
                click.echo(f'{self.noun} "{key}" not found.')
        after = {k: v for k, v in current.items() if k not in self.changes}
        after |= {k: v for k, v in changes if v is not None}
        if after != current:  # nothing to change: no write
            try:
                patch = {"metadata": {self.field: self.changes}}
                await client.patch(kind, (*scope, res.metadata.name), patch, dry_run=self.dry_run)
            except ApiRequestError as exc:
                error_line(f"{label}: {api_error_text(exc)}")
                return False
        suffix = " (server dry run)" if self.dry_run else ""
        said = "" if self.names_only else f" {change_word(self.verb, current, after)}{suffix}"
        click.echo(f"{label}{said}")
        return True


def _metadata_command(field: str, noun: str, verb: str) -> click.Command:
    @click.command(name=verb)
    @click.argument("kind_or_object", type=KIND_OR_OBJECT, metavar="KIND[/NAME]")
    @click.argument("words", nargs=-1, required=True)
    @click.option("--overwrite", is_flag=True, help=f"Replace an {noun} that has another value.")
    @click.option("-l", "--selector", help="Every object of KIND matching this label selector.")
    @click.option("--all", "every", is_flag=True, help="Every object of KIND in scope.")
    @click.option("-o", "--output", type=click.Choice(["name"]), help="name: KIND/NAME alone.")
    @dry_run_option
    @scope_options
    @click.pass_context
    def command(
        ctx: click.Context,
        kind_or_object: tuple[Kind, str | None],
        words: tuple[str, ...],
        overwrite: bool,
        selector: str | None,
        every: bool,
        output: str | None,
        dry_run: str,
        realm: str,
        space: str,
        stack: str,
    ) -> None:
        given, changes = split_changes(words, noun)
        kind, names = with_names(kind_or_object, given)
        if bool(names) + bool(selector) + every != 1:
            fail("give NAME..., -l SELECTOR or --all (one of them)", EXIT_USAGE)
        if dry_run == "client":
            fail("--dry-run=client is not supported here; use --dry-run=server", EXIT_USAGE)
        scope = scope_for(kind, realm, space, stack)

        async def work(client: ApiClient) -> bool:
            chosen = await _targets(client, kind, scope, names, selector, every)
            if not chosen:
                click.echo(f"No {kind_slug(kind)} matched.", err=True)
            server_dry_run, names_only = dry_run == "server", output == "name"
            change = _Change(field, noun, verb, changes, overwrite, server_dry_run, names_only)
            return all([await change.make(client, kind, scope, res) for res in chosen])

        if not run(ctx, work):
            raise click.exceptions.Exit(EXIT_SERVER)

    command.help = (
        f"Set (KEY=VALUE) or remove (KEY-) {noun}s of objects.\n\n"
        "\b\nExamples:\n"
        f"  kukectl {verb} cell web tier=frontend\n"
        f"  kukectl {verb} cell/web tier=frontend\n"
        f"  kukectl {verb} cell web tier=backend --overwrite\n"
        f"  kukectl {verb} cell web tier-\n"
        f"  kukectl {verb} cells --all owner=team-a\n"
    )
    return command


label = _metadata_command("labels", "label", "label")
annotate = _metadata_command("annotations", "annotation", "annotate")


def _read_patch(stream: IO[bytes]) -> str:
    """``--patch-file``'s text, read up to a bound (``-f``'s): not for ever from
    ``/dev/zero`` or a pipe that never closes."""
    try:
        return read_limited(stream)
    except (OSError, UnicodeDecodeError, TooLarge) as exc:
        fail(f"--patch-file {getattr(stream, 'name', '-')}: cannot read it: {exc}", EXIT_USAGE)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: its problem and where. The first line of its text is
    often only the context ("while constructing a mapping" for a key given twice)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{exc.problem}{at}"
    return str(exc).splitlines()[0]


def _patch_document(text: str) -> dict[str, Any]:
    try:
        document = load_yaml(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        fail(f"the patch is neither JSON nor YAML: {_yaml_problem(exc)}", EXIT_USAGE)
    if not isinstance(document, dict):
        fail("the patch must be an object, e.g. '{\"spec\": {...}}'", EXIT_USAGE)
    return document


@click.command()
@click.argument("kind_or_object", type=KIND_OR_OBJECT, metavar="KIND[/NAME]")
@click.argument("name", required=False)
@click.option("-p", "--patch", "patch_text", help="The patch, JSON or YAML.")
@click.option("--patch-file", type=click.File("rb"), help="A file holding the patch (- for stdin).")
@click.option(
    "--type",
    "patch_type",
    type=click.Choice(["merge", "json", "strategic"]),
    default="merge",
    show_default=True,
    help="Only merge (RFC 7386) is supported; the others are refused.",
)
@click.option("--subresource", type=click.Choice(["status"]), help="Patch the status (admins).")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["name", "yaml", "json"]),
    help="name: only KIND/NAME (kubectl's -o name); yaml, json: the patched object.",
)
@dry_run_option
@scope_options
@click.pass_context
def patch(
    ctx: click.Context,
    kind_or_object: tuple[Kind, str | None],
    name: str | None,
    patch_text: str | None,
    patch_file: Any,
    patch_type: str,
    subresource: str | None,
    output: str | None,
    dry_run: str,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Change fields of an object with a JSON merge patch (null removes a field).

    \b
    Examples:
      kukectl patch cell web -p '{"spec": {"desiredState": "Stopped"}}'
      kukectl patch cell/web -p '{"spec": {"desiredState": "Stopped"}}'
      kukectl patch cell web -p 'metadata: {labels: {tier: web}}'
      kukectl patch cell web --patch-file change.yaml --dry-run=server
    """
    kind, name = one_object(kind_or_object, name)
    if patch_type != "merge":
        fail(f"--type {patch_type} is not supported: kukeon takes merge patches", EXIT_USAGE)
    if (patch_text is None) == (patch_file is None):
        fail("give the patch with -p or --patch-file (one of them)", EXIT_USAGE)
    if dry_run == "client":
        fail("--dry-run=client is not supported here; use --dry-run=server", EXIT_USAGE)
    document = _patch_document(patch_text if patch_text is not None else _read_patch(patch_file))
    # JSON carries no YAML word's mark: a plain yes/no/on/off in a boolean field goes as one.
    document = resolve_bool_words(document, KIND_MODELS[kind])
    key = (*scope_for(kind, realm, space, stack), name)

    async def work(client: ApiClient) -> None:
        # kubectl reads the object first and says "(no change)" when the patch's answer is
        # that same object (kukeond writes nothing then: the same resourceVersion).
        before = to_document(await client.get(kind, key)) if output is None else None
        result = await client.patch(
            kind, key, document, status=subresource == "status", dry_run=dry_run == "server"
        )
        if output == "name":  # kubectl's -o name: KIND/NAME alone, for scripts
            click.echo(f"{kind_slug(kind)}/{name}")
        elif before is not None:
            unchanged = " (no change)" if to_document(result) == before else ""
            suffix = " (server dry run)" if dry_run == "server" else ""
            click.echo(f"{kind_slug(kind)}/{name} patched{unchanged}{suffix}")
        else:
            shown = to_document(result)
            click.echo(
                json.dumps(shown, indent=2)
                if output == "json"
                else yaml.safe_dump(shown, sort_keys=False).rstrip()
            )

    run(ctx, work)
