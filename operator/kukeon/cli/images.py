"""kukectl's image commands: ls, pull, import, inspect, rm, prune.

Images are per node and per realm (a containerd namespace each), served by the routes
kukeond adds beside the resource API (``kukeon.daemon.imageroutes``); ``--node`` asks
another node's kukeond through the one we talk to. The formatting here is pure (a list of
image documents and a clock in, text out), so it is tested without a server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import click
import yaml

from kukeon.api import Kind
from kukeon.api.imageref import reference_problem
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.errors import UnreadableAnswer, decode_answer, listed
from kukeon.client.paths import collection_path

from .params import IMAGE_REFERENCE, NODE, scope_option
from .runner import EXIT_SERVER, EXIT_USAGE, fail, run
from .tables import NONE, format_rows, human_duration

ListFormat = Literal["table", "wide", "json", "yaml"]
SHORT_DIGEST_HEX = 12

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: int | None) -> str:
    """Bytes as docker prints them (decimal units, 3 significant digits): ``405B``,
    ``12.3kB``, ``4.3MB``, ``150MB``, ``1.21GB``."""
    if size is None or size < 0:
        return NONE
    if size < 1000:
        return f"{size}B"
    value = float(size)
    for unit in _SIZE_UNITS[1:]:
        value /= 1000
        text = f"{value:.3g}"
        if float(text) < 1000 or unit == _SIZE_UNITS[-1]:
            return f"{text}{unit}"
    raise AssertionError("unreachable")


def short_digest(digest: str | None) -> str:
    """``sha256:`` and the first 12 hex digits, as docker's IMAGE ID."""
    if not digest:
        return NONE
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:SHORT_DIGEST_HEX]}" if encoded else digest


def _created(item: Mapping[str, Any]) -> datetime | None:
    text = item.get("created")
    if not isinstance(text, str) or not text:
        return None
    try:
        created = datetime.fromisoformat(text)
    except ValueError:
        return None
    return created if created.tzinfo is not None else None


def image_age(item: Mapping[str, Any], now: datetime) -> str:
    created = _created(item)
    if created is None:
        return NONE
    return human_duration((now - created).total_seconds())


def render_image_table(
    items: Sequence[Mapping[str, Any]], *, now: datetime, wide: bool = False
) -> str:
    """NAME DIGEST SIZE CREATED (wide: the full digest, and PLATFORM), kubectl's spacing."""
    header = ["NAME", "DIGEST", "SIZE", "CREATED"] + (["PLATFORM"] if wide else [])
    rows = [header]
    for item in items:
        digest = str(item.get("digest") or "")
        row = [
            str(item.get("name") or NONE),
            (digest or NONE) if wide else short_digest(digest),
            human_size(item.get("size")),
            image_age(item, now),
        ]
        if wide:
            row.append(str(item.get("platform") or NONE))
        rows.append(row)
    return "\n".join(format_rows(rows))


def render_image_documents(documents: Sequence[Any], fmt: Literal["json", "yaml"]) -> str:
    """One document as itself; several as a YAML stream / a JSON array."""
    if fmt == "json":
        data: Any = documents[0] if len(documents) == 1 else list(documents)
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump_all(list(documents), sort_keys=False, explicit_start=len(documents) > 1)


def images_path(realm: str, image: str | None = None) -> str:
    path = collection_path(Kind.REALM, ()) + f"/{quote(realm, safe='')}/images"
    return path if image is None else f"{path}/{quote(image, safe='/:@')}"


def _params(node: str | None, **extra: str) -> dict[str, str]:
    return {**({"node": node} if node else {}), **extra}


def _where(realm: str, node: str | None) -> str:
    return f"realm {realm}" + (f" on node {node}" if node else "")


realm_option = scope_option("realm", "The realm whose images these are.")
node_option = click.option(
    "--node", type=NODE, help="The node whose images these are (default: the server's own node)."
)


@click.group()
def image() -> None:
    """Images available to a realm's cells (per node: each has its own containerd).

    \b
    Examples:
      kukectl image ls --realm prod
      kukectl image pull docker.io/library/nginx:1.27 --realm prod
      kukectl image import app.tar --realm prod
      kukectl image rm nginx:1.27 --realm prod
      kukectl image prune --realm prod
    """


