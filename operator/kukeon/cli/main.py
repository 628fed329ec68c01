"""``kukectl``: the click commands.

Every command resolves its connection lazily (``completion`` and ``version --client``
need no server), runs one coroutine against ``ApiClient`` and maps every failure to one
readable line on stderr and an exit code: 0 success, 1 the server (or reaching it) failed,
2 the command line or the manifests are wrong. A traceback is never shown.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, TypeVar

import click
import yaml
from click.shell_completion import CompletionItem, get_completion_class
from rich.console import Console

import kukeon
from kukeon.api import (
    API_VERSION,
    SCOPE_PLACEHOLDER,
    InvalidResource,
    Kind,
    key_of,
    parse_resource,
)
from kukeon.apiserver.client import (
    ApiClient,
    ApiRequestError,
    ServerAddressError,
    ServerUnreachable,
    parse_server,
)
from kukeon.apiserver.paths import API_ROOT, KINDS, kind_for_alias
from kukeon.cli.config import (
    ConfigError,
    Connection,
    Context,
    KukectlConfig,
    default_config_path,
    load_config,
    resolve_connection,
    save_config,
)
from kukeon.cli.eventview import events_of
from kukeon.cli.manifests import (
    IMPLICIT_PARENT_ANNOTATION,
    Applier,
    Document,
    ManifestProblems,
    Reporter,
    delete_order,
    implicit_parents,
    load_documents,
    read_sources,
    server_refusals,
)
from kukeon.cli.output import (
    describe,
    format_rows,
    kind_slug,
)

T = TypeVar("T")

EXIT_SERVER = 1
EXIT_USAGE = 2

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


# --- plumbing ---------------------------------------------------------------------------


class Options(NamedTuple):
    context: str | None
    server: str | None
    token: str | None
    ca_file: Path | None
    config_path: Path | None
    request_timeout: float


def _error_line(message: str) -> None:
    _stderr.print(f"error: {message}", markup=False, style="red")


def fail(message: str, code: int = EXIT_SERVER) -> NoReturn:
    _error_line(message)
    raise click.exceptions.Exit(code)


def _connection(options: Options) -> Connection:
    config = load_config(options.config_path or default_config_path())
    return resolve_connection(
        config=config,
        context=options.context,
        server=options.server,
        token=options.token,
        ca_file=options.ca_file,
    )


def _api_error_text(exc: ApiRequestError) -> str:
    text = exc.message
    missing = [
        f"{c.field}: {c.message}" if c.field else c.message
        for c in exc.causes
        if (c.field and c.field not in text) or c.message not in text
    ]
    return text + ("; " + "; ".join(missing) if missing else "")


def run(ctx: click.Context, work: Callable[[ApiClient], Awaitable[T]]) -> T:
    """Run ``work`` with a connected client; turn every failure into a line and an exit code."""
    options: Options = ctx.find_root().obj

    async def main() -> T:
        connection = _connection(options)
        async with ApiClient(
            server=connection.server,
            token=connection.token,
            ca_file=connection.ca_file,
            timeout=options.request_timeout,
        ) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except click.exceptions.Exit:
        raise
    except ApiRequestError as exc:
        fail(_api_error_text(exc))
    except ServerUnreachable as exc:
        fail(str(exc))
    except (ConfigError, ServerAddressError) as exc:
        fail(str(exc), EXIT_USAGE)
    except ManifestProblems as exc:
        for line in exc.lines:
            _error_line(line)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    except Exception as exc:  # the promise: never a traceback
        fail(f"unexpected failure: {type(exc).__name__}: {exc}")


class KindType(click.ParamType[Kind]):
    """A kind name or alias: ``cells``, ``cell``, ``ce``, ``Cell``."""

    name = "kind"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Kind:
        if isinstance(value, Kind):
            return value
        kind = kind_for_alias(str(value))
        if kind is None:
            names = ", ".join(info.plural for info in KINDS.values())
            self.fail(f"unknown kind {value!r}; expected one of {names}", param, ctx)
        return kind

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [
            CompletionItem(info.plural)
            for info in KINDS.values()
            if info.plural.startswith(incomplete)
        ]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """``60s``, ``1m30s``, ``500ms``, ``2h`` or a plain number of seconds."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    position, total = 0, 0.0
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * scale[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise ValueError(f"invalid duration {text!r} (examples: 30s, 1m30s, 500ms, 2h)")
    return total


class DurationType(click.ParamType[float]):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


KIND = KindType()
DURATION = DurationType()


def scope_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--realm", default="default", show_default=True, help="Realm of the objects."
            ),
            click.option(
                "--space", default="default", show_default=True, help="Space of the objects."
            ),
            click.option(
                "--stack", default="default", show_default=True, help="Stack of the objects."
            ),
        ]
    ):
        func = option(func)
    return func


