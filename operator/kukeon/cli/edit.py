"""`kukectl edit KIND NAME`: the object in an editor, written back when it changed.

As kubectl's: the editor is `KUKE_EDITOR`, else `EDITOR`, else `vi`; an unchanged file
cancels; a change the server refuses reopens the editor with the reasons as comments at the
top, and saving it unchanged then gives up (exit 1). The write is a PUT guarded by the
resourceVersion that was read, so a concurrent change is never overwritten: one to status
only (kukeond's) lets the edit go over the newer version; one to labels, annotations or
spec is a conflict, and the edited file is kept for the user.
Only labels, annotations and spec are taken from the file (what a manifest owns); status
and identity stay as stored.

The record of the last apply (`kukeon.io/last-applied-configuration`) is written back as
the file has it, unchanged unless edited by hand, as kubectl's edit leaves its own;
`--save-config` records the edited object instead (kubectl's flag), so a later `apply`
merges with what the edit wrote (``applying.with_edit_recorded``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import click
import yaml

from kukeon.api import AnyResource, InvalidResource, Kind, parse_resource, to_document
from kukeon.api.applying import updated_object, with_edit_recorded
from kukeon.api.yamlread import load_yaml
from kukeon.client.apiclient import ApiClient, ApiRequestError, print_warning
from kukeon.client.conflicts import CONFLICT_ATTEMPTS, conflict_attempts, is_conflict

from .params import (
    KIND_OR_OBJECT,
    field_validation,
    one_object,
    scope_for,
    scope_options,
    validate_option,
)
from .runner import EXIT_SERVER, EXIT_USAGE, api_error_text, fail, run
from .tables import kind_slug

_HEADER = (
    "# Edit the object below; lines starting with '#' are ignored. Labels, annotations and\n"
    "# spec are written back when you save and quit; an unchanged file cancels the edit.\n"
)


def _editor() -> list[str]:
    command = os.environ.get("KUKE_EDITOR") or os.environ.get("EDITOR") or "vi"
    try:
        words = shlex.split(command)
    except ValueError as exc:  # an unclosed quote: was "unexpected failure: ValueError"
        fail(f"cannot read the editor command {command!r}: {exc}", EXIT_USAGE)
    if not words:
        fail(f"the editor command {command!r} names no program", EXIT_USAGE)
    return words


def _open_in_editor(text: str, suffix: str) -> str:
    editor = _editor()
    with tempfile.TemporaryDirectory(prefix="kukectl-edit-") as directory:
        path = Path(directory) / f"edit{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            result = subprocess.run([*editor, str(path)], check=False)
        except OSError as exc:
            fail(f"cannot run the editor {editor[0]!r}: {exc.strerror}", EXIT_USAGE)
        if result.returncode != 0:
            fail(f"the editor exited with {result.returncode}; nothing was changed")
        # What the editor left may be gone or no text: said, not a traceback.
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            fail("the editor removed the file; nothing was changed")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read what the editor saved ({exc}); nothing was changed")


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


CHANGED_ON_SERVER = "its labels, annotations or spec changed on the server since it was opened"
KEPT_CHANGING = f"it kept changing on the server ({CONFLICT_ATTEMPTS} attempts to write it)"


async def _write_back(
    client: ApiClient,
    key: tuple[str, ...],
    desired: AnyResource,
    opened: AnyResource,
    level: str | None = None,
) -> str | None:
    """Write what the manifest owns; None when written, "" when nothing differed, else why
    not (a refusal to show in the editor). ``level``: the ``fieldValidation`` to ask for.

    The object may have moved on while the editor was open: a status write (a restart, a
    probe) changes its resourceVersion, not what the file owns, so the edit is written over
    the newer version; a change to its labels, annotations or spec is a conflict, as
    kubectl's edit over another's change of the same object.
    """
    client.field_validation = level
    async for _ in conflict_attempts():
        current = await client.get(Kind(desired.kind), key)
        moved = current.metadata.resource_version != opened.metadata.resource_version
        if moved and updated_object(opened, current) is not None:
            return CHANGED_ON_SERVER
        update = updated_object(desired, current)
        if update is None:
            return ""
        try:
            await client.update(update)
        except ApiRequestError as exc:
            if is_conflict(exc):
                continue  # written again meanwhile: look at the newer version
            if exc.code >= 500:
                raise
            return api_error_text(exc)
        return None
    return KEPT_CHANGING


def _kept_copy(body: str) -> str:
    """The edited text saved where the user can take it up again (kubectl keeps it too)."""
    handle, path = tempfile.mkstemp(prefix="kukectl-edit-", suffix=".yaml")
    with os.fdopen(handle, "w", encoding="utf-8") as copy:
        copy.write(body)
    return path


def _parsed(document: dict[str, Any], level: str | None) -> AnyResource:
    """The edited object; at ``--validate`` warn or ignore its unknown fields left out
    (warn: each named on stderr)."""
    if level is None:
        return parse_resource(document)
    dropped: list[str] = []
    desired = parse_resource(document, unknown_fields=dropped)
    if level == "Warn":
        for path in dropped:
            print_warning(f"unknown field {json.dumps(path)}")
    return desired


@click.command()
@click.argument("kind_or_object", type=KIND_OR_OBJECT, metavar="KIND[/NAME]")
@click.argument("name", required=False)
@scope_options
@validate_option
@click.option(
    "--save-config",
    is_flag=True,
    help="Record the edited object in its kukeon.io/last-applied-configuration annotation, "
    "as if applied, for a later `kukectl apply` to merge with (kubectl's flag); without it "
    "the record stays as it was.",
)
@click.pass_context
def edit(
    ctx: click.Context,
    kind_or_object: tuple[Kind, str | None],
    name: str | None,
    realm: str,
    space: str,
    stack: str,
    validate: str,
    save_config: bool,
) -> None:
    """Edit an object in $KUKE_EDITOR / $EDITOR and write back what changed.

    \b
    Examples:
      kukectl edit cell web
      kukectl edit cell/web
      KUKE_EDITOR="code --wait" kukectl edit space edge --realm prod
      kukectl edit cell web --validate=warn   # unknown fields left out, each named
      kukectl edit cell web --save-config     # a later apply merges with this edit
    """
    level = field_validation(validate)
    kind, name = one_object(kind_or_object, name)
    key = (*scope_for(kind, realm, space, stack), name)
    label = f"{kind_slug(kind)}/{name}"

    async def fetch(client: ApiClient) -> str:
        return yaml.safe_dump(to_document(await client.get(kind, key)), sort_keys=False)

    original = run(ctx, fetch)
    opened = parse_resource(load_yaml(original))
    shown = _HEADER + original
    refused: str | None = None  # the body the server (or the parser) last refused
    refusal = ""  # and why
    while True:
        body = _without_comments(_open_in_editor(shown, ".yaml"))
        if refused is None and body.strip() == _without_comments(original).strip():
            click.echo("Edit cancelled, no changes made.")
            return
        if refused is not None and body.strip() == refused.strip():
            # Said again here: the reasons were only in the file, which a script never
            # shows and an editor closed in haste hides; the edit is kept, as kubectl does.
            why = "; ".join(refusal.splitlines())
            fail(
                f"{label}: the edit was refused and not changed since, nothing was written: "
                f"{why} (your edit is kept in {_kept_copy(body)})"
            )
        problem = None
        try:
            document = load_yaml(body)
            if not isinstance(document, dict):
                raise ValueError("the file must hold one object")
            desired = _parsed(document, level)
            if (Kind(desired.kind), desired.metadata.name) != (kind, name):
                raise ValueError(f"the kind and name must stay {kind.value} {name}")
            if save_config:
                desired = with_edit_recorded(desired)  # too large: said in the editor
        except (yaml.YAMLError, ValueError, InvalidResource) as exc:
            problem = str(exc)
        if problem is None:
            writing = partial(_write_back, key=key, desired=desired, opened=opened, level=level)
            problem = run(ctx, writing)
            if problem == "":
                click.echo(f"{label} unchanged (only fields kukectl does not write changed)")
                return
            if problem is None:
                click.echo(f"{label} edited")
                return
            if problem in (CHANGED_ON_SERVER, KEPT_CHANGING):
                fail(
                    f"{label}: {problem}; your edit is kept in {_kept_copy(body)}; edit again "
                    "to make it over the latest version",
                    EXIT_SERVER,
                )
        refused, refusal = body, problem
        reasons = "".join(f"# error: {line}\n" for line in problem.splitlines())
        shown = _HEADER + "#\n" + reasons + "#\n" + body + "\n"
