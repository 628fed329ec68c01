"""``kukectl create realm|space|stack|cellset NAME``: kubectl's imperative creates
(``create namespace``, ``create deployment``) for the hierarchy and for a cell set.

Each makes the document a manifest would hold, validates it here (exit 2 naming the
problem) and creates it; ``--dry-run=client|server`` with ``-o yaml`` prints it instead,
a manifest to keep. A cell set's container takes ``kukectl run``'s container options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.api.imagefields import refuse_bad_images
from kukeon.api.portrules import refuse_unpublishable_ports
from kukeon.client.apiclient import ApiClient

from .configdoc import context_default, context_scope
from .params import IntegerRange, ScopeOption, dry_run_option, scope_options
from .runner import EXIT_USAGE, fail, run
from .runspec import build_container, container_options
from .tables import kind_slug

_OUTPUT = click.option(
    "--output",
    "-o",
    type=click.Choice(["yaml", "json", "name"]),
    help="Print the created object (yaml, json: the manifest) instead of 'KIND/NAME created'.",
)


def _scope(ctx: click.Context, *levels: str) -> list[str]:
    """The subcommand's scope options as typed, else those typed to ``create`` itself
    (``kukectl create --realm r space web``), else the context's, else ``default``."""
    typed_sources = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    configured = context_scope(ctx.find_root().params)
    chosen: dict[str, str | None] = {}
    for level in levels:
        if ctx.get_parameter_source(level) in typed_sources:
            chosen[level] = str(ctx.params[level])
        elif ctx.parent is not None and ctx.parent.get_parameter_source(level) in typed_sources:
            chosen[level] = str(ctx.parent.params[level])
        else:
            chosen[level] = context_default(level, configured, chosen)
    return [chosen[level] or "default" for level in levels]


def _create(ctx: click.Context, document: dict[str, Any], dry_run: str, output: str | None) -> None:
    try:
        res = parse_resource(document)
        refuse_bad_images(res)  # the server's 422s, before anything is sent
        refuse_unpublishable_ports(res)  # `create cellset -p 80`: usage (exit 2)
    except ValueError as error:
        fail(str(error), EXIT_USAGE)
    if dry_run == "client":
        report_created(res, output, " (dry run)")
        return

    async def work(client: ApiClient) -> None:
        created = await client.create(res, dry_run=dry_run == "server")
        report_created(created, output, " (server dry run)" if dry_run == "server" else "")

    run(ctx, work)


def report_created(res: AnyResource, output: str | None, note: str = "") -> None:
    """What a create prints (``run`` and ``create``): kubectl's ``KIND/NAME created`` line
    with ``note`` (`` (dry run)``), or the object as ``-o`` says."""
    name = f"{kind_slug(res.kind)}/{res.metadata.name}"
    if output in ("yaml", "json"):
        from .output import render_documents

        click.echo(render_documents([res], "yaml" if output == "yaml" else "json"), nl=False)
    else:
        click.echo(name if output == "name" else f"{name} created{note}")


def _document(kind: Kind, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": kind.value,
        "metadata": {"name": name},
        "spec": spec,
    }


def _hierarchy_command(kind: Kind, levels: tuple[str, ...], example: str) -> click.Command:
    def create_level(
        ctx: click.Context, name: str, dry_run: str, output: str | None, **scope: str
    ) -> None:
        fields = {"realm": "realmId", "space": "spaceId"}
        spec = dict(zip((fields[level] for level in levels), _scope(ctx, *levels), strict=True))
        _create(ctx, _document(kind, name, spec), dry_run, output)

    command: Callable[..., Any] = create_level
    for level in reversed(levels):
        command = click.option(
            f"--{level}",
            cls=ScopeOption,
            default="default",
            show_default="the context's, else default",
            help=f"The {level} it belongs to.",
        )(command)
    command = _OUTPUT(dry_run_option(command))
    command = click.argument("name")(command)
    help_text = (
        f"Create a {kind.value} NAME (kubectl's create namespace).\n\n\b\nExample:\n  {example}"
    )
    return click.command(kind_slug(kind), help=help_text)(click.pass_context(command))


create_realm = _hierarchy_command(Kind.REALM, (), "kukectl create realm prod")
create_space = _hierarchy_command(Kind.SPACE, ("realm",), "kukectl create space web --realm prod")
create_stack = _hierarchy_command(
    Kind.STACK, ("realm", "space"), "kukectl create stack site --realm prod --space web"
)


@click.command("cellset")
@click.argument("name")
@click.option("--image", required=True, help="Image of the cells' single container.")
@click.option("--replicas", type=IntegerRange(min=0), default=1, show_default=True)
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
@container_options
@dry_run_option
@_OUTPUT
@scope_options
@click.pass_context
def create_cellset(
    ctx: click.Context,
    /,
    name: str,
    image: str,
    replicas: int,
    words: tuple[str, ...],
    dry_run: str,
    output: str | None,
    realm: str,
    space: str,
    stack: str,
    **container: Any,
) -> None:
    """Create a CellSet NAME of REPLICAS cells running IMAGE [-- ARGS] (kubectl's create
    deployment): its cells are labelled app=NAME, its selector matches them, its container
    is NAME and takes `kukectl run`'s container options.

    \b
    Examples:
      kukectl create cellset web --image nginx:1.27 --replicas 3
      kukectl create cellset worker --image busybox -e QUEUE=jobs -- sh -c 'sleep 1d'
    """
    realm, space, stack = _scope(ctx, "realm", "space", "stack")
    labels = {"app": name}
    spec = {
        "realmId": realm,
        "spaceId": space,
        "stackId": stack,
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [build_container(name, image, words, container)]},
        },
    }
    _create(ctx, _document(Kind.CELL_SET, name, spec), dry_run, output)
