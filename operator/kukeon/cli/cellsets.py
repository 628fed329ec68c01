"""kukectl's CellSet commands: ``scale cellset/NAME --replicas N``, ``rollout status``,
``rollout history``, ``rollout undo`` and ``rollout restart``.

`get cellsets`, `describe cellset`, `apply` and `delete` are the generic commands (a
CellSet is a kind like the others); the table columns and describe lines they show for a
set are `cellsetview`'s. `scale` patches
`spec.replicas`; `rollout status` waits until the set controller has seen the latest
spec and every replica is up to date and Ready (`updated == ready == replicas`), and
fails (exit 1) when the rollout stopped at its progress deadline. `rollout history`
lists the template revisions the set controller keeps in the set's status; `rollout undo`
writes one of them back as the set's template with an ordinary update, so it passes the
same admission as any write of the set by the same user (whatever the status says).
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import click

from kukeon.api import AnyResource, CellSet, Kind, parse_resource
from kukeon.api.cellset import CHANGE_CAUSE_ANNOTATION, PROGRESS_DEADLINE_EXCEEDED, CellSetRevision
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.conflicts import conflict_attempts, is_conflict
from kukeon.client.paths import object_path

from .lifecycle import RESTARTED_AT
from .params import DURATION, IntegerRange, kubectl_hint, nonempty_name, scope_options
from .runner import EXIT_USAGE, fail, run, stderr

POLL_EVERY = 0.5
CASCADES = ("background", "foreground", "orphan", "true", "false")
"""`delete --cascade=`: kubectl's three, and its old true/false (a bare --cascade: background)."""
_FORMS = "cellset/NAME, cellset NAME or NAME"


def set_named(words: tuple[str, ...]) -> str:
    """The set's name in any of `_FORMS`; exit 2 otherwise."""
    if len(words) == 2:
        words = (f"{words[0]}/{words[1]}",)
    if len(words) != 1:
        fail(f"{' '.join(words)!r}: expected {_FORMS}", EXIT_USAGE)
    kind, sep, name = words[0].rpartition("/")
    if sep and kind.lower() not in ("cellset", "cellsets", "cs"):
        usage = f"expected {_FORMS} (this command acts on cell sets{kubectl_hint(kind, '; ', '')})"
        fail(f"{words[0]!r}: {usage}", EXIT_USAGE)
    return nonempty_name(name)


