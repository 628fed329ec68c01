"""``kukectl wait``: until objects reach a state or are gone; and the wait for deletion
that ``kukectl delete`` shares."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import click

from kukeon.api import AnyResource, Kind
from kukeon.cancelling import cancel_and_wait
from kukeon.client.apiclient import ApiClient, ApiRequestError, ServerUnreachable

from .jsonpath import JsonPathError, render_template
from .params import DURATION, kind_name_groups, scope_for, scope_options
from .runner import EXIT_SERVER, EXIT_USAGE, api_error_text, error_line, fail, run, stderr
from .tables import kind_slug

Target = tuple[Kind, tuple[str, ...]]


async def _cells_left(client: ApiClient, targets: Sequence[Target]) -> int:
    """The cells still stored under the realms, spaces and stacks being deleted (a cell's
    collection is listed per stack: a realm's and a space's stacks are listed first)."""
    left = 0
    for kind, key in targets:
        with contextlib.suppress(ApiRequestError, ServerUnreachable):  # only a status line
            left += await _cells_under(client, kind, key)
    return left


async def _cells_under(client: ApiClient, kind: Kind, key: tuple[str, ...]) -> int:
    if kind == Kind.STACK:
        return len((await client.list(Kind.CELL, key)).items)
    children = {Kind.REALM: Kind.SPACE, Kind.SPACE: Kind.STACK}.get(kind)
    if children is None:
        return 0
    listing = await client.list(children, key)
    counts = [await _cells_under(client, children, (*key, c.metadata.name)) for c in listing.items]
    return sum(counts)


def _revision(res: AnyResource) -> int:
    try:
        return int(res.metadata.resource_version or 0)
    except ValueError:
        return 0


async def _until_gone(client: ApiClient, kind: Kind, key: tuple[str, ...], within: float) -> bool:
    """Whether the object is gone within ``within`` seconds: read once, then its watch
    (one object's, from the revision read; reconnected and relisted as ``follow`` does)
    until it says DELETED. No poll: the answer comes when the server's watch event does."""
    from kukeon.client.reflector import follow  # only here: kukectl's other commands skip it

    try:
        found = await client.get(kind, key)
    except ApiRequestError as exc:
        if exc.code != 404:
            raise
        return True
    events = follow(
        client,
        kind,
        key[:-1],
        name=key[-1],
        stop_after=max(within, 0.001),
        initial=[found],
        initial_revision=_revision(found),
    )
    # The server ends the stream at the time asked (timeoutSeconds); this bounds one
    # that does not.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            async for event in events:
                if event.type == "DELETED":
                    return True
    return False  # the time ran out


async def wait_gone(client: ApiClient, targets: Sequence[Target], within: float) -> list[str]:
    """Wait until every target is gone (each one's watch, at once); the names still
    present at the deadline. On a terminal, a status line says what is left each second."""
    deadline = asyncio.get_running_loop().time() + within
    remaining = list(targets)

    async def watched(target: Target) -> None:
        left = deadline - asyncio.get_running_loop().time()
        if await _until_gone(client, *target, left):
            remaining.remove(target)

    shown = asyncio.ensure_future(_show_remaining(client, remaining)) if _tty() else None
    try:
        await asyncio.gather(*(watched(target) for target in list(targets)))
    finally:
        if shown is not None:
            await cancel_and_wait(shown)
    return [f"{kind_slug(k)}/{key[-1]}" for k, key in remaining]


def _tty() -> bool:
    return sys.stderr.isatty()


async def _show_remaining(client: ApiClient, remaining: list[Target]) -> None:
    """A terminal's status line, once a second until cancelled: what is still being
    deleted and how many cells are left under it. Only said: the wait ends on events."""
    status = stderr.status("")
    status.start()
    try:
        while True:
            await asyncio.sleep(1.0)
            names = ", ".join(f"{kind_slug(k)}/{key[-1]}" for k, key in remaining)
            cells = await _cells_left(client, remaining)
            left = f" ({cells} cells left)" if cells else ""
            status.update(f"waiting for {names} to be deleted{left}")
    finally:
        status.stop()


class Wanted(NamedTuple):
    """What ``--for`` waits for: ``what`` is delete, state, condition or jsonpath; ``name``
    the state, the condition's type or the JSONPath template; ``value`` the condition's
    status (True when not given) or the JSONPath's value (None: any value but none)."""

    what: str
    name: str = ""
    value: str | None = None

    def __str__(self) -> str:
        if self.what == "state":
            return self.name
        if self.what == "condition":
            return f"{self.name}={self.value or 'True'}"
        return self.name if self.value is None else f"{self.name}={self.value}"


_FORMS = "state=STATE, condition=NAME[=VALUE], jsonpath={PATH}[=VALUE] or delete"


def _parse_condition(text: str) -> Wanted:
    """kubectl's ``--for`` forms, and kukeon's ``state=STATE``."""
    if text == "delete":
        return Wanted("delete")
    what, _, rest = text.partition("=")
    what = what.lower()
    if what == "state" and rest:
        return Wanted("state", rest)
    if what == "condition" and rest:
        name, _, value = rest.partition("=")
        if name and "=" not in value:
            return Wanted("condition", name, value or None)
    if what == "jsonpath" and rest:
        # kubectl's '{.status.state}=Ready', '{.status.network.ip}' (any value), or unbraced
        if rest.startswith("{"):
            template, equals, value = rest.partition("}=")
            template = template if equals else rest
            template += "}" if equals else ""
        else:
            path, equals, value = rest.partition("=")
            template = "{" + path + "}"
        if template.endswith("}") and template != "{}" and (value or not equals):
            try:
                render_template(template, {})
            except JsonPathError as exc:
                fail(f"--for: {exc}", EXIT_USAGE)
            return Wanted("jsonpath", template, value if equals else None)
    fail(f"--for must be {_FORMS}, got {text!r}", EXIT_USAGE)


def observe(res: AnyResource, wanted: Wanted) -> tuple[bool, str]:
    """Whether ``res`` is as ``wanted``, and what it is now (for a timeout's message)."""
    status = getattr(res, "status", None)
    state = getattr(status, "state", None)
    if wanted.what == "condition":
        for condition in getattr(status, "conditions", None) or ():
            if str(condition.type).lower() == wanted.name.lower():
                met = str(condition.status).lower() == (wanted.value or "True").lower()
                return met, f"{condition.type} is {condition.status}"
        if wanted.name.lower() != "ready" or state is None:
            return False, f"it has no {wanted.name} condition"
        # kubectl's condition=Ready of a kind with no conditions: its state Ready is the
        # condition True, any other state False (Ready=false waits for it to leave Ready)
        ready = "True" if str(state).lower() == "ready" else "False"
        met = ready.lower() == (wanted.value or "True").lower()
        return met, _state_said(status)
    if wanted.what == "jsonpath":
        from kukeon.api import to_document

        now = render_template(wanted.name, to_document(res))
        met = now == wanted.value if wanted.value is not None else now != ""
        return met, f"{wanted.name} is {now!r}"
    last = str(state if state is not None else "unknown")
    return last.lower() == wanted.name.lower(), _state_said(status)


def _state_said(status: Any) -> str:
    """``it is STATE[: REASON: MESSAGE]``: why it is not there yet, as describe says it (a
    timeout that only says Pending sends the user to describe for the probe or pull)."""
    state = getattr(status, "state", None)
    last = str(state if state is not None else "unknown")
    why = [getattr(status, field, None) for field in ("reason", "message")]
    return "it is " + ": ".join(str(part) for part in (last, *why) if part)


async def _exists(client: ApiClient, kind: Kind, key: tuple[str, ...]) -> bool:
    try:
        await client.get(kind, key)
    except ApiRequestError as exc:
        if exc.code != 404:
            raise
        return False
    return True


async def _wait_deleted(client: ApiClient, targets: Sequence[Target], within: float) -> bool:
    # As kubectl's: an object already gone is no error and nothing to say (it ignores
    # NotFound for --for=delete); one deleted while waited for is "condition met".
    present = [target for target in targets if await _exists(client, *target)]
    left = await wait_gone(client, present, within)
    for label in left:
        error_line(f"timed out after {within:g}s waiting for {label} to be deleted")
    for kind, key in present:
        if f"{kind_slug(kind)}/{key[-1]}" not in left:
            click.echo(f"{kind_slug(kind)}/{key[-1]} condition met")
    return not left


async def _wait_state(
    client: ApiClient,
    kind: Kind,
    key: tuple[str, ...],
    wanted: Wanted,
    *,
    within: float,
    deadline: float,
) -> bool:
    """Poll one object until it is as ``wanted`` or the loop's clock passes ``deadline``
    (``within`` seconds after the wait began); a missing object fails at once, as kubectl
    does."""
    loop = asyncio.get_running_loop()
    label = f"{kind_slug(kind)}/{key[-1]}"
    now = "it is unknown"
    while True:
        try:
            met, now = observe(await client.get(kind, key), wanted)
            if met:
                click.echo(f"{label} condition met")
                return True
        except ApiRequestError as exc:
            if exc.code != 404:
                raise
            error_line(api_error_text(exc))  # as kubectl: no waiting for nothing
            return False
        if loop.time() >= deadline:
            error_line(f"timed out after {within:g}s waiting for {label} to be {wanted} ({now})")
            return False
        await asyncio.sleep(0.25)


async def _selected(
    client: ApiClient, kind: Kind, scope: tuple[str, str, str], selector: str | None
) -> list[Target]:
    """The objects of ``kind`` in scope (matching ``selector``), listed once: those that
    appear later are not waited for, as with kubectl."""
    parents = scope_for(kind, *scope)
    listing = await client.list(kind, parents, label_selector=selector)
    return [(kind, (*parents, res.metadata.name)) for res in listing.items]


@click.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--for",
    "condition",
    required=True,
    help="state=STATE (any state name), condition=NAME[=VALUE] (status.conditions; a "
    "kind without them: condition=Ready is state=Ready), jsonpath={PATH}[=VALUE] or delete.",
)
@click.option("--timeout", type=DURATION, default="30s", show_default=True)
@click.option("-l", "--selector", help="Every object of KIND in scope matching this selector.")
@click.option("--all", "every", is_flag=True, help="Every object of KIND in scope.")
@scope_options
@click.pass_context
def wait(
    ctx: click.Context,
    targets: tuple[str, ...],
    condition: str,
    timeout: float,
    selector: str | None,
    every: bool,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Wait for objects (KIND/NAME..., KIND NAME..., or KIND with -l or --all) to reach a
    state or to be deleted.

    \b
    Examples:
      kukectl wait cell/web --for=state=Ready --timeout=60s
      kukectl wait cell/web --for=condition=Ready
      kukectl wait cells -l app=web --for=condition=Ready --stack site
      kukectl wait cell/job --for=delete
      kukectl wait cellset/api --for=condition=Available
      kukectl wait cell/web --for=jsonpath='{.status.network.ip}'   # any value
    """
    wanted = _parse_condition(condition)
    groups = kind_name_groups(targets[0], targets[1:])
    parsed: list[Target] = [
        (kind, (*scope_for(kind, realm, space, stack), name))
        for kind, names in groups
        for name in names
    ]
    selecting = bool(selector) + every
    if selecting > 1 or (selecting and (parsed or len(groups) != 1)):
        fail("give KIND NAME..., KIND/NAME..., KIND -l SELECTOR or KIND --all", EXIT_USAGE)
    if not parsed and not selecting:
        fail("give KIND/NAME... or KIND NAME..., e.g. cell/web (or KIND -l/--all)", EXIT_USAGE)

    async def work(client: ApiClient) -> bool:
        nonlocal parsed
        if selecting:
            parsed = await _selected(client, groups[0][0], (realm, space, stack), selector)
            if not parsed:  # as kubectl's: nothing to wait for; none left is deleted
                if wanted.what == "delete":
                    return True
                error_line("no matching objects found")
                return False
        if wanted.what == "delete":
            return await _wait_deleted(client, parsed, timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        ok = True
        for kind, key in parsed:
            reached = await _wait_state(
                client, kind, key, wanted, within=timeout, deadline=deadline
            )
            ok = ok and reached
        return ok

    if not run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)