def scope_for(kind: Kind, realm: str, space: str, stack: str) -> tuple[str, ...]:
    if kind == Kind.SECRET:
        # A Secret belongs to its realm unless --space (and --stack) narrow it: here the
        # options' "default" defaults mean "none" ("-" in its key).
        ctx = click.get_current_context(silent=True)

        def given(name: str) -> bool:
            if ctx is None:
                return True
            return ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT

        space_part = space if given("space") else SCOPE_PLACEHOLDER
        stack_part = stack if given("stack") else SCOPE_PLACEHOLDER
        if space_part == SCOPE_PLACEHOLDER:
            stack_part = SCOPE_PLACEHOLDER
        return (realm, space_part, stack_part)
    return (realm, space, stack)[: len(KINDS[kind].parents)]


def dry_run_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dry-run",
        type=click.Choice(["none", "server", "client"]),
        default="none",
        show_default=True,
        help="server: the server validates without writing; client: validate locally only.",
    )(func)


def _print(text: str) -> None:
    if text:
        click.echo(text.rstrip("\n"))


# --- the command group ------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--context", help="Context of the config file to use.")
@click.option(
    "--server",
    "-s",
    help="unix:///path/to/kukeond.sock or https://host:port (also KUKEON_SERVER).",
)
@click.option("--token", help="Bearer token for an https server (also KUKEON_TOKEN).")
@click.option(
    "--certificate-authority",
    "ca_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CA file that signed the server's certificate (also KUKEON_CA).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default ~/.config/kukeon/config.yaml, also KUKEON_CONFIG).",
)
@click.option(
    "--request-timeout",
    type=DURATION,
    default="30s",
    show_default=True,
    help="How long one request may take.",
)
@click.version_option(kukeon.__version__, "--version", prog_name="kukectl")
@click.pass_context
def cli(
    ctx: click.Context,
    context: str | None,
    server: str | None,
    token: str | None,
    ca_file: Path | None,
    config_path: Path | None,
    request_timeout: float,
) -> None:
    """kukectl controls kukeon: realms, spaces, stacks and cells on your hosts."""
    ctx.obj = Options(context, server, token, ca_file, config_path, request_timeout)


# --- describe ---------------------------------------------------------------------------


@cli.command("describe")
@click.argument("kind", type=KIND)
@click.argument("names", nargs=-1, required=True)
@scope_options
@click.pass_context
def describe_command(
    ctx: click.Context, kind: Kind, names: tuple[str, ...], realm: str, space: str, stack: str
) -> None:
    """Show one object in detail: spec, status, containers and reasons.

    \b
    Examples:
      kukectl describe cell web
      kukectl describe node n1
      kukectl describe space edge --realm prod
    """
    scope = scope_for(kind, realm, space, stack)

    async def work(client: ApiClient) -> None:
        pages = []
        for name in names:
            res = await client.get(kind, (*scope, name))
            pages.append(describe(res, events=await events_of(client, res)))
        _print("\n".join(pages))

    run(ctx, work)


# --- apply / create ---------------------------------------------------------------------


def _load(files: Sequence[str]) -> list[Document]:
    if not files:
        fail("-f/--filename is required (a file, a directory or - for stdin)", EXIT_USAGE)
    try:
        return load_documents(read_sources(files))
    except ManifestProblems as exc:
        for line in exc.lines:
            _error_line(line)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read manifests: {exc}", EXIT_USAGE)


def _reporter() -> Reporter:
    return Reporter(ok=lambda line: click.echo(line), error=_error_line)