@click.command("scale")
@click.argument("name", nargs=-1, required=True, metavar="cellset/NAME")
@click.option("--replicas", type=IntegerRange(min=0), required=True, help="How many cells.")
@click.option(
    "--current-replicas",
    type=IntegerRange(min=-1),
    default=-1,
    help="Scale only if the set has this many replicas now (kubectl's; -1: any).",
)
@click.option("-o", "--output", type=click.Choice(["name"]), help="name: cellset/NAME alone.")
@scope_options
@click.pass_context
def scale(
    ctx: click.Context,
    name: tuple[str, ...],
    replicas: int,
    current_replicas: int,
    output: str | None,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Set a CellSet's replicas (the set controller adds or removes cells).

    \b
    Examples:
      kukectl scale cellset/web --replicas 5
      kukectl scale cellset/web --current-replicas 2 --replicas 3
    """
    key = (realm, space, stack, set_named(name))

    async def work(client: ApiClient) -> None:
        if current_replicas < 0:
            await client.patch(Kind.CELL_SET, key, {"spec": {"replicas": replicas}})
        else:
            await _scale_from(client, key, current_replicas, replicas)
        label = f"cellset/{key[-1]}"
        click.echo(label if output == "name" else f"{label} scaled to {replicas}")

    run(ctx, work)


async def _scale_from(client: ApiClient, key: tuple[str, ...], current: int, wanted: int) -> None:
    """kubectl's --current-replicas: the set is read and checked, then patched with its
    resourceVersion (a precondition), so a scale by someone else in between is a conflict,
    read and checked again."""
    async for _ in conflict_attempts():
        found = await client.get(Kind.CELL_SET, key)
        assert isinstance(found, CellSet)
        if found.spec.replicas != current:
            fail(f"Expected replicas to be {current}, was {found.spec.replicas}")
        version = found.metadata.resource_version
        patch = {"metadata": {"resourceVersion": version}, "spec": {"replicas": wanted}}
        try:
            await client.patch(Kind.CELL_SET, key, patch)
        except ApiRequestError as error:
            if is_conflict(error):
                continue
            raise
        return
    fail(f"cellset/{key[-1]} kept changing; try again")


def rollout_done(res: AnyResource) -> tuple[bool, str]:
    """Whether the set's rollout is complete, and what it is at."""
    assert isinstance(res, CellSet)
    status, wanted = res.status, res.spec.replicas
    seen = status.observed_generation >= res.metadata.generation
    at = (
        f"{status.updated_replicas} of {wanted} updated, {status.ready_replicas} ready, "
        f"{status.available_replicas} available, {status.replicas} in all"
    )
    # As kubectl's rollout status: done once the new cells are available too, that is
    # Ready for the set's minReadySeconds.
    done = (
        seen
        and status.template_hash == res.template_hash()
        and status.updated_replicas == status.ready_replicas == status.replicas == wanted
        and status.available_replicas >= wanted
    )
    return done, at


def rollout_stalled(res: AnyResource) -> str | None:
    """The message of a rollout stopped by its progress deadline (None while it may go on)."""
    assert isinstance(res, CellSet)
    if res.status.observed_generation < res.metadata.generation:
        return None
    for condition in res.status.conditions:
        if condition.type == "Progressing" and condition.reason == PROGRESS_DEADLINE_EXCEEDED:
            return condition.message or "progress deadline exceeded"
    return None


@click.group("rollout")
def rollout() -> None:
    """Follow a CellSet's rollout."""


@rollout.command("status")
@click.argument("name", nargs=-1, required=True, metavar="cellset/NAME")
@click.option(
    "--timeout",
    type=DURATION,
    default="5m",
    show_default=True,
    help="Give up after (0: wait for ever, as kubectl's --timeout=0).",
)
@click.option(
    "-w",
    "--watch/--no-watch",
    default=True,
    help="Wait for the rollout to finish (--watch=false: say where it is once, exit 0).",
)
@scope_options
@click.pass_context
def rollout_status(
    ctx: click.Context,
    name: tuple[str, ...],
    timeout: float,
    watch: bool,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Wait until every replica of a CellSet is up to date and Ready.

    A line on stderr each time the counts change, terminal or not (kubectl's "Waiting for
    ..." lines); the last one on stdout. Exits 1 if the rollout stopped at its progress
    deadline (Progressing=False) or on the timeout.

    \b
    Examples:
      kukectl rollout status cellset/web --timeout 2m
      kukectl rollout status cellset/web --watch=false
    """
    key = (realm, space, stack, set_named(name))
    run(ctx, lambda client: follow_rollout(client, key, give_up_after=timeout, watch=watch))


async def follow_rollout(
    client: ApiClient, key: tuple[str, ...], *, give_up_after: float, watch: bool = True
) -> None:
    """`rollout status`: read the set every `POLL_EVERY` until its rollout is done, a line
    per change of its counts; ``give_up_after`` 0 waits for ever, ``watch`` False reads it
    once.

    The lines are plain (no spinner, no colour), so a CI log shows the same as a terminal:
    they were printed on a terminal only, and a pipe showed nothing while it waited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after if give_up_after > 0 else math.inf
    last = ""
    while True:
        found = await client.get(Kind.CELL_SET, key)
        done, at = rollout_done(found)
        if done:
            click.echo(f'cellset "{key[-1]}" successfully rolled out ({at})')
            return
        if (stalled := rollout_stalled(found)) is not None:
            fail(f'cellset "{key[-1]}" exceeded its progress deadline: {stalled}')
        waiting = f'waiting for cellset "{key[-1]}": {at}'
        if not watch:
            click.echo(waiting)  # kubectl's --watch=false: where it is, on stdout, exit 0
            return
        if at != last:
            stderr.print(waiting)
        last = at
        if loop.time() >= deadline:
            fail(f"timed out after {give_up_after:g}s waiting for cellset/{key[-1]}: {at}")
        await asyncio.sleep(POLL_EVERY)


@rollout.command("restart")
@click.argument("name", nargs=-1, required=True, metavar="cellset/NAME")
@scope_options
@click.pass_context
def rollout_restart(
    ctx: click.Context, name: tuple[str, ...], realm: str, space: str, stack: str
) -> None:
    """Replace every cell of a CellSet with a new one, a few at a time as its strategy says
    (kubectl's rollout restart: a `kukeon.io/restartedAt` annotation in the template).

    \b
    Examples:
      kukectl rollout restart cellset/web
      kukectl rollout restart cellset/web && kukectl rollout status cellset/web
    """
    key = (realm, space, stack, set_named(name))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    patch = {
        "metadata": {"annotations": {CHANGE_CAUSE_ANNOTATION: f"rollout restart at {stamp}"}},
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}},
    }

    async def work(client: ApiClient) -> None:
        await client.patch(Kind.CELL_SET, key, patch)
        click.echo(f"cellset/{key[-1]} restarted")

    run(ctx, work)


def history_lines(res: AnyResource) -> list[str]:
    """The ``rollout history`` table: revision, template hash, change cause."""
    assert isinstance(res, CellSet)
    rows = [("REVISION", "HASH", "CHANGE-CAUSE")]
    rows += [
        (str(r.revision), r.template_hash, r.change_cause or "<none>") for r in res.status.revisions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}" for row in rows]


def undo_target(res: AnyResource, to_revision: int) -> CellSetRevision:
    """The revision ``rollout undo`` goes back to: ``to_revision``, or (0) the one before
    the current template; exit 1 naming what exists otherwise."""
    assert isinstance(res, CellSet)
    revisions = res.status.revisions
    if to_revision:
        for revision in revisions:
            if revision.revision == to_revision:
                return revision
        known = ", ".join(str(r.revision) for r in revisions) or "none"
        fail(f"cellset/{res.metadata.name} has no revision {to_revision} (kept: {known})")
    current = res.template_hash()
    earlier = [r for r in revisions if r.template_hash != current]
    if not earlier:
        fail(f"cellset/{res.metadata.name} has no earlier revision to go back to")
    return earlier[-1]


def rolled_back(res: CellSet, target: CellSetRevision) -> CellSet:
    """``res`` with ``target``'s template and change cause (the update `undo` sends). A set
    from a profile gets the template inline, without its profile (which would replace it)."""
    document = res.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["template"] = target.template
    for field in ("profile", "params"):
        document["spec"].pop(field, None)
    annotations = dict(res.metadata.annotations)
    annotations.pop(CHANGE_CAUSE_ANNOTATION, None)
    if target.change_cause:
        annotations[CHANGE_CAUSE_ANNOTATION] = target.change_cause
    document["metadata"]["annotations"] = annotations
    document.pop("status", None)
    parsed = parse_resource(document)
    assert isinstance(parsed, CellSet)
    return parsed


def revision_text(res: AnyResource, revision: int, output: str | None) -> str:
    """kubectl's ``rollout history --revision N``: that revision's template, under a line
    naming it (or, with -o yaml|json, the template alone); exit 1 naming the kept ones."""
    import json

    import yaml

    assert isinstance(res, CellSet)
    found = [kept for kept in res.status.revisions if kept.revision == revision]
    if not found:
        known = ", ".join(str(r.revision) for r in res.status.revisions) or "none"
        fail(f"cellset/{res.metadata.name} has no revision {revision} (kept: {known})")
    template = found[0].template
    if output == "json":
        return json.dumps(template, indent=2)
    text = yaml.safe_dump(template, sort_keys=False).rstrip()
    if output == "yaml":
        return text
    cause = found[0].change_cause or "<none>"
    body = "\n".join(f"  {line}" for line in text.splitlines())
    title = f"cellset/{res.metadata.name} with revision #{revision}"
    return f"{title}\nChange cause: {cause}\nCell template:\n{body}"


@rollout.command("history")
@click.argument("name", nargs=-1, required=True, metavar="cellset/NAME")
@click.option(
    "--revision", type=IntegerRange(min=0), default=0, help="Show this revision's template."
)
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), help="With --revision: its template."
)
@scope_options
@click.pass_context
def rollout_history(
    ctx: click.Context,
    name: tuple[str, ...],
    revision: int,
    output: str | None,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """List a CellSet's kept template revisions (the current one last), or show one.

    \b
    Examples:
      kukectl rollout history cellset/web
      kukectl rollout history cellset/web --revision 2
    """
    key = (realm, space, stack, set_named(name))
    if output is not None and not revision:
        fail("-o shows one revision's template: give --revision N", EXIT_USAGE)

    async def work(client: ApiClient) -> None:
        found = await client.get(Kind.CELL_SET, key)
        if revision:
            click.echo(revision_text(found, revision, output))
        else:
            click.echo("\n".join(history_lines(found)))

    run(ctx, work)


@rollout.command("undo")
@click.argument("name", nargs=-1, required=True, metavar="cellset/NAME")
@click.option(
    "--to-revision",
    type=IntegerRange(min=0),
    default=0,
    show_default=True,
    help="The revision to go back to (0: the one before the current template).",
)
@scope_options
@click.pass_context
def rollout_undo(
    ctx: click.Context,
    name: tuple[str, ...],
    to_revision: int,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Put a CellSet's template back to an earlier revision (a normal update: the same
    admission checks apply, and the set rolls to it).

    \b
    Examples:
      kukectl rollout undo cellset/web
      kukectl rollout undo cellset/web --to-revision 2
    """
    key = (realm, space, stack, set_named(name))

    async def work(client: ApiClient) -> None:
        async for _ in conflict_attempts():
            found = await client.get(Kind.CELL_SET, key)
            assert isinstance(found, CellSet)
            target = undo_target(found, to_revision)
            if target.template_hash == found.template_hash():
                click.echo(f"cellset/{key[-1]} is at revision {target.revision} already")
                return
            try:
                await client.update(rolled_back(found, target))
            except ApiRequestError as error:
                if is_conflict(error):
                    continue  # changed meanwhile: decide again on the new version
                raise
            click.echo(f"cellset/{key[-1]} rolled back to revision {target.revision}")
            return
        fail(f"cellset/{key[-1]} kept changing; try again")

    run(ctx, work)


async def delete_orphaning(client: ApiClient, key: tuple[str, ...], *, dry_run: bool) -> None:
    """Delete a set leaving its cells (``propagationPolicy=Orphan``): the set controller
    takes its label off them, then the set goes (docs/cellsets.md)."""
    params = {"propagationPolicy": "Orphan", **({"dryRun": "All"} if dry_run else {})}
    await client.request("DELETE", object_path(Kind.CELL_SET, key), params=params)
