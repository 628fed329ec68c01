"""`kukectl events`: what happened to the objects of a realm, as `kubectl events` prints it.

```
kukectl events [--realm R | -A] [--for KIND/NAME [--space S --stack ST]] [--types Warning]
               [-w [--watch-timeout D]] [-o table|json|yaml] [--no-headers]
```

The table is LAST SEEN, TYPE, REASON, OBJECT, MESSAGE, oldest first (`-A` adds REALM);
an Event that happened several times reads `5s (x4 over 2m)`. `-w` prints the current
Events, then every new Event or repeat as it is written; a dropped stream is resumed
from the last revision seen (after `410 Gone`, the Events are listed again and only those
not printed yet are shown).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import click
import yaml

from kukeon.api import API_VERSION, EVENT_KINDS, EVENT_LIST_KIND, Event, Kind
from kukeon.client.apiclient import ApiClient, ApiRequestError, ServerUnreachable
from kukeon.client.paths import KINDS, kind_for_alias
from kukeon.client.reflector import too_large

from .eventview import (
    event_columns,
    event_row,
    list_events,
    render_events,
    selector_for,
    watch_events,
)
from .output import sort_events
from .params import DURATION, scope_for, scope_options
from .runner import EXIT_USAGE, fail, print_text, run, stderr

_RETRY_MAX_SECONDS = 10.0


def _for_selector(target: str, realm: str, space: str, stack: str) -> tuple[str, str]:
    """The realm to read and the fieldSelector of ``--for KIND/NAME``."""
    kind_text, sep, name = target.partition("/")
    kind = kind_for_alias(kind_text) if sep and name else None
    if kind is None or kind not in EVENT_KINDS:
        kinds = ", ".join(KINDS[k].kind.value.lower() for k in EVENT_KINDS)
        fail(f"--for {target!r}: expected KIND/NAME with KIND one of {kinds}", EXIT_USAGE)
    if kind == Kind.REALM:
        return name, selector_for(kind, (name,))
    scope = scope_for(kind, realm, space, stack)
    return realm, selector_for(kind, (*scope, name))


def _documents(events: Sequence[Event], output: str) -> str:
    documents = [event.document() for event in events]
    if output == "json":
        listing = {"apiVersion": API_VERSION, "kind": EVENT_LIST_KIND, "items": documents}
        return json.dumps(listing, indent=2)
    return yaml.safe_dump_all(documents, sort_keys=False, explicit_start=len(documents) > 1)


class _Printer:
    """Rows of `events -w` under one header, each column as wide as the widest yet."""

    def __init__(self, *, with_realm: bool, output: str, headers: bool) -> None:
        self.with_realm = with_realm
        self.output = output
        self.headers = headers
        self.widths = [len(c) for c in event_columns(with_realm=with_realm)]

    def _line(self, cells: Sequence[str]) -> str:
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells, strict=True)]
        return "   ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()

    def start(self, events: Sequence[Event]) -> None:
        now = datetime.now(UTC)
        if self.output == "table":
            rows = [event_row(e, now, with_realm=self.with_realm) for e in events]
            for row in rows:
                self._line(row)  # the first table is aligned as a whole
            if self.headers:
                print_text(self._line(event_columns(with_realm=self.with_realm)))
            for row in rows:
                print_text(self._line(row))
        else:
            for event in events:
                self.show(event)
        sys.stdout.flush()

    def show(self, event: Event) -> None:
        if self.output == "json":
            print_text(json.dumps(event.document()))
        elif self.output == "yaml":
            print_text("---\n" + yaml.safe_dump(event.document(), sort_keys=False))
        else:
            print_text(self._line(event_row(event, datetime.now(UTC), with_realm=self.with_realm)))
        sys.stdout.flush()


@click.command("events")
@click.option(
    "--for",
    "target",
    metavar="KIND/NAME",
    help="Only the Events of this object (cell/web, stack/st, space/sp, realm/r); "
    "--space/--stack say where it is.",
)
@click.option("-A", "--all-realms", "all_realms", is_flag=True, help="The Events of every realm.")
@click.option(
    "--types",
    help="Only these types, comma-separated: Normal, Warning.",
)
@click.option("-w", "--watch", is_flag=True, help="After listing, print Events as they happen.")
@click.option("--watch-timeout", type=DURATION, help="Stop watching after this long.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
)
@click.option("--no-headers", is_flag=True, help="The table without its header line.")
@scope_options
@click.pass_context
def events_command(
    ctx: click.Context,
    target: str | None,
    all_realms: bool,
    types: str | None,
    watch: bool,
    watch_timeout: float | None,
    output: str,
    no_headers: bool,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Show what happened to objects: created, pulled, started, restarted, OOM-killed...

    \b
    Examples:
      kukectl events                             # realm default, oldest first
      kukectl events --for cell/web              # one cell's (of --space/--stack)
      kukectl events -A --types Warning
      kukectl events --realm prod -w
    """
    if all_realms and target:
        fail("--for names one object: use --realm (and --space/--stack), not -A", EXIT_USAGE)
    wanted_types: set[str] | None = None
    if types:
        wanted_types = {t.strip().capitalize() for t in types.split(",") if t.strip()}
        unknown = wanted_types - {"Normal", "Warning"}
        if unknown:
            fail(f"--types: unknown type(s) {', '.join(sorted(unknown))}", EXIT_USAGE)
    selector: str | None = None
    if target:
        realm, selector = _for_selector(target, realm, space, stack)
    scope = None if all_realms else realm
    with_realm = all_realms

    def shown(event: Event) -> bool:
        return wanted_types is None or str(event.type) in wanted_types

    async def work(client: ApiClient) -> None:
        listing = await list_events(client, scope, field_selector=selector)
        items = sort_events(e for e in listing.items if shown(e))
        if not watch:
            if not items:
                where = "in any realm" if scope is None else f"in realm {scope}"
                stderr.print(f"No events found {where}.")
                return
            if output == "table":
                now = datetime.now(UTC)
                print_text(
                    render_events(items, now=now, with_realm=with_realm, headers=not no_headers)
                )
            else:
                print_text(_documents(items, output))
            return
        printer = _Printer(with_realm=with_realm, output=output, headers=not no_headers)
        printer.start(items)
        follow = _follow(client, scope, selector, listing.resource_version, printer, shown)
        if watch_timeout is None:
            await follow
            return
        try:
            async with asyncio.timeout(watch_timeout):
                await follow
        except TimeoutError:
            return

    run(ctx, work)


