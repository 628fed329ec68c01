"""``apply``/``create``/``delete -f``: reading manifests and turning them into API calls.

The order of work matters more than anything else here:

1. every source is read and every document validated locally (``kukeon.api``) before a
   single request is sent -- one invalid document aborts the whole command with nothing
   changed, and every error is listed with its file, document index and field path;
2. parents are written before children whatever the file order (and children deleted
   before parents), and a parent that neither the manifests nor the server has is created
   with its default spec, as kukeon's own ``apply`` does;
3. an existing object is updated only when its spec, labels or annotations differ, with
   a compare-and-swap on the resourceVersion that was read -- so ``get -o yaml | apply``
   reports ``unchanged``; what is written is a three-way merge of the manifest, the record
   of the last apply and the stored object (``kukeon.api.applying.applied_object``);
4. before the first write every document goes to the server as a dry run
   (``?dryRun=All``), which validates it exactly as the write would (admission, parents,
   uniqueness); if any is refused, every refusal is reported and nothing is written;
5. a document refused at write time all the same (someone else wrote in between) is
   reported and the others still go through.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple, TextIO

from kukeon.api import (
    API_VERSION,
    SCOPE_PLACEHOLDER,
    SCOPED_KINDS,
    AnyResource,
    Cell,
    CellSet,
    InvalidResource,
    Kind,
    ManifestError,
    key_of,
    load_manifests,
    lookup_scopes,
    parse_resource,
)
from kukeon.api.applying import (
    applied_object,
    stale_manifest_version,
    with_last_applied,
)
from kukeon.cli.tables import kind_slug
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.conflicts import conflict_attempts, is_conflict
from kukeon.client.paths import HIERARCHY, KINDS

from .readlimit import TooLarge, read_limited
from .runner import ManifestProblems

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_NETWORK_FIELD = re.compile(r"spec\.(?:template\.spec\.)?containers\[(\d+)\]\.networks\[(\d+)\]")


class Source(NamedTuple):
    label: str
    text: str


class Document(NamedTuple):
    source: str
    position: int
    """0-based index of the document within its source."""
    resource: AnyResource

    @property
    def name(self) -> str:
        return f"{kind_slug(self.resource.kind)}/{self.resource.metadata.name}"


def _manifests_in(directory: Path, recursive: bool, problems: list[str]) -> list[Path]:
    """The *.yaml, *.yml and *.json files of ``directory`` (``recursive``: and of every
    directory below it, links to directories not followed, as kubectl's ``-R``), sorted."""
    if not recursive:
        return sorted(
            p for p in directory.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file()
        )
    found: list[Path] = []

    def unreadable(error: OSError) -> None:
        problems.append(f"{error.filename}: {error.strerror or error}")

    for top, _, names in os.walk(directory, onerror=unreadable):
        files = (Path(top) / name for name in names)
        found += [p for p in files if p.suffix in MANIFEST_SUFFIXES and p.is_file()]
    return sorted(found)


def read_sources(
    paths: Sequence[str], *, stdin: TextIO | None = None, recursive: bool = False
) -> list[Source]:
    """Files, directories (their *.yaml, *.yml, *.json, sorted; ``recursive``: those below
    them too) and ``-`` for stdin.

    Anything that is not a directory is read as a file when it can be opened: a FIFO,
    ``/dev/stdin``, a process substitution (``-f <(...)``, a ``/dev/fd/N`` pipe). Each is
    read up to ``readlimit.MAX_SOURCE_BYTES``: more is a problem naming it (exit 2), not a read that
    never ends (``-f /dev/zero``, a pipe that never closes).
    """
    sources: list[Source] = []
    problems: list[str] = []

    def read(name: str, reader: Callable[[], str]) -> None:
        try:
            sources.append(Source(name, reader()))
        except TooLarge as exc:
            problems.append(f"{name}: {exc}, the most kukectl reads of one manifest source")
        except UnicodeDecodeError as exc:
            byte = exc.object[exc.start : exc.start + 1].hex()
            problems.append(f"{name}: not UTF-8 text (byte 0x{byte} at offset {exc.start})")
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")

    for given in paths:
        if given == "-":
            given_stdin = stdin or sys.stdin
            read("<stdin>", partial(read_limited, getattr(given_stdin, "buffer", given_stdin)))
            continue
        path = Path(given)
        if path.is_dir():
            files = _manifests_in(path, recursive, problems)
            if not files:
                below = " or below it" if recursive else " (-R: and below it)"
                problems.append(
                    f"{given}: no *.yaml, *.yml or *.json files in this directory{below}"
                )
            for file in files:
                read(str(file), partial(_read_file, file))
        elif path.exists():  # a regular file, a FIFO, a pipe behind /dev/fd/N, /dev/stdin
            read(given, partial(_read_file, path))
        else:
            problems.append(f"{given}: no such file or directory")
    if problems:
        raise ManifestProblems(problems)
    return sources


def _read_file(path: Path) -> str:
    with path.open("rb") as stream:
        return read_limited(stream)


def load_documents(
    sources: Iterable[Source],
    *,
    scope: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
    dropped: list[str] | None = None,
) -> list[Document]:
    """Validate every document of every source; raise ManifestProblems listing all errors.
    ``scope``, ``defaults``: parents for documents that name none (``api.manifests.in_scope``).
    ``dropped``: when a list, fields no model knows are left out and named there
    (``SOURCE: document N: unknown field "spec.foo"``) instead of refused."""
    documents: list[Document] = []
    problems: list[str] = []
    for source in sources:
        unknown: list[tuple[int, str]] | None = [] if dropped is not None else None
        try:
            resources = (
                load_manifests(
                    source.text,
                    scope=scope,
                    defaults=defaults,
                    unknown_fields=unknown,
                    syntax="json" if source.label.endswith(".json") else "auto",
                )
                if source.text.strip()
                else []
            )
        except ManifestError as exc:
            for index, error in exc.errors:
                if isinstance(error, InvalidResource):
                    problems += [
                        f"{source.label}: document {index}: {line}" for line in error.lines()
                    ]
                else:
                    problems.append(f"{source.label}: document {index}: {error}")
            continue
        documents += [Document(source.label, i, res) for i, res in enumerate(resources)]
        if dropped is not None:
            dropped += [
                f"{source.label}: document {i}: unknown field {json.dumps(path)}"
                for i, path in unknown or ()
            ]
    if problems:
        raise ManifestProblems(problems)
    if not documents:
        raise ManifestProblems(["no objects found in the given manifests"])
    return documents


def _depth(res: AnyResource) -> int:
    kind = Kind(res.kind)
    if kind in SCOPED_KINDS or kind == Kind.CELL_SET:
        # After its realm, space and stack, beside (before) the cells using it (a set's
        # cells are its controller's).
        return HIERARCHY.index(Kind.STACK) + 1
    if kind in HIERARCHY:
        return HIERARCHY.index(kind)
    return -1  # a kind outside the hierarchy (Node) has no parents: first in, last out


def _order(res: AnyResource) -> tuple[int, int]:
    """The depth, then a CellSet after the profiles of its depth (it may name one)."""
    return _depth(res), int(res.kind == Kind.CELL_SET)


def apply_order(documents: Sequence[Document]) -> list[Document]:
    """Parents before children; file order kept within a kind."""
    return sorted(documents, key=lambda doc: _order(doc.resource))


def delete_order(documents: Sequence[Document]) -> list[Document]:
    """Children before parents; file order kept within a kind."""
    return sorted(documents, key=lambda doc: tuple(-n for n in _order(doc.resource)))


def parent_chain(res: AnyResource) -> list[tuple[Kind, tuple[str, ...]]]:
    """The ancestors of ``res``, outermost first: a cell's realm, space and stack."""
    key = key_of(res)
    if Kind(res.kind) in SCOPED_KINDS:
        named = [part for part in key[:-1] if part != SCOPE_PLACEHOLDER]
        return [(parent, tuple(named[: i + 1])) for i, parent in enumerate(HIERARCHY[: len(named)])]
    return [(parent, key[: i + 1]) for i, parent in enumerate(KINDS[Kind(res.kind)].parents)]


IMPLICIT_PARENT_ANNOTATION = "kukeon.io/created-by-apply"
"""On a parent `apply` created because no manifest declared it; `delete -f` removes it."""


def default_object(kind: Kind, key: tuple[str, ...]) -> AnyResource:
    """A parent with its default spec, as apply creates it when it is missing."""
    spec = dict(zip(KINDS[kind].parent_fields, key[:-1], strict=True))
    metadata = {"name": key[-1], "annotations": {IMPLICIT_PARENT_ANNOTATION: "true"}}
    return parse_resource(
        {"apiVersion": API_VERSION, "kind": kind.value, "metadata": metadata, "spec": spec}
    )


def implicit_parents(documents: Sequence[Document]) -> list[tuple[Kind, tuple[str, ...]]]:
    """The parents of the documents that no document declares, innermost first (what
    `apply` may have created on the way)."""
    declared = {(Kind(d.resource.kind), key_of(d.resource)) for d in documents}
    found: list[tuple[Kind, tuple[str, ...]]] = []
    for doc in documents:
        for parent in parent_chain(doc.resource):
            if parent not in declared and parent not in found:
                found.append(parent)
    return sorted(found, key=lambda parent: -len(parent[1]))


def _same_set(written: AnyResource, current: AnyResource) -> bool:
    """Whether an update of a CellSet left it as it was."""
    return (
        isinstance(written, CellSet)
        and written.spec == current.spec
        and written.metadata.labels == current.metadata.labels
        and written.metadata.annotations == current.metadata.annotations
    )


class Reporter(NamedTuple):
    ok: Callable[[str], None]
    error: Callable[[str], None]
    names_only: bool = False  # `-o name`: each object's KIND/NAME, not what was done to it
    # `-o yaml|json`: each document's object as the server answered, instead of a line
    objects: list[AnyResource] | None = None


async def server_refusals(
    client: ApiClient, documents: Sequence[Document], *, create_only: bool = False
) -> list[str]:
    """Send every document as a server dry run; every refusal, one line each (none: go)."""
    refusals: list[str] = []
    checker = Applier(
        client=client, reporter=Reporter(ok=lambda _: None, error=refusals.append), dry_run=True
    )
    await checker.apply(documents, create_only=create_only)
    return refusals


def _describe_error(name: str, exc: ApiRequestError) -> str:
    causes = [f"{c.field}: {c.message}" if c.field else c.message for c in exc.causes]
    if causes and exc.code == 422:
        return f"{name}: " + "; ".join(causes)
    return f"{name}: {exc.message}"


def _check_manifest_version(desired: AnyResource, current: AnyResource) -> None:
    """A stale manifest version (``stale_manifest_version``) is a 409, as the server's own
    for a stale write."""
    problem = stale_manifest_version(desired, current)
    if problem is not None:
        raise ApiRequestError(409, "Conflict", problem)


def apply_update(desired: AnyResource, current: AnyResource) -> AnyResource | None:
    """What apply writes over ``current`` (``applying.applied_object``); a manifest it cannot
    merge or record is the server's kind of refusal, a 422 naming why."""
    try:
        return applied_object(desired, current)
    except ValueError as exc:
        raise ApiRequestError(422, "Invalid", str(exc)) from None


def apply_creation(desired: AnyResource) -> AnyResource:
    """What apply creates of ``desired``: the manifest recorded in it (a 422 when too large)."""
    try:
        return with_last_applied(desired)
    except ValueError as exc:
        raise ApiRequestError(422, "Invalid", str(exc)) from None


class Applier:
    """Creates or updates documents through the API, parents first."""

    def __init__(self, *, client: ApiClient, reporter: Reporter, dry_run: bool = False) -> None:
        self._client = client
        self._report = reporter
        self._dry_run = dry_run
        self._known: set[tuple[Kind, tuple[str, ...]]] = set()
        # What a dry run "created": the server does not have these, so a child's dry run
        # that is refused only because such a parent is missing has passed every other check.
        self._simulated: set[tuple[Kind, tuple[str, ...]]] = set()
        self._suffix = " (server dry run)" if dry_run else ""
        self._written: AnyResource | None = None  # the last object created or updated

    async def _exists(self, kind: Kind, key: tuple[str, ...]) -> bool:
        if (kind, key) in self._known:
            return True
        try:
            await self._client.get(kind, key)
        except ApiRequestError as exc:
            if exc.code == 404:
                return False
            raise
        self._known.add((kind, key))
        return True

    async def _ensure_parents(
        self, res: AnyResource, declared: set[tuple[Kind, tuple[str, ...]]]
    ) -> None:
        for kind, key in parent_chain(res):
            if (kind, key) in declared or await self._exists(kind, key):
                continue
            parent = default_object(kind, key)
            await self._create(parent)
            self._known.add((kind, key))
            self._done(f"{kind_slug(kind)}/{key[-1]}", "created")

    async def apply(self, documents: Sequence[Document], *, create_only: bool = False) -> bool:
        """Apply every document; False when any failed (each failure already reported)."""
        declared = {(Kind(d.resource.kind), key_of(d.resource)) for d in documents}
        ok = True
        for doc in apply_order(documents):
            res = doc.resource
            kind, key = Kind(res.kind), key_of(res)
            try:
                await self._ensure_parents(res, declared)
                action = await (self._create(res) if create_only else self._apply_one(res))
            except ApiRequestError as exc:
                ok = False
                self._report.error(_describe_error(doc.name, exc))
                continue
            self._known.add((kind, key))
            self._done(doc.name, action)
            if self._report.objects is not None and self._written is not None:
                self._report.objects.append(self._written)
        return ok

    def _done(self, name: str, action: str) -> None:
        if self._report.objects is not None:
            return  # -o yaml|json: the objects alone, printed once all are written
        self._report.ok(name if self._report.names_only else f"{name} {action}{self._suffix}")

    async def _create(self, res: AnyResource) -> str:
        kind, key = Kind(res.kind), key_of(res)
        self._written = res  # a dry run's simulated creation: the object as sent
        try:
            self._written = await self._client.create(res, dry_run=self._dry_run)
        except ApiRequestError as exc:
            # The server checks the parent last: a 404 means all else was accepted.
            simulated_parent = any(parent in self._simulated for parent in parent_chain(res))
            if not self._dry_run:
                raise
            if not (exc.code == 404 and simulated_parent) and not self._simulated_refusal(res, exc):
                raise
        if self._dry_run:
            self._simulated.add((kind, key))
        return "created"

    def _simulated_refusal(self, res: AnyResource, exc: ApiRequestError) -> bool:
        """Whether a dry run was refused only for what this apply creates: the spaces a
        cell joins, the profile a CellSet names."""
        return self._joins_simulated(res, exc) or self._names_simulated_profile(res, exc)

    def _names_simulated_profile(self, res: AnyResource, exc: ApiRequestError) -> bool:
        """Whether a dry run refused a set only for its profile, which this apply creates
        (in a scope the set looks in: its stack, space or realm)."""
        if not isinstance(res, CellSet) or res.spec.profile is None or exc.code != 422:
            return False
        if [cause.field for cause in exc.causes] != ["spec.profile"]:
            return False
        scopes = lookup_scopes(res.spec.realm_id, res.spec.space_id, res.spec.stack_id)
        keys = {(Kind.CELL_PROFILE, (*scope, res.spec.profile)) for scope in scopes}
        return bool(keys & self._simulated)

    def _joins_simulated(self, res: AnyResource, exc: ApiRequestError) -> bool:
        """Whether a dry run refused a cell (or a set, for its template) only for the spaces
        its `networks` join, each one this apply creates (the server checks them last,
        after admission)."""
        if isinstance(res, Cell):
            containers = res.spec.containers
        elif isinstance(res, CellSet) and res.spec.template.spec is not None:
            containers = res.spec.template.spec.containers
        else:
            return False
        if exc.code != 422 or not exc.causes:
            return False
        for cause in exc.causes:
            found = _NETWORK_FIELD.fullmatch(cause.field or "")
            if found is None:
                return False
            index, position = int(found[1]), int(found[2])
            if index >= len(containers) or position >= len(containers[index].networks):
                return False
            space = (Kind.SPACE, (res.spec.realm_id, containers[index].networks[position]))
            if space not in self._simulated:
                return False
        return True

    async def _apply_one(self, res: AnyResource) -> str:
        kind, key = Kind(res.kind), key_of(res)
        async for _ in conflict_attempts():
            try:
                current = await self._client.get(kind, key)
            except ApiRequestError as exc:
                if exc.code != 404:
                    raise
                try:
                    return await self._create(apply_creation(res))
                except ApiRequestError as create_error:
                    if create_error.reason != "AlreadyExists":
                        raise
                    continue  # created by someone else meanwhile: compare with theirs
            update = apply_update(res, current)
            self._written = current if update is None else update
            if update is None:
                return "unchanged"
            _check_manifest_version(res, current)
            try:
                written = await self._client.update(update, dry_run=self._dry_run)
            except ApiRequestError as exc:
                if is_conflict(exc):
                    continue  # changed between our read and write: read again
                if self._dry_run and self._names_simulated_profile(res, exc):
                    return "configured"
                raise
            self._written = written
            # A set naming a profile is always sent (the server resolves the profile again):
            # unchanged when the server found the same template.
            return "unchanged" if _same_set(written, current) else "configured"
        raise ApiRequestError(409, "Conflict", "the object kept changing; try again")
