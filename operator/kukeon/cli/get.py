"""`kukectl get`: tables, documents, templates and watches of objects, as kubectl prints them.

`get KIND [NAME...]` or `get KIND/NAME...` (kinds may differ); `-l` and `--field-selector`
filter on the server; `-A` lists across parents (narrowed by an explicit `--realm` or
`--space`); `-o` is table, wide, yaml, json, name, `jsonpath=TEMPLATE` or
`custom-columns=SPEC`; `-L`, `--show-labels`, `--no-headers` and `--sort-by` shape the table.
Names that do not exist are reported one line each after what exists (exit 1), as kubectl does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import click

from kukeon.api.names import Kind
from kukeon.client.apiclient import ApiClient, ApiRequestError, parse_object
from kukeon.client.paths import KINDS

from .jsonpath import JsonPathError, parse_columns, relaxed_path, render_template, sort_key, values
from .params import DURATION, kind_name_groups, scope_for, scope_options
from .runner import (
    EXIT_SERVER,
    EXIT_USAGE,
    api_error_text,
    error_line,
    fail,
    print_text,
    run,
    stderr,
)
from .tables import Document, TableLayout, WatchTable, object_name, render_table, scope_of

if TYPE_CHECKING:
    from kukeon.api import AnyResource

# A table (or -o name) is printed from the documents the server sent; the models
# (kukeon.api) are defined only for what prints them (-o yaml|json|jsonpath, -w, describe).

_PLAIN_FORMATS = ("table", "wide", "yaml", "json", "name")
_TEMPLATE_FORMATS = ("jsonpath=", "custom-columns=")


class OutputType(click.ParamType[str]):
    """`-o`: a plain format, `jsonpath=TEMPLATE` or `custom-columns=HEADER:PATH,...`."""

    name = "format"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text in _PLAIN_FORMATS:
            return text
        if text.startswith(_TEMPLATE_FORMATS) and text.partition("=")[2]:
            try:
                if text.startswith("custom-columns="):
                    parse_columns(text.partition("=")[2])
                else:
                    render_template(text.partition("=")[2], {})
            except JsonPathError as exc:
                self.fail(str(exc), param, ctx)
            return text
        self.fail(
            f"unknown output format {text!r}; expected one of {', '.join(_PLAIN_FORMATS)}, "
            "jsonpath=TEMPLATE or custom-columns=HEADER:PATH,...",
            param,
            ctx,
        )


def _typed(ctx: click.Context, name: str) -> bool:
    """Given on the command line (or in the environment): not a default, nor the context's,
    which -A overrides as kubectl's overrides the context's namespace."""
    source = ctx.get_parameter_source(name)
    return source in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )


def _scope(
    ctx: click.Context, kind: Kind, all_parents: bool, realm: str, space: str, stack: str
) -> tuple[str, ...]:
    if not all_parents:
        return scope_for(kind, realm, space, stack)
    # -A: every parent, unless --realm (and --space) narrow it explicitly.
    narrowed: list[str] = []
    for level, value in (("realm", realm), ("space", space), ("stack", stack)):
        if not _typed(ctx, level) or len(narrowed) >= len(KINDS[kind].parents):
            break
        narrowed.append(value)
    return tuple(narrowed)


def _layout(
    kind: Kind, output: str, with_parents: bool, label_columns: Sequence[str], show_labels: bool
) -> TableLayout:
    custom: tuple[tuple[str, str], ...] = ()
    if output.startswith("custom-columns="):
        custom = tuple(parse_columns(output.partition("=")[2]))
    return TableLayout(
        kind,
        wide=output == "wide",
        with_parents=with_parents,
        label_columns=tuple(label_columns),
        show_labels=show_labels,
        custom=custom,
    )


def _models(documents: Sequence[Document]) -> list[AnyResource]:
    return [parse_object(document) for document in documents]


def _documents_root(documents: Sequence[Document], single: bool) -> Any:
    """What a JSONPath template sees: the object of `get KIND NAME`, else a List."""
    from kukeon.api import to_document

    items = [to_document(res) for res in _models(documents)]
    if single and len(items) == 1:
        return items[0]
    return {"apiVersion": "v1", "kind": "List", "items": items}


class _Query(NamedTuple):
    """Where ``get`` looks and what the server filters."""

    ctx: click.Context
    selector: str | None
    field_selector: str | None
    all_parents: bool
    given_scope: tuple[str, str, str]  # --realm, --space, --stack

    def scope_of(self, kind: Kind) -> tuple[str, ...]:
        return _scope(self.ctx, kind, self.all_parents, *self.given_scope)

    def with_parents(self, kind: Kind) -> bool:
        """Whether a table shows each object's parents (-A across them)."""
        return self.all_parents and bool(KINDS[kind].parents)