async def _follow(
    client: ApiClient,
    realm: str | None,
    selector: str | None,
    revision: int,
    printer: _Printer,
    shown: Callable[[Event], bool],
) -> None:
    """Print every change after ``revision`` until cancelled, resuming broken streams.

    A 429 (this token holder's watches, followed logs and sessions at the server's bound)
    at the first open is the client's, waited out a few times, then the command's error;
    at a reopen it, or a 5xx (a server restarting, its etcd away), is waited out for as
    long as it lasts, as a broken stream is (the reflector behind `get -w` does the same)."""
    delay = 0.2
    opens = 0
    while True:
        try:
            opens += 1
            async for update in watch_events(
                client, realm, resource_version=revision, field_selector=selector
            ):
                delay = 0.2
                revision = max(revision, update.resource_version)
                if update.event is not None and update.type != "DELETED" and shown(update.event):
                    printer.show(update.event)
            why = "the stream ended"
        except ServerUnreachable as exc:
            why = str(exc)
        except ApiRequestError as exc:
            if exc.code == 410 or too_large(exc):
                # Compacted (or newer than the server's etcd, restored from an older backup):
                # list again and print what changed after the last revision seen.
                listing = await list_events(client, realm, field_selector=selector)
                for event in sort_events(listing.items):
                    if int(event.metadata.resource_version or 0) > revision and shown(event):
                        printer.show(event)
                revision = listing.resource_version
                continue
            if opens == 1 or not (exc.code == 429 or exc.code >= 500):
                raise
            why = f"the server answered {exc.code}: {exc.message}"
        stderr.print(f"watch: {why}; watching again", style="dim")
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX_SECONDS)
