"""``kukectl delete``: by kind and name, by selector, or the objects of manifests (``-f``),
children first; waits until they are gone, then removes the parents ``apply`` created on
the way once nothing else lives in them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import click

from kukeon.api import Kind, key_of
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.paths import KINDS

from .cellsets import CASCADES, delete_orphaning
from .manifests import IMPLICIT_PARENT_ANNOTATION, delete_order, implicit_parents
from .params import (
    DURATION,
    FILE_OPTION,
    KIND_OR_OBJECT,
    RECURSIVE_OPTION,
    IntegerRange,
    ManifestScope,
    dry_run_option,
    kind_name_groups,
    load_manifest_files,
    manifest_scope,
    nonempty_name,
    scope_for,
    scope_options,
)
from .runner import EXIT_SERVER, EXIT_USAGE, api_error_text, error_line, fail, run, stderr
from .tables import kind_slug
from .wait import Target, wait_gone


class _Deletion(NamedTuple):
    """What one ``kukectl delete`` does once its targets are known."""

    cascade: bool
    orphan: bool
    wait: bool
    timeout: float
    ignore_not_found: bool
    server_dry: bool
    grace_seconds: int | None = None
    """A cell's stop grace for this deletion (other kinds have none)."""
    names_only: bool = False
    """``-o name``: each object deleted is said as ``kind/name`` and nothing else (kubectl's)."""

    def said(self, label: str, what: str) -> None:
        """Say that the object ``label`` (``kind/name``) was ``what`` (deleted ...)."""
        click.echo(label if self.names_only else f"{label} {what}")


async def _delete_implicit_parents(
    client: ApiClient, parents: Sequence[Target], within: float, how: _Deletion
) -> bool:
    """The parents `apply` created for the manifests (marked so), innermost first, each only
    once it has no children left: what other manifests put there stays, with its parents."""
    ok = True
    for kind, key in parents:
        label = f"{kind_slug(kind)}/{key[-1]}"
        try:
            found = await client.get(kind, key)
        except ApiRequestError as exc:
            if exc.code != 404:
                ok = False
                error_line(f"{label}: {api_error_text(exc)}")
            continue
        if found.metadata.annotations.get(IMPLICIT_PARENT_ANNOTATION) != "true":
            continue  # made by someone, not by apply on the way: theirs to delete
        try:
            await client.delete(kind, key)
        except ApiRequestError as exc:
            if exc.code == 409:
                if not how.names_only:  # -o name says only what was deleted
                    click.echo(f"{label} kept (it has other children)")
                continue
            ok = False
            error_line(f"{label}: {api_error_text(exc)}")
            continue
        how.said(label, "deleted (apply had created it)")
        if await wait_gone(client, [(kind, key)], within):
            error_line(f"timed out after {within:g}s waiting for {label} to go")
            return False
    return ok


async def _delete_targets(
    client: ApiClient, targets: Sequence[Target], implicit: Sequence[Target], how: _Deletion
) -> bool:
    """Delete each target (an error does not stop the others), then wait for them.

    With ``--wait``, each run of one kind (``-f``'s children-first order) is gone before
    the next is deleted: a parent is refused (409) while a child deleted just before it
    still finalizes, so ``delete -f`` of a realm, its space, stack and cells failed on
    every parent."""
    waiting = how.wait and not how.server_dry
    deadline = asyncio.get_running_loop().time() + how.timeout
    ok, deleted_any = True, False
    implicit = list(implicit)
    for _, run_ in itertools.groupby(targets, key=lambda target: target[0]):
        level = list(run_)
        inside = [parent for parent in implicit if _below_any(parent, level)]
        if waiting and inside and not how.cascade:
            # A parent apply made inside a declared one (a manifest's Space and Cell,
            # no Stack) goes before it: the declared one is refused while it has a child.
            # (A cascade takes it with the declared one.)
            implicit = [parent for parent in implicit if parent not in inside]
            within = max(deadline - asyncio.get_running_loop().time(), 0.0)
            ok = await _delete_implicit_parents(client, inside, within, how) and ok
        level_ok, deleted = await _delete_each(client, level, how)
        ok, deleted_any = ok and level_ok, deleted_any or bool(deleted)
        if waiting and deleted:
            within = max(deadline - asyncio.get_running_loop().time(), 0.0)
            left = await wait_gone(client, deleted, within)
            if left:
                error_line(f"timed out after {how.timeout:g}s waiting for {', '.join(left)} to go")
                return False
    if waiting and deleted_any and implicit:
        ok = await _delete_implicit_parents(client, implicit, how.timeout, how) and ok
    return ok