def _write(ctx: click.Context, files: Sequence[str], dry_run: str, *, create_only: bool) -> None:
    documents = _load(files)  # everything is validated before anything is sent
    if dry_run == "client":
        for doc in documents:
            click.echo(f"{doc.name} valid (client dry run)")
        return

    async def work(client: ApiClient) -> bool:
        if dry_run != "server":
            # The server validates everything first; one refusal and nothing is written.
            refusals = await server_refusals(client, documents, create_only=create_only)
            if refusals:
                for line in refusals:
                    _error_line(line)
                _error_line("nothing was written: the server refused the documents above")
                return False
        applier = Applier(client=client, reporter=_reporter(), dry_run=dry_run == "server")
        return await applier.apply(documents, create_only=create_only)

    if not run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)


_FILE_OPTION = click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    help="Manifest file, directory of manifests, or - for stdin (repeatable).",
)


@cli.command()
@_FILE_OPTION
@dry_run_option
@click.pass_context
def apply(ctx: click.Context, files: tuple[str, ...], dry_run: str) -> None:
    """Create or update objects from manifests, parents first.

    Every document is validated before anything is written; one invalid document aborts
    the whole apply. Missing parent realms, spaces and stacks are created with defaults.

    \b
    Examples:
      kukectl apply -f app.yaml
      kukectl apply -f app/                    # every *.yaml, *.yml, *.json in it
      kukectl apply -f - < app.yaml
      kukectl apply -f app.yaml --dry-run=server
    """
    _write(ctx, files, dry_run, create_only=False)


@cli.group(invoke_without_command=True)
@_FILE_OPTION
@dry_run_option
@click.pass_context
def create(ctx: click.Context, files: tuple[str, ...], dry_run: str) -> None:
    """Create objects from manifests; an object that already exists is an error.

    `kukectl create secret generic NAME ...` creates a Secret from literals and files.

    \b
    Examples:
      kukectl create -f app.yaml
      kukectl create secret generic api --realm prod --from-literal token=s3cr3t
    """
    if ctx.invoked_subcommand is None:
        _write(ctx, files, dry_run, create_only=True)


@create.group("secret")
def create_secret() -> None:
    """Create a Secret (values are sent once and never shown again)."""


def _secret_values(literals: Sequence[str], sources: Sequence[str]) -> dict[str, bytes]:
    values: dict[str, bytes] = {}

    def add(key: str, value: bytes, origin: str) -> None:
        if key in values:
            fail(f"key {key!r} is given twice ({origin})", EXIT_USAGE)
        values[key] = value

    for literal in literals:
        key, sep, value = literal.partition("=")
        if not sep or not key:
            fail(f"--from-literal {literal.split('=')[0]!r}...: must be KEY=VALUE", EXIT_USAGE)
        add(key, value.encode(), "--from-literal")
    for source in sources:
        key, sep, path = source.partition("=")
        if not sep:
            key, path = Path(source).name, source
        try:
            add(key, Path(path).read_bytes(), f"--from-file {path}")
        except OSError as exc:
            fail(f"--from-file {path}: {exc.strerror or exc}", EXIT_USAGE)
    return values


@create_secret.command("generic")
@click.argument("name")
@click.option(
    "--from-literal",
    "literals",
    multiple=True,
    help="KEY=VALUE (repeatable). The value ends up in your shell history: prefer files.",
)
@click.option(
    "--from-file",
    "sources",
    multiple=True,
    help="KEY=PATH or PATH (the key is the file's name); repeatable.",
)
@click.option("--realm", required=True, help="Realm of the Secret.")
@click.option("--space", help="Narrow the Secret to a space of the realm.")
@click.option("--stack", help="Narrow the Secret to a stack of the space (needs --space).")
@click.option("-l", "--label", "labels", multiple=True, help="A label, key=value (repeatable).")
@dry_run_option
@click.pass_context
def create_secret_generic(
    ctx: click.Context,
    name: str,
    literals: tuple[str, ...],
    sources: tuple[str, ...],
    realm: str,
    space: str | None,
    stack: str | None,
    labels: tuple[str, ...],
    dry_run: str,
) -> None:
    """Create a Secret NAME from --from-literal and --from-file values, as kubectl does."""
    values = _secret_values(literals, sources)
    metadata: dict[str, Any] = {"name": name, "realm": realm}
    if space:
        metadata["space"] = space
    if stack:
        metadata["stack"] = stack
    if labels:
        metadata["labels"] = dict(label.partition("=")[::2] for label in labels)
    document = {
        "apiVersion": API_VERSION,
        "kind": Kind.SECRET.value,
        "metadata": metadata,
        "data": {key: base64.b64encode(value).decode() for key, value in values.items()},
    }
    try:
        secret = parse_resource(document)
    except InvalidResource as exc:
        for line in exc.lines():
            _error_line(line)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    if dry_run == "client":
        click.echo(f"secret/{name} created (client dry run)")
        return

    async def work(client: ApiClient) -> None:
        await client.create(secret, dry_run=dry_run == "server")
        click.echo(f"secret/{name} created" + (" (server dry run)" if dry_run == "server" else ""))

    run(ctx, work)