@image.command("import")
@click.argument("archive", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@realm_option
@node_option
@click.pass_context
def image_import(ctx: click.Context, archive: Path, realm: str, node: str | None) -> None:
    """Import an OCI image archive (e.g. from `skopeo copy ... oci-archive:`)."""

    async def work(client: ApiClient) -> None:
        path = images_path(realm)
        answer = await client.upload(path, archive, params=_params(node))
        for name in listed(answer, "images", f"POST {path}"):
            click.echo(f"image/{name} imported into {_where(realm, node)}")

    run(ctx, work)


@image.command("ls")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "wide", "json", "yaml"]),
    default="table",
    help="Output format.",
)
@realm_option
@node_option
@click.pass_context
def image_ls(ctx: click.Context, output: ListFormat, realm: str, node: str | None) -> None:
    """List the images of a realm: name, digest, size (stored, compressed), age."""

    async def work(client: ApiClient) -> None:
        path = images_path(realm)
        answer = await client.request("GET", path, params=_params(node))
        items = listed(answer, "items", f"GET {path}", of=dict)
        if output in ("json", "yaml"):
            document = {"realm": realm, **({"node": node} if node else {}), "items": items}
            click.echo(render_image_documents([document], output), nl=False)
            return
        click.echo(render_image_table(items, now=datetime.now(UTC), wide=output == "wide"))

    run(ctx, work)


@image.command("pull")
@click.argument("reference", type=IMAGE_REFERENCE)
@realm_option
@node_option
@click.pass_context
def image_pull(ctx: click.Context, reference: str, realm: str, node: str | None) -> None:
    """Pull REFERENCE from its registry with the realm's registry credentials."""
    problem = reference_problem(reference)  # the server's 400, before anything is sent
    if problem is not None:
        fail(problem, EXIT_USAGE)

    async def work(client: ApiClient) -> None:
        # No request timeout: a large image takes as long as it takes.
        chunks = [
            chunk
            async for chunk in client.stream(
                "POST", images_path(realm) + "/pull", params=_params(node, image=reference)
            )
        ]
        pulled = f"POST {images_path(realm)}/pull"
        answer = decode_answer(200, None, b"".join(chunks), request=pulled)
        name = answer.get("name")
        if not isinstance(name, str):
            raise UnreadableAnswer(pulled, "not what kukectl reads: it names no image", str(answer))
        facts = ", ".join(
            fact
            for fact in (
                short_digest(answer.get("digest")) if answer.get("digest") else "",
                human_size(answer["size"]) if answer.get("size") is not None else "",
            )
            if fact
        )
        click.echo(
            f"image/{name} pulled into {_where(realm, node)}" + (f" ({facts})" if facts else "")
        )

    run(ctx, work)


@image.command("inspect")
@click.argument("references", nargs=-1, required=True, type=IMAGE_REFERENCE)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    help="Output format.",
)
@realm_option
@node_option
@click.pass_context
def image_inspect(
    ctx: click.Context,
    references: tuple[str, ...],
    output: Literal["yaml", "json"],
    realm: str,
    node: str | None,
) -> None:
    """Show images: digest, size, created, platform, layers, env, entrypoint, cmd."""

    async def work(client: ApiClient) -> None:
        documents = [
            await client.request("GET", images_path(realm, ref), params=_params(node))
            for ref in references
        ]
        click.echo(render_image_documents(documents, output), nl=False)

    run(ctx, work)


@image.command("rm")
@click.argument("references", nargs=-1, required=True, type=IMAGE_REFERENCE)
@click.option("-f", "--force", is_flag=True, help="Remove it even if cells of the realm use it.")
@realm_option
@node_option
@click.pass_context
def image_rm(
    ctx: click.Context, references: tuple[str, ...], force: bool, realm: str, node: str | None
) -> None:
    """Remove images from a realm; one that a cell of the realm uses needs --force."""

    async def work(client: ApiClient) -> bool:
        failed = False
        params = _params(node, **({"force": "true"} if force else {}))
        for ref in references:
            try:
                removing = images_path(realm, ref)
                answer = await client.request("DELETE", removing, params=params)
            except ApiRequestError as exc:
                # As docker rmi: every image is tried; the exit code says one failed.
                click.echo(f"error: {exc.message}", err=True)
                failed = True
                continue
            for name in listed(answer, "removed", f"DELETE {removing}"):
                click.echo(f"image/{name} removed from {_where(realm, node)}")
            for cell in listed(answer, "usedBy", f"DELETE {removing}", optional=True):
                click.echo(f"warning: cell {cell} still names it", err=True)
        return failed

    if run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)


@image.command("prune")
@realm_option
@node_option
@click.pass_context
def image_prune(ctx: click.Context, realm: str, node: str | None) -> None:
    """Remove every image of the realm that none of its cells names."""

    async def work(client: ApiClient) -> None:
        pruning = images_path(realm) + "/prune"
        answer = await client.request("POST", pruning, params=_params(node))
        removed = listed(answer, "removed", f"POST {pruning}")
        for name in removed:
            click.echo(f"image/{name} removed from {_where(realm, node)}")
        for name in listed(answer, "kept", f"POST {pruning}", optional=True):
            click.echo(
                f"image/{name} kept: imported by an admin (or before kukeon recorded who "
                "imported it), only an admin removes it"
            )
        if not removed:
            click.echo(f"no unused images in {_where(realm, node)}")

    run(ctx, work)
