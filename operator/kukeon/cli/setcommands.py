"""``kukectl set image`` and ``kukectl set env``: kubectl's, on a cell or a cell set.

Both read the object, change its containers (a set's template: the set then rolls its cells
as its strategy says) and write it back with its resourceVersion, reading again when
another write came in between, so nothing another client wrote meanwhile is lost. A set
made from a CellProfile is refused: its template is the profile's (change the profile, or
the set's own `spec.template.spec` without `spec.profile`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import click

from kukeon.api import AnyResource, Kind, parse_resource, to_request_document
from kukeon.api.cellset import CHANGE_CAUSE_ANNOTATION
from kukeon.api.imageref import reference_problem
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.conflicts import conflict_attempts, is_conflict

from .metadata import split_changes
from .params import CONTAINERS, KIND_OR_OBJECT, dry_run_option, scope_options, with_names
from .runner import EXIT_USAGE, fail, run
from .tables import kind_slug

_KINDS = (Kind.CELL, Kind.CELL_SET)

ContainerChange = Callable[[dict[str, Any]], bool]
"""Changes one container's document in place; whether it changed anything."""


@click.group("set")
def set_group() -> None:
    """Change the image or environment of a cell's or a cell set's containers (kubectl's)."""


@set_group.command("image")
@click.argument("target", type=KIND_OR_OBJECT, metavar="cell/NAME|cellset/NAME")
@click.argument("pairs", nargs=-1, required=True, metavar="CONTAINER=IMAGE...")
@dry_run_option
@scope_options
@click.pass_context
def set_image(
    ctx: click.Context,
    target: tuple[Kind, str | None],
    pairs: tuple[str, ...],
    dry_run: str,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Set the image of containers (`*=IMAGE`: every one); a set rolls its cells to it.

    \b
    Examples:
      kukectl set image cellset/web web=nginx:1.28
      kukectl set image cell/job '*=busybox:1.37'
    """
    images: dict[str, str] = {}
    for pair in pairs:
        container, equals, image = pair.partition("=")
        if not equals or not container.strip() or not image.strip():
            fail(f"{pair!r}: expected CONTAINER=IMAGE", EXIT_USAGE)
        problem = reference_problem(image)  # the server's 422, before anything is sent
        if problem is not None:
            fail(f"{container}: {problem}", EXIT_USAGE)
        images[container] = image

    def change(container: dict[str, Any]) -> bool:
        image = images.get(str(container.get("id")), images.get("*"))
        if image is None or container.get("image") == image:
            return False
        container["image"] = image
        return True

    named = [name for name in images if name != "*"]
    cause = "set image " + " ".join(pairs)
    _change(ctx, target, (realm, space, stack), named, change, cause, dry_run, "image")


@set_group.command("env")
@click.argument("target", type=KIND_OR_OBJECT, metavar="cell/NAME|cellset/NAME")
@click.argument("entries", nargs=-1, metavar="KEY=VALUE... KEY-...")
@click.option(
    "-c", "--containers", "containers", type=CONTAINERS, default="*", show_default=True,
    help="The containers to change, comma-separated names or * for every one.",
)  # fmt: skip
@click.option(
    "--list", "listing", is_flag=True,
    help="Print the containers' environment (with the changes given, as they would be) "
    "and write nothing (kubectl's).",
)  # fmt: skip
@dry_run_option
@scope_options
@click.pass_context
def set_env(
    ctx: click.Context,
    target: tuple[Kind, str | None],
    entries: tuple[str, ...],
    containers: tuple[str, ...],
    listing: bool,
    dry_run: str,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Set (KEY=VALUE) or remove (KEY-) environment variables of containers, or list them.

    \b
    Examples:
      kukectl set env cellset/web LOG_LEVEL=debug
      kukectl set env cell/api -c main TOKEN- MODE=ro
      kukectl set env cell/api --list      # '# Cell api, container main', then KEY=VALUE...
    """
    if not entries and not listing:
        fail("give KEY=VALUE... or KEY-... (or --list)", EXIT_USAGE)
    # label's and annotate's syntax (which wants at least one change)
    names, changes = split_changes(entries, "variable") if entries else ([], {})
    if names or "" in changes:
        fail(f"{(names or ['=...'])[0]!r}: expected KEY=VALUE or KEY-", EXIT_USAGE)
    setting = {key: value for key, value in changes.items() if value is not None}
    removing = {key for key, value in changes.items() if value is None}
    chosen = set(containers)

    def change(container: dict[str, Any]) -> bool:
        if "*" not in chosen and str(container.get("id")) not in chosen:
            return False
        before = [str(entry) for entry in container.get("env") or []]
        container["env"] = changed_env(before, setting, removing)
        return bool(container["env"] != before)

    named = sorted(chosen - {"*"})
    if listing:
        _list_env(ctx, target, (realm, space, stack), named, chosen, change)
        return
    cause = "set env " + " ".join(entries)
    _change(ctx, target, (realm, space, stack), named, change, cause, dry_run, "env")


def changed_env(
    entries: Sequence[str], setting: Mapping[str, str], removing: Collection[str]
) -> list[str]:
    """``entries`` (``KEY=VALUE``) with ``setting`` replacing a key where it is (kubectl's
    order: a new key goes last) and ``removing`` left out."""
    done: set[str] = set()
    result: list[str] = []
    for entry in entries:
        key = entry.partition("=")[0]
        if key in removing or key in done:
            continue
        if key in setting:
            entry = f"{key}={setting[key]}"
            done.add(key)
        result.append(entry)
    return result + [f"{key}={value}" for key, value in setting.items() if key not in done]


def _list_env(
    ctx: click.Context,
    target: tuple[Kind, str | None],
    scope: tuple[str, str, str],
    named: Sequence[str],
    chosen: Collection[str],
    change: ContainerChange,
) -> None:
    """kubectl's ``set env --list``: each chosen container's environment, ``change`` made to
    it in memory, under ``# KIND NAME, container ID``; nothing is written."""
    kind, key, _ = _target(target, scope)

    def show(container: dict[str, Any]) -> bool:
        if "*" in chosen or str(container.get("id")) in chosen:
            change(container)
            click.echo(f"# {kind.value} {key[-1]}, container {container.get('id')}")
            for entry in container.get("env") or []:
                click.echo(str(entry))
        return False  # so _changed makes nothing to write

    async def work(client: ApiClient) -> None:
        _changed(await client.get(kind, key), named, show, "")

    run(ctx, work)


def _target(
    target: tuple[Kind, str | None], scope: tuple[str, str, str]
) -> tuple[Kind, tuple[str, ...], str]:
    """The kind, key and ``kind/name`` of the one cell or cell set named; exit 2 if not."""
    kind, names = with_names(target, [])
    if kind not in _KINDS or len(names) != 1:
        fail("give one cell/NAME or cellset/NAME", EXIT_USAGE)
    return kind, (*scope, names[0]), f"{kind_slug(kind)}/{names[0]}"


def _change(
    ctx: click.Context,
    target: tuple[Kind, str | None],
    scope: tuple[str, str, str],
    named: Sequence[str],
    change: ContainerChange,
    cause: str,
    dry_run: str,
    what: str,
) -> None:
    kind, key, label = _target(target, scope)
    if dry_run == "client":
        fail("--dry-run=client: the change is made on the object as stored; use server", EXIT_USAGE)

    async def work(client: ApiClient) -> None:
        async for _ in conflict_attempts():
            found = await client.get(kind, key)
            changed = _changed(found, named, change, cause)
            if changed is None:
                click.echo(f"{label} unchanged")
                return
            try:
                await client.update(changed, dry_run=dry_run == "server")
            except ApiRequestError as error:
                if is_conflict(error):
                    continue  # written meanwhile: change the newer version
                raise
            click.echo(
                f"{label} {what} updated" + (" (server dry run)" if dry_run != "none" else "")
            )
            return
        fail(f"{label} kept changing; try again")

    run(ctx, work)


def _changed(
    found: AnyResource, named: Sequence[str], change: ContainerChange, cause: str
) -> AnyResource | None:
    """``found`` with ``change`` made to its containers, validated; None when nothing
    changed; exit 2 naming a container it does not have or a value the model refuses."""
    document = to_request_document(found)
    spec = document["spec"]
    if document["kind"] == Kind.CELL_SET:
        if spec.get("profile"):
            fail(
                f"cellset {found.metadata.name} takes its template from CellProfile "
                f"{spec['profile']}: change the profile (or the set's template without it)",
                EXIT_USAGE,
            )
        spec = spec["template"]["spec"]
        annotations = document["metadata"].setdefault("annotations", {})
        annotations[CHANGE_CAUSE_ANNOTATION] = cause  # what rollout history shows
    containers: list[dict[str, Any]] = spec.get("containers") or []
    have = [str(container.get("id")) for container in containers]
    missing = [name for name in named if name not in have]
    if missing:
        fail(f"no container {', '.join(missing)} (it has {', '.join(have)})", EXIT_USAGE)
    if not [container for container in containers if change(container)]:
        return None
    try:
        return parse_resource(document)
    except ValueError as error:
        fail(str(error), EXIT_USAGE)