@cli.group("secret")
def secret_group() -> None:
    """Secrets' encryption at rest.

    \b
    Examples:
      kukectl secret rotate-key                # seal every Secret with a new key
      kukectl secret rotate-key --prune        # and drop the keys no Secret uses
    """


@secret_group.command("rotate-key")
@click.option(
    "--key-id",
    help="Make this key of kukeond's key file current (a fleet: add it to every node's "
    "file first); default: generate a new key.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Afterwards remove the keys no stored value uses from the key file.",
)
@click.pass_context
def rotate_key(ctx: click.Context, key_id: str | None, prune: bool) -> None:
    """Seal every Secret and registry password again under a new key (admin only)."""
    body: dict[str, Any] = {"prune": prune}
    if key_id:
        body["keyId"] = key_id

    async def work(client: ApiClient) -> Any:
        return await client.request("POST", f"{API_ROOT}/encryption/rotate-key", body=body)

    answer = run(ctx, work)
    click.echo(
        f"encryption key {answer['currentKeyId']} is current (was {answer['previousKeyId']}); "
        f"{answer['documentsResealed']} document(s) sealed again"
    )
    for failure in answer.get("failed") or []:
        _error_line(f"not sealed again: {failure}")
    if answer.get("removedKeyIds"):
        click.echo(f"removed key(s): {', '.join(answer['removedKeyIds'])}")
    if answer.get("failed"):
        raise click.exceptions.Exit(EXIT_SERVER)


# --- delete -----------------------------------------------------------------------------


async def _cells_left(client: ApiClient, targets: Sequence[tuple[Kind, tuple[str, ...]]]) -> int:
    """The cells still stored under the realms, spaces and stacks being deleted."""
    left = 0
    for kind, key in targets:
        if kind in (Kind.REALM, Kind.SPACE, Kind.STACK):
            with contextlib.suppress(ApiRequestError):
                left += len((await client.list(Kind.CELL, key)).items)
    return left