class _Shape(NamedTuple):
    """How ``get`` prints: the -o format and the table's options."""

    output: str
    no_headers: bool
    label_columns: tuple[str, ...]
    show_labels: bool

    @property
    def tabular(self) -> bool:
        return self.output in ("table", "wide") or self.output.startswith("custom-columns=")

    def layout(self, kind: Kind, *, with_parents: bool) -> TableLayout:
        return _layout(kind, self.output, with_parents, self.label_columns, self.show_labels)


_EVENT_WORDS = frozenset({"events", "event", "ev"})
"""kubectl's `get events`: Events are no kind of `get` here, `kukectl events` shows them."""

ALL_KINDS = (Kind.CELL_SET, Kind.CELL)
"""What `get all` lists, kubectl's `all` category for kukeon: the workloads of the scope."""


def _kind_groups(first: str, names: Sequence[str]) -> list[tuple[Kind, list[str]]]:
    """`KIND NAME...`, `KIND/NAME...`, or kubectl's `KIND,KIND [NAME...]` and `all` (each
    kind with the same names)."""
    if "/" in first or ("," not in first and first.lower() != "all"):
        return kind_name_groups(first, names)
    kinds: list[Kind] = []
    for word in first.split(","):
        more = ALL_KINDS if word.lower() == "all" else (kind_name_groups(word, [])[0][0],)
        kinds += [kind for kind in more if kind not in kinds]
    return [(kind, list(names)) for kind in kinds]


def _refuse_conflicts(
    groups: Sequence[tuple[Kind, list[str]]],
    *,
    watch: bool,
    sort_by: str | None,
    all_parents: bool,
    filtered: bool,
) -> None:
    """Exit 2 on options that do not go together."""
    named = any(group_names for _, group_names in groups)
    if watch and (len(groups) > 1 or len(groups[0][1]) > 1):
        fail("--watch takes one kind and at most one name", EXIT_USAGE)
    if watch and sort_by:
        fail("--sort-by cannot be used with --watch", EXIT_USAGE)
    if all_parents and named:
        fail("a name needs its parents: use --realm/--space/--stack instead of -A", EXIT_USAGE)
    if named and filtered:
        fail("-l/--field-selector select among all objects: give no names", EXIT_USAGE)


async def _fetch(
    client: ApiClient, kind: Kind, scope: tuple[str, ...], wanted: list[str], query: _Query
) -> tuple[list[Document], bool]:
    """The objects asked for (as the server sent them), and whether every name asked for
    was found (each missing one is reported)."""
    if not wanted:
        # The API lists one full scope or everything: a partial one (-A --realm R) is
        # everything, narrowed here.
        full = len(scope) == len(KINDS[kind].parents)
        documents, _ = await client.list_documents(
            kind,
            scope if full else (),
            label_selector=query.selector,
            field_selector=query.field_selector,
        )
        items: list[Document] = [d for d in documents if scope_of(kind, d)[: len(scope)] == scope]
        return items, True
    found: list[Document] = []
    ok = True
    for name in wanted:
        try:
            found.append(await client.get_document(kind, (*scope, name)))
        except ApiRequestError as exc:
            if exc.code >= 500 or exc.code in (401, 403):
                raise
            error_line(api_error_text(exc))
            ok = False
    return found, ok