_LEVELS = (Kind.REALM, Kind.SPACE, Kind.STACK)


def _below_any(parent: Target, targets: Sequence[Target]) -> bool:
    """Whether ``parent`` lives inside one of the realms, spaces or stacks of ``targets``
    (its key starts with theirs)."""
    _, key = parent
    return any(
        kind in _LEVELS and len(key) > len(inner) and key[: len(inner)] == inner
        for kind, inner in targets
    )


async def _delete_each(
    client: ApiClient, targets: Sequence[Target], how: _Deletion
) -> tuple[bool, list[Target]]:
    """Send each target's deletion; whether none failed, and those sent."""
    ok = True
    deleted: list[Target] = []
    suffix = " (server dry run)" if how.server_dry else ""
    for target_kind, key in targets:
        label = f"{kind_slug(target_kind)}/{key[-1]}"
        try:
            if how.orphan and target_kind == Kind.CELL_SET:
                await delete_orphaning(client, key, dry_run=how.server_dry)
            else:
                grace = how.grace_seconds if target_kind == Kind.CELL else None
                await client.delete(
                    target_kind,
                    key,
                    cascade=how.cascade,
                    dry_run=how.server_dry,
                    grace_seconds=grace,
                )
        except ApiRequestError as exc:
            if exc.code == 404 and how.ignore_not_found:
                continue
            ok = False
            error_line(f"{label}: {api_error_text(exc)}")
            continue
        deleted.append((target_kind, key))
        how.said(label, f"deleted{suffix}")
    return ok, deleted


def _named_targets(
    kind_or_object: tuple[Kind, str | None] | None,
    names: Sequence[str],
    files: Sequence[str],
    selections: int,
    scope: tuple[str, str, str],
    given: ManifestScope | None = None,
    recursive: bool = False,
) -> tuple[list[Target], list[Target]]:
    """The targets named on the command line (``KIND NAME...`` or kubectl's ``KIND/NAME...``,
    of any kinds) or by manifests, and the parents ``apply`` may have created for those
    manifests (exit 2 when the arguments do not add up); ``selections`` counts -l and
    --all, whose targets the server lists."""
    if files:
        if kind_or_object is not None or names or selections:
            fail("give either KIND NAME... (or -l/--all) or -f FILE, not both", EXIT_USAGE)
        # As apply's: the scope options given fill the documents' parents.
        documents = delete_order(load_manifest_files(files, scope=given, recursive=recursive))
        targets = [(Kind(d.resource.kind), key_of(d.resource)) for d in documents]
        return targets, implicit_parents(documents)
    if kind_or_object is None:
        fail("give KIND NAME..., KIND/NAME..., KIND -l SELECTOR, KIND --all or -f FILE", EXIT_USAGE)
    kind, first = kind_or_object
    named = [(kind, first)] if first is not None else []
    for word in names:
        if first is None:
            named.append((kind, nonempty_name(word)))
            continue
        for word_kind, word_names in kind_name_groups(word, []) if "/" in word else []:
            named += [(word_kind, name) for name in word_names]
        if "/" not in word:
            fail(f"{word!r}: after KIND/NAME every argument is KIND/NAME", EXIT_USAGE)
    if bool(named) + selections != 1:
        fail("give KIND NAME..., KIND/NAME..., KIND -l SELECTOR, KIND --all or -f FILE", EXIT_USAGE)
    return [(k, (*scope_for(k, *scope), name)) for k, name in named], []