async def _wait_gone(
    client: ApiClient, targets: Sequence[tuple[Kind, tuple[str, ...]]], within: float
) -> list[str]:
    """Wait until every target is gone; the names still present at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    remaining = list(targets)
    show = sys.stderr.isatty()
    status = _stderr.status("") if show else None
    if status is not None:
        status.start()
    try:
        while remaining:
            still: list[tuple[Kind, tuple[str, ...]]] = []
            for kind, key in remaining:
                try:
                    await client.get(kind, key)
                    still.append((kind, key))
                except ApiRequestError as exc:
                    if exc.code != 404:
                        raise
            remaining = still
            if not remaining or loop.time() >= deadline:
                break
            if status is not None:
                names = ", ".join(f"{kind_slug(k)}/{key[-1]}" for k, key in remaining)
                cells = await _cells_left(client, remaining)
                left = f" ({cells} cells left)" if cells else ""
                status.update(f"waiting for {names} to be deleted{left}")
            await asyncio.sleep(0.25 if status is None else 1.0)
    finally:
        if status is not None:
            status.stop()
    return [f"{kind_slug(k)}/{key[-1]}" for k, key in remaining]


@cli.command()
@click.argument("kind", type=KIND, required=False)
@click.argument("names", nargs=-1)
@_FILE_OPTION
@click.option(
    "--cascade", is_flag=True, help="Also delete the children (else refused while they exist)."
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
@dry_run_option
@scope_options
@click.pass_context
def delete(
    ctx: click.Context,
    kind: Kind | None,
    names: tuple[str, ...],
    files: tuple[str, ...],
    cascade: bool,
    wait_: bool,
    timeout: float,
    ignore_not_found: bool,
    selector: str | None,
    every: bool,
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
      kukectl delete cells -l tier=web
      kukectl delete cells --all --realm prod --space edge --stack web
      kukectl delete realm prod --cascade        # everything in it
      kukectl delete -f app/                     # what apply -f app/ created, parents too
    """
    targets: list[tuple[Kind, tuple[str, ...]]]
    implicit: list[tuple[Kind, tuple[str, ...]]] = []
    if files:
        if kind is not None or names or selector or every:
            fail("give either KIND NAME... (or -l/--all) or -f FILE, not both", EXIT_USAGE)
        documents = delete_order(_load(files))
        targets = [(Kind(d.resource.kind), key_of(d.resource)) for d in documents]
        implicit = implicit_parents(documents)
    else:
        if kind is None or bool(names) + bool(selector) + every != 1:
            fail("give KIND NAME..., KIND -l SELECTOR, KIND --all or -f FILE", EXIT_USAGE)
        scope = scope_for(kind, realm, space, stack)
        targets = [(kind, (*scope, name)) for name in names]
    if (selector or every) and dry_run == "client":
        fail("-l/--all need the server: use --dry-run=server", EXIT_USAGE)
    if dry_run == "client":
        for target_kind, key in targets:
            click.echo(f"{kind_slug(target_kind)}/{key[-1]} deleted (client dry run)")
        return
    server_dry = dry_run == "server"
    suffix = " (server dry run)" if server_dry else ""

    async def work(client: ApiClient) -> bool:
        ok = True
        deleted: list[tuple[Kind, tuple[str, ...]]] = []
        if kind is not None and (selector or every):
            scope = scope_for(kind, realm, space, stack)
            listing = await client.list(kind, scope, label_selector=selector)
            targets.extend((kind, key_of(res)) for res in listing.items)
            if not targets:
                _stderr.print(f"No {KINDS[kind].plural} matched.", markup=False)
        for target_kind, key in targets:
            label = f"{kind_slug(target_kind)}/{key[-1]}"
            try:
                await client.delete(target_kind, key, cascade=cascade, dry_run=server_dry)
            except ApiRequestError as exc:
                if exc.code == 404 and ignore_not_found:
                    continue
                ok = False
                _error_line(f"{label}: {_api_error_text(exc)}")
                continue
            deleted.append((target_kind, key))
            click.echo(f"{label} deleted{suffix}")
        if wait_ and not server_dry and deleted:
            left = await _wait_gone(client, deleted, timeout)
            if left:
                _error_line(f"timed out after {timeout:g}s waiting for {', '.join(left)} to go")
                ok = False
            elif implicit:
                ok = await _delete_implicit_parents(client, implicit, timeout) and ok
        return ok

    if not run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)