async def _get_groups(
    client: ApiClient,
    groups: Sequence[tuple[Kind, list[str]]],
    query: _Query,
    shape: _Shape,
    sort_by: str | None,
) -> bool:
    """Fetch and print each (kind, names) group: one table per kind, or one document of
    them all; whether every name asked for was found."""
    ok = True
    everything: list[Document] = []
    tables: list[str] = []
    nothing_in: list[str] = []  # where a kind listed without names had nothing
    for kind, wanted in groups:
        scope = query.scope_of(kind)
        items, fetched = await _fetch(client, kind, scope, wanted, query)
        ok = ok and fetched
        if sort_by is not None:
            items = sorted(items, key=sort_key(sort_by))
        everything += items
        if not shape.tabular:
            continue
        if not items:
            if not wanted:
                where = "anywhere" if not scope else f"in {'/'.join(scope)}"
                nothing_in.append(where)
                if len(groups) == 1:
                    stderr.print(f"No {KINDS[kind].plural} found {where}.")
            continue
        layout = shape.layout(kind, with_parents=query.with_parents(kind))
        tables.append(
            render_table(
                kind, items, now=datetime.now(UTC), headers=not shape.no_headers, layout=layout
            )
        )
    if len(groups) > 1 and not tables and len(nothing_in) == len(groups):
        # kubectl's `get all` and `get A,B`: one line when every kind is empty, and
        # nothing about an empty kind beside a table of another.
        stderr.print(f"No resources found {nothing_in[0]}.")
    if sort_by is not None and everything:
        path = relaxed_path(sort_by)
        if not any(values(document, path) for document in everything):
            # kubectl's: a path no object has is a typo, not an order to print by.
            fail(f"--sort-by: couldn't find any field with path {sort_by!r} in the list of objects")
    named = any(group_names for _, group_names in groups)
    _print_found(shape.output, tables, everything, single=named and len(groups) == 1)
    return ok


def _print_found(
    output: str, tables: Sequence[str], everything: Sequence[Document], *, single: bool
) -> None:
    if tables:
        print_text("\n\n".join(tables))
    elif output == "json" and not single:
        # kubectl's: a listing is a List however many it holds, so `| jq '.items[]'` reads
        # one object, or none, as it reads ten.
        print_text(json.dumps(_documents_root(everything, single=False), indent=2) + "\n")
    elif output in ("yaml", "json") and everything:
        from .output import render_documents

        fmt = cast(Literal["yaml", "json"], output)
        print_text(render_documents(_models(everything), fmt))
    elif output == "name":
        print_text("\n".join(object_name(document) for document in everything))
    elif output.startswith("jsonpath="):
        root = _documents_root(everything, single=single)
        try:
            click.echo(render_template(output.partition("=")[2], root), nl=False)
        except JsonPathError as exc:
            fail(f"-o jsonpath: {exc}", EXIT_USAGE)
        if sys.stdout.isatty():
            click.echo()