@click.command()
@click.argument("kind_or_object", type=KIND_OR_OBJECT, required=False, metavar="[KIND[/NAME]]")
@click.argument("names", nargs=-1)
@FILE_OPTION
@RECURSIVE_OPTION
@click.option(
    "--cascade",
    type=click.Choice(CASCADES),
    is_flag=False,
    flag_value="background",
    default=None,
    help="background or foreground (a bare --cascade): also delete the children (else refused "
    "while they exist); orphan: a cell set's cells stay, unowned.",
)
@click.option(
    "--wait/--no-wait",
    "wait_",
    default=True,
    show_default=True,
    help="Wait until the objects are gone (as kubectl does).",
)
@click.option(
    "--timeout", type=DURATION, default="60s", show_default=True, help="How long --wait waits."
)
@click.option(
    "--ignore-not-found", is_flag=True, help="An object that does not exist is not an error."
)
@click.option("-l", "--selector", help="Every object of KIND in scope matching this selector.")
@click.option("--all", "every", is_flag=True, help="Every object of KIND in scope.")
@click.option(
    "--grace-period",
    type=IntegerRange(-1, 3600),
    default=-1,
    help="Seconds a cell's containers have after their stop signal before SIGKILL, for this "
    "deletion (0: at once; -1: the cell's own terminationGracePeriodSeconds). A later "
    "delete may shorten it, also while the cell is stopping.",
)
@click.option("--now", is_flag=True, help="--grace-period=1 (kubectl's).")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["name"]),
    help="name: print kind/name of each object deleted, nothing else (kubectl's -o name).",
)
@dry_run_option
@scope_options
@click.pass_context
def delete(
    ctx: click.Context,
    kind_or_object: tuple[Kind, str | None] | None,
    names: tuple[str, ...],
    files: tuple[str, ...],
    recursive: bool,
    cascade: str | None,
    wait_: bool,
    timeout: float,
    ignore_not_found: bool,
    selector: str | None,
    every: bool,
    grace_period: int,
    now: bool,
    output: str | None,
    dry_run: str,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Delete objects by kind and name, by selector, or those of manifests (-f), children
    first; waits until they are gone.

    \b
    Examples:
      kukectl delete cell web
      kukectl delete cell/web cellset/api          # kubectl's KIND/NAME, any kinds
      kukectl delete cells -l tier=web
      kukectl delete cells --all --realm prod --space edge --stack web
      kukectl delete realm prod --cascade        # everything in it
      kukectl delete cellset web --cascade=orphan  # its cells stay
      kukectl delete cell db --grace-period 0      # SIGKILL now, whatever its own grace
      kukectl delete -f app/                     # what apply -f app/ created, parents too
      kukectl delete cells -l tier=web -o name    # cell/a, cell/b: one line each
    """
    kind = kind_or_object[0] if kind_or_object is not None else None
    grace = _grace(kind, cascade, grace_period, now)
    selections = bool(selector) + every  # -l and --all
    scope = (realm, space, stack)
    given = manifest_scope(ctx, realm, space, stack)
    if recursive and not files:
        fail("-R/--recursive reads -f's directories: give -f DIR", EXIT_USAGE)
    targets, implicit = _named_targets(
        kind_or_object, names, files, selections, scope, given, recursive
    )
    selecting = selections > 0
    if selecting and dry_run == "client":
        fail("-l/--all need the server: use --dry-run=server", EXIT_USAGE)
    how = _Deletion(
        cascade in ("background", "foreground", "true"),
        cascade == "orphan",
        wait_,
        timeout,
        ignore_not_found,
        server_dry=dry_run == "server",
        grace_seconds=grace,
        names_only=output == "name",
    )
    if dry_run == "client":
        for target_kind, key in targets:
            how.said(f"{kind_slug(target_kind)}/{key[-1]}", "deleted (client dry run)")
        return

    async def work(client: ApiClient) -> bool:
        if kind is not None and selecting:
            scope = scope_for(kind, realm, space, stack)
            listing = await client.list(kind, scope, label_selector=selector)
            targets.extend((kind, key_of(res)) for res in listing.items)
            if not targets:
                stderr.print(f"No {KINDS[kind].plural} matched.")
        return await _delete_targets(client, targets, implicit, how)

    if not run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)


def _grace(kind: Kind | None, cascade: str | None, grace_period: int, now: bool) -> int | None:
    """The stop grace a cell's deletion is given (None: the cell's own); exit 2 when
    --cascade, --grace-period and --now do not fit ``kind`` or each other."""
    if cascade == "orphan" and kind not in (None, Kind.CELL_SET, Kind.CELL):
        fail("--cascade=orphan: only a cell set's cells can outlive it", EXIT_USAGE)
    if now and grace_period >= 0:
        fail("--now and --grace-period cannot both be given", EXIT_USAGE)
    grace = 1 if now else (grace_period if grace_period >= 0 else None)
    if grace is not None and kind not in (None, Kind.CELL):
        fail("--grace-period/--now: only a cell's deletion stops containers", EXIT_USAGE)
    return grace