async def _delete_implicit_parents(
    client: ApiClient, parents: Sequence[tuple[Kind, tuple[str, ...]]], within: float
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
                _error_line(f"{label}: {_api_error_text(exc)}")
            continue
        if found.metadata.annotations.get(IMPLICIT_PARENT_ANNOTATION) != "true":
            continue  # made by someone, not by apply on the way: theirs to delete
        try:
            await client.delete(kind, key)
        except ApiRequestError as exc:
            if exc.code == 409:
                click.echo(f"{label} kept (it has other children)")
                continue
            ok = False
            _error_line(f"{label}: {_api_error_text(exc)}")
            continue
        click.echo(f"{label} deleted (apply had created it)")
        if await _wait_gone(client, [(kind, key)], within):
            _error_line(f"timed out after {within:g}s waiting for {label} to go")
            return False
    return ok


# --- wait -------------------------------------------------------------------------------


def _parse_condition(text: str) -> tuple[str, str | None]:
    if text == "delete":
        return "delete", None
    if text.lower() == "condition=ready":  # kubectl's spelling: Ready is kukeon's state
        return "state", "Ready"
    field, sep, value = text.partition("=")
    if field != "state" or not sep or not value:
        fail(f"--for must be state=STATE, condition=Ready or delete, got {text!r}", EXIT_USAGE)
    return "state", value


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--for",
    "condition",
    required=True,
    help="state=STATE (any state name), condition=Ready (= state=Ready) or delete.",
)
@click.option("--timeout", type=DURATION, default="30s", show_default=True)
@scope_options
@click.pass_context
def wait(
    ctx: click.Context,
    targets: tuple[str, ...],
    condition: str,
    timeout: float,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Wait for objects (KIND/NAME) to reach a state or to be deleted.

    \b
    Examples:
      kukectl wait cell/web --for=state=Ready --timeout=60s
      kukectl wait cell/web --for=condition=Ready
      kukectl wait cell/job --for=delete
    """
    what, expected = _parse_condition(condition)
    parsed: list[tuple[Kind, tuple[str, ...]]] = []
    for target in targets:
        kind_text, sep, name = target.partition("/")
        kind = kind_for_alias(kind_text)
        if not sep or not name or kind is None:
            fail(f"{target!r}: expected KIND/NAME, e.g. cell/web", EXIT_USAGE)
        parsed.append((kind, (*scope_for(kind, realm, space, stack), name)))

    async def work(client: ApiClient) -> bool:
        if what == "delete":
            left = await _wait_gone(client, parsed, timeout)
            for label in left:
                _error_line(f"timed out after {timeout:g}s waiting for {label} to be deleted")
            for kind, key in parsed:
                if f"{kind_slug(kind)}/{key[-1]}" not in left:
                    click.echo(f"{kind_slug(kind)}/{key[-1]} condition met")
            return not left
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ok = True
        for kind, key in parsed:
            label = f"{kind_slug(kind)}/{key[-1]}"
            last = "unknown"
            while True:
                try:
                    res = await client.get(kind, key)
                    last = str(getattr(res.status, "state", "unknown"))
                    if last.lower() == str(expected).lower():
                        click.echo(f"{label} condition met")
                        break
                except ApiRequestError as exc:
                    if exc.code != 404:
                        raise
                    _error_line(_api_error_text(exc))  # as kubectl: no waiting for nothing
                    ok = False
                    break
                if loop.time() >= deadline:
                    _error_line(
                        f"timed out after {timeout:g}s waiting for {label} to be "
                        f"{expected} (it is {last})"
                    )
                    ok = False
                    break
                await asyncio.sleep(0.25)
        return ok

    if not run(ctx, work):
        raise click.exceptions.Exit(EXIT_SERVER)


# --- config -----------------------------------------------------------------------------


def _config_path(ctx: click.Context) -> Path:
    options: Options = ctx.find_root().obj
    return options.config_path or default_config_path()


def _load_or_fail(path: Path) -> KukectlConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


@cli.group("config")
def config_group() -> None:
    """Contexts of ~/.config/kukeon/config.yaml: which server, token and CA to use.

    \b
    Examples:
      kukectl config set-context prod --server https://n1:9443 --token-file t --current
      kukectl config get-contexts
      kukectl config use-context prod
      kukectl config current-context
    """


@config_group.command("view")
@click.pass_context
def config_view(ctx: click.Context) -> None:
    """Print the config file (tokens masked)."""
    config = _load_or_fail(_config_path(ctx))
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    for context in document.get("contexts", []):
        if "token" in context:
            context["token"] = "REDACTED"
    click.echo(yaml.safe_dump(document, sort_keys=False).rstrip())


@config_group.command("get-contexts")
@click.pass_context
def config_get_contexts(ctx: click.Context) -> None:
    """List the contexts; * marks the current one."""
    config = _load_or_fail(_config_path(ctx))
    rows = [["CURRENT", "NAME", "SERVER"]]
    for context in config.contexts:
        current = "*" if context.name == config.current_context else ""
        rows.append([current, context.name, context.server])
    click.echo("\n".join(format_rows(rows)))


@config_group.command("current-context")
@click.pass_context
def config_current_context(ctx: click.Context) -> None:
    """Print the current context's name (exit 1 when none is set)."""
    config = _load_or_fail(_config_path(ctx))
    if not config.current_context:
        fail("current-context is not set")
    click.echo(config.current_context)


@config_group.command("use-context")
@click.argument("name")
@click.pass_context
def config_use_context(ctx: click.Context, name: str) -> None:
    """Make NAME the current context."""
    path = _config_path(ctx)
    config = _load_or_fail(path)
    if config.context(name) is None:
        known = ", ".join(c.name for c in config.contexts) or "none"
        fail(f"context {name!r} not found in {path} (known: {known})", EXIT_USAGE)
    config.current_context = name
    save_config(path, config)
    click.echo(f"switched to context {name!r}")


@config_group.command("set-context")
@click.argument("name")
@click.option("--server", "context_server", help="unix:///path or https://host:port.")
@click.option("--token", "context_token", help="Bearer token.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--certificate-authority", "context_ca", type=click.Path(path_type=Path, dir_okay=False)
)
@click.option("--current", is_flag=True, help="Also make it the current context.")
@click.pass_context
def config_set_context(
    ctx: click.Context,
    name: str,
    context_server: str | None,
    context_token: str | None,
    token_file: Path | None,
    context_ca: Path | None,
    current: bool,
) -> None:
    """Create or change a context; options not given keep their value."""
    if context_server is not None:
        try:
            parse_server(context_server)
        except ServerAddressError as exc:
            fail(str(exc), EXIT_USAGE)
    path = _config_path(ctx)
    config = _load_or_fail(path)
    existing = config.context(name)
    fields: dict[str, Any] = existing.model_dump() if existing else {"name": name}
    updates = {
        "server": context_server,
        "token": context_token,
        "token_file": token_file.resolve() if token_file else None,
        "certificate_authority": context_ca.resolve() if context_ca else None,
    }
    fields.update({key: value for key, value in updates.items() if value is not None})
    context = Context.model_validate(fields)
    config.contexts = [c for c in config.contexts if c.name != name] + [context]
    if current or config.current_context is None:
        config.current_context = name
    save_config(path, config)
    click.echo(f"context {name!r} {'modified' if existing else 'created'}")


# --- version / completion ---------------------------------------------------------------


@cli.command()
@click.option("--client", "client_only", is_flag=True, help="Only the client's version.")
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text")
@click.pass_context
def version(ctx: click.Context, client_only: bool, output: str) -> None:
    """Show the client's and the server's versions.

    \b
    Examples:
      kukectl version
      kukectl version --client -o json
    """
    info: dict[str, Any] = {"clientVersion": {"gitVersion": kukeon.__version__}}
    if output == "text":
        # The client's version is printed even when the server cannot be reached.
        click.echo(f"Client Version: {kukeon.__version__}")
    if not client_only:
        info["serverVersion"] = run(ctx, lambda client: client.version())
    if output == "json":
        click.echo(json.dumps(info, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(info, sort_keys=False).rstrip())
    elif not client_only:
        click.echo(f"Server Version: {info['serverVersion'].get('gitVersion', 'unknown')}")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script.

    \b
    Examples:
      source <(kukectl completion bash)
      kukectl completion zsh > "${fpath[1]}/_kukectl"
      kukectl completion fish > ~/.config/fish/completions/kukectl.fish
    """
    completion_class = get_completion_class(shell)
    if completion_class is None:  # pragma: no cover - the three shells are built into click
        fail(f"no completion support for {shell}", EXIT_USAGE)
    script = completion_class(cli, {}, "kukectl", "_KUKECTL_COMPLETE").source()
    click.echo(script)


# --- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``kukectl``: every failure is one ``error:`` line (Click's
    usage errors included) and the documented exit code (1 server, 2 usage)."""
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="kukectl",
            standalone_mode=False,
        )
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "kukectl"
        _error_line(f"{exc.format_message()} (see '{where} --help')")
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        _error_line(exc.format_message())
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        sys.exit(130)
    except Exception as exc:  # never a traceback
        _error_line(f"unexpected failure: {type(exc).__name__}: {exc}")
        sys.exit(EXIT_SERVER)
    sys.exit(code if isinstance(code, int) else 0)


# The workload commands (run, logs, exec, start/stop/restart/kill), image and the node
# commands (cordon, uncordon, drain) live in their own modules and register themselves on
# `cli`; importing them here makes them part of kukectl.
from kukeon.cli import diff as _diff  # noqa: E402, F401
from kukeon.cli import edit as _edit  # noqa: E402, F401
from kukeon.cli import events as _events  # noqa: E402, F401
from kukeon.cli import explain as _explain  # noqa: E402, F401
from kukeon.cli import get as _get  # noqa: E402, F401
from kukeon.cli import images as _images  # noqa: E402, F401
from kukeon.cli import metadata as _metadata  # noqa: E402, F401
from kukeon.cli import nodes as _nodes  # noqa: E402, F401
from kukeon.cli import top as _top  # noqa: E402, F401
from kukeon.cli import transfer as _transfer  # noqa: E402, F401
from kukeon.cli import workloads as _workloads  # noqa: E402, F401

if __name__ == "__main__":
    main()