@click.command()
@click.argument("kind_or_object", metavar="KIND[/NAME]")
@click.argument("names", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=OutputType(),
    default="table",
    help="table, wide, yaml, json, name, jsonpath=TEMPLATE or custom-columns=HEADER:PATH,...",
)
@click.option("-l", "--selector", help="Label selector, e.g. 'tier in (web,api),env!=prod,rank>3'.")
@click.option(
    "--field-selector",
    help="Field selector, e.g. status.state=Ready,spec.nodeName!=n2 "
    "(metadata.name, status.state, status.reason; spec.nodeName of cells; "
    "spec.unschedulable of nodes).",
)
@click.option(
    "-A",
    "--all",
    "all_parents",
    is_flag=True,
    help="List across every parent (an explicit --realm/--space narrows it).",
)
@click.option("-w", "--watch", is_flag=True, help="After listing, keep printing changes.")
@click.option("--watch-only", is_flag=True, help="-w without printing the current objects first.")
@click.option("--watch-timeout", type=DURATION, help="Stop watching after this long.")
@click.option(
    "--output-watch-events",
    is_flag=True,
    help="With -w: say each change's event (ADDED, MODIFIED, DELETED), as kubectl's.",
)
@click.option("--no-headers", is_flag=True, help="Tables without their header line.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
@click.option(
    "-L",
    "--label-columns",
    multiple=True,
    help="Add a column with this label's value (repeatable, or comma-separated).",
)
@click.option("--sort-by", help="Sort by a JSONPath, e.g. .metadata.creationTimestamp.")
@scope_options
@click.pass_context
def get(
    ctx: click.Context,
    kind_or_object: str,
    names: tuple[str, ...],
    output: str,
    selector: str | None,
    field_selector: str | None,
    all_parents: bool,
    watch: bool,
    watch_only: bool,
    watch_timeout: float | None,
    output_watch_events: bool,
    no_headers: bool,
    show_labels: bool,
    label_columns: tuple[str, ...],
    sort_by: str | None,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Show objects: a table, or -o yaml|json|wide|name|jsonpath=...|custom-columns=...

    \b
    Examples:
      kukectl get cells                          # the default stack's cells
      kukectl get cells -A --realm prod          # every cell of realm prod
      kukectl get cell web -o yaml
      kukectl get cell/web cell/api
      kukectl get cellsets,cells                 # or: get all
      kukectl get cells -l tier=web -L tier --show-labels
      kukectl get cells --field-selector status.state!=Ready
      kukectl get cells --sort-by .metadata.creationTimestamp
      kukectl get cells -o custom-columns=NAME:.metadata.name,IP:.status.network.ip
      kukectl get cells -o jsonpath='{range .items[*]}{.metadata.name}{"\\n"}{end}'
      kukectl get cells -w
      kukectl get events                         # as kukectl events
    """
    if kind_or_object.lower() in _EVENT_WORDS:
        extra = names or selector or field_selector or show_labels or label_columns or sort_by
        refused = bool(extra) or watch_only
        _get_events(ctx, refused=refused, output=output, all_realms=all_parents, watch=watch)
        return
    groups = _kind_groups(kind_or_object, names)
    watch = watch or watch_only
    _refuse_conflicts(
        groups,
        watch=watch,
        sort_by=sort_by,
        all_parents=all_parents,
        filtered=bool(selector or field_selector),
    )
    try:
        if sort_by:
            relaxed_path(sort_by)  # refused before any request
    except JsonPathError as exc:
        fail(f"--sort-by: {exc}", EXIT_USAGE)
    labels = [key.strip() for text in label_columns for key in text.split(",") if key.strip()]
    shape = _Shape(output, no_headers, tuple(labels), show_labels)
    query = _Query(ctx, selector, field_selector, all_parents, (realm, space, stack))

    async def work(client: ApiClient) -> bool:
        if not watch:
            return await _get_groups(client, groups, query, shape, sort_by or None)
        kind, wanted = groups[0]
        layout = shape.layout(kind, with_parents=query.with_parents(kind))
        table = WatchTable(layout, events=output_watch_events)
        printer = _WatchPrinter(output, table, events=output_watch_events, headers=not no_headers)
        scope = query.scope_of(kind)
        name = wanted[0] if wanted else None
        selectors = (selector, field_selector)
        await _watch(
            client, kind, scope, name, selectors, printer, watch_timeout, changes_only=watch_only
        )
        return True

    if not run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)


def _get_events(
    ctx: click.Context, *, refused: bool, output: str, all_realms: bool, watch: bool
) -> None:
    """kubectl's ``get events``: ``kukectl events`` with the options both have."""
    if refused or output not in ("table", "json", "yaml"):
        fail(
            "get events is kukectl events: it takes -A, -w, -o table|json|yaml, "
            "--no-headers and --realm (kukectl events --for KIND/NAME for one object's)",
            EXIT_USAGE,
        )
    from .events import events_command  # only then: get stays light

    params = ctx.params
    ctx.invoke(
        events_command,
        target=None,
        all_realms=all_realms,
        types=None,
        watch=watch,
        watch_timeout=params["watch_timeout"],
        output=output,
        no_headers=params["no_headers"],
        realm=params["realm"],
        space=params["space"],
        stack=params["stack"],
    )


class _WatchPrinter:
    """How `get -w` prints one object: a table row (the header before the first one, as
    kubectl prints it), a document, a name or a template's text. With kubectl's
    ``--output-watch-events`` each says its event: an EVENT column first, or the watch
    event ``{type, object}`` as the document a format or template reads."""

    def __init__(self, output: str, table: WatchTable, *, events: bool, headers: bool) -> None:
        self.output = output
        self.table = table
        self.events = events
        self.header_due = headers and self.tabular

    @property
    def tabular(self) -> bool:
        return self.output in ("table", "wide") or self.output.startswith("custom-columns=")

    def show(self, res: AnyResource, event: str = "ADDED") -> None:
        from kukeon.api import to_document

        from . import output as documents

        shown: Any = to_document(res)
        if self.events:
            shown = {"type": event, "object": shown}
        if self.output == "json":
            print_text(json.dumps(shown, indent=2))
        elif self.output == "yaml":
            import yaml

            print_text("---\n" + yaml.safe_dump(shown, sort_keys=False))
        elif self.output == "name":
            print_text(documents.object_name(res))
        elif self.output.startswith("jsonpath="):
            text = render_template(self.output.partition("=")[2], shown)
            # One object a line; a template that ends its own line ({"\n"}) gets no blank one.
            click.echo(text, nl=not text.endswith("\n"))
        else:
            if self.header_due:
                print_text(self.table.header())
                self.header_due = False
            print_text(self.table.row(res, datetime.now(UTC), event=event))
        sys.stdout.flush()


async def _watch(
    client: ApiClient,
    kind: Kind,
    scope: tuple[str, ...],
    name: str | None,
    selectors: tuple[str | None, str | None],
    printer: _WatchPrinter,
    stop_after: float | None,
    *,
    changes_only: bool = False,
) -> None:
    from kukeon.client.reflector import follow

    def note(line: str) -> None:
        stderr.print(f"watch: {line}", style="dim")

    if len(scope) != len(KINDS[kind].parents) and scope:
        fail("-w lists one full scope or everything: give --space/--stack too, or no --realm")
    selector, field_selector = selectors
    # The current objects first, as one aligned table; then the changes since that list.
    listing = await client.list(
        kind, scope, label_selector=selector, name=name, field_selector=field_selector
    )
    if name is not None and not listing.items:
        # kubectl's `get KIND NAME -w` of an object that is not there: the server's NotFound
        # and exit 1, not a header and a silent wait (an object made meanwhile is watched).
        await client.get_document(kind, (*scope, name))
    if printer.tabular:
        printer.table.fit(listing.items, datetime.now(UTC))
    for res in () if changes_only else listing.items:  # --watch-only: listed, not shown
        printer.show(res)
    # Reconnects from the last revision seen when the stream drops, relists on 410 Gone.
    async for event in follow(
        client,
        kind,
        scope,
        label_selector=selector,
        name=name,
        field_selector=field_selector,
        stop_after=stop_after,
        notify=note,
        initial=listing.items,
        initial_revision=listing.resource_version,
    ):
        if event.object is not None:
            printer.show(event.object, event.type)


@click.command("describe")
@click.argument("kind_or_object", metavar="KIND|KIND/NAME")
@click.argument("names", nargs=-1)
@click.option("-l", "--selector", help="Without names: only the objects matching it.")
@click.option(
    "-A", "--all-realms", "all_parents", is_flag=True, help="Without names: in every realm."
)
@scope_options
@click.pass_context
def describe_command(
    ctx: click.Context,
    kind_or_object: str,
    names: tuple[str, ...],
    selector: str | None,
    all_parents: bool,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Show objects in detail: spec, status, containers and reasons. Without names, every
    object of KIND in the scope (as kubectl describe pods).

    \b
    Examples:
      kukectl describe cell web
      kukectl describe cell/web
      kukectl describe cells -l tier=web    # every cell of the stack with that label
      kukectl describe node n1
      kukectl describe space edge --realm prod
    """
    groups = kind_name_groups(kind_or_object, names)
    named = any(group_names for _, group_names in groups)
    if named and (selector is not None or all_parents):
        fail("-l and -A describe every object of KIND: give no names with them", EXIT_USAGE)
    keys = [
        (kind, (*scope_for(kind, realm, space, stack), name))
        for kind, group_names in groups
        for name in group_names
    ]
    listed_kind = groups[0][0]
    scope = _scope(ctx, listed_kind, all_parents, realm, space, stack)

    from kukeon.api import key_of

    from .cellsetview import set_members
    from .eventview import events_of
    from .output import describe
    from .quotaview import quota_of

    async def work(client: ApiClient) -> None:
        if named:
            found = [await client.get(kind, key) for kind, key in keys]
        else:
            listing = await client.list(listed_kind, scope, label_selector=selector)
            found = sorted(listing.items, key=key_of)
            if not found:
                stderr.print(f"No {KINDS[listed_kind].plural} found.")
        pages = []
        for res in found:
            members = await set_members(client, res)
            events, quota = await events_of(client, res), await quota_of(client, res)
            pages.append(describe(res, events=events, members=members, quota=quota))
        print_text("\n".join(pages))

    run(ctx, work)
