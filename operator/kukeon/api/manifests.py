"""Reading and writing manifest files: multi-document YAML, JSON, and `kind: List`.

A manifest file is a sequence of resource documents: YAML documents separated by `---`,
a JSON object or array, or a `kind: List` whose `items` are documents. `load_manifests`
returns the typed resources in file order, or raises one `ManifestError` that lists every
invalid document with its index, so a user fixes a whole file in one go.

YAML is read as JSON data with YAML 1.2 scalars (``api.yamlread``): `yes`, `on`, `no`,
`off` and timestamps stay strings (pydantic parses the ones that are fields), a key
repeated in one mapping is an error rather than a silently lost line, and a tag of no JSON
value (`!!binary`, `!!set`, `!!timestamp`...) makes its document invalid, naming the tag
and its line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from yaml.constructor import ConstructorError

from kukeon.api.kinds import AnyResource, parse_resource, to_document
from kukeon.api.validation import InvalidResource
from kukeon.api.yamlread import CJsonYamlLoader, finite_json_float, refuse_json_constant

__all__ = ["ManifestError", "dump_manifests", "load_manifests"]


class ManifestError(ValueError):
    """Some documents of a manifest are invalid.

    `errors` lists `(index, error)` for each: the 0-based index of the document among the
    file's non-empty documents (items of a `kind: List` count one each), and either the
    document's `InvalidResource` or a message when it is not a resource at all.
    """

    def __init__(self, errors: Sequence[tuple[int, InvalidResource | str]]) -> None:
        self.errors = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines: list[str] = []
        for index, error in self.errors:
            if isinstance(error, InvalidResource):
                lines.extend(f"document {index}: {line}" for line in error.lines())
            else:
                lines.append(f"document {index}: {error}")
        return "\n".join(lines)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors,))


Syntax = Literal["auto", "json"]
"""How a manifest is read: ``auto``, YAML (JSON being YAML's subset, a text that begins as
JSON and is JSON is read as JSON); ``json``, JSON only (a file named ``*.json``)."""

_ManifestLoader = CJsonYamlLoader
"""YAML 1.2 scalars, JSON's values only, duplicate keys refused (``api.yamlread``), on
libyaml's parser (~5 times faster to read; it stops at 1,000 levels where PyYAML's own
parser recursed)."""


class _ManifestDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


# --- loading ------------------------------------------------------------------------------


def _read(source: str | os.PathLike[str]) -> str:
    if isinstance(source, os.PathLike):
        return Path(source).read_text(encoding="utf-8")
    looks_like_path = (
        "\n" not in source
        and ": " not in source
        and not source.lstrip().startswith(("{", "[", "-"))
        and source.strip() != ""
    )
    if looks_like_path:
        path = Path(source)
        if path.is_file():
            return path.read_text(encoding="utf-8")
        raise FileNotFoundError(f"manifest file not found: {source}")
    return source


class _Unreadable(NamedTuple):
    """A document that could not be read; `fatal` when the rest of the stream is lost too."""

    message: str
    fatal: bool = False


_TOO_DEEP = "nested too deeply to read (no kukeon object nests more than a few dozen levels)"
"""A document nested past Python's recursion limit (its readers recurse): `[[[[...` of a
hostile or broken file was 'unexpected failure: RecursionError' (exit 1)."""


def _yaml_documents(text: str) -> Iterator[Any]:
    try:
        loader = _ManifestLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses a character (NUL, \x07, U+FFFE)
        yield _Unreadable(f"invalid YAML: {exc}", fatal=True)
        return
    try:
        while True:
            try:
                if not loader.check_data():
                    return
                # Composing consumes the whole document before constructing it, so an
                # error in construction (a duplicate key) leaves the stream readable.
                yield loader.get_data()
            except ConstructorError as exc:
                yield _Unreadable(f"invalid YAML: {exc}")
            except yaml.YAMLError as exc:
                yield _Unreadable(f"invalid YAML: {exc}", fatal=True)
                return
            except RecursionError:
                yield _Unreadable(f"invalid YAML: {_TOO_DEEP}", fatal=True)
                return
    finally:
        loader.dispose()


class _RepeatedKeyError(ValueError):
    """A JSON object that gives a key twice."""


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it gives a key twice: as YAML's reader refuses it (JSON's
    took the last one silently, so a manifest's typo'd copy of a field was lost unseen)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKeyError(f"duplicate key {key!r}")
        found[key] = value
    return found


_JSON = json.JSONDecoder(
    parse_constant=refuse_json_constant,
    parse_float=finite_json_float,
    object_pairs_hook=_refuse_repeats,
)


def _json_documents(text: str) -> Iterator[Any]:
    """A JSON file's documents: one value or several in a row (kubectl's JSON stream), each
    an object or an array of them; an error names its line and column, never read as YAML."""
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n\ufeff":  # a BOM too
            position += 1
        if position == len(text):
            return
        try:
            value, position = _JSON.raw_decode(text, position)
        except ValueError as exc:  # a syntax error (its line and column), NaN, a repeated key
            yield _Unreadable(f"invalid JSON: {exc}", fatal=True)
            return
        except RecursionError:
            yield _Unreadable(f"invalid JSON: {_TOO_DEEP}", fatal=True)
            return
        yield from value if isinstance(value, list) else [value]


def _raw_documents(text: str, syntax: Syntax = "auto") -> Iterator[Any]:
    """The top-level documents of the text, in order."""
    if syntax == "json":
        yield from _json_documents(text)
        return
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            value = _JSON.decode(text)
        except json.JSONDecodeError:
            pass  # YAML flow style also starts with a brace
        except ValueError as exc:  # NaN, Infinity, 1e999, a repeated key
            yield _Unreadable(f"invalid JSON: {exc}", fatal=True)
            return
        except RecursionError:
            yield _Unreadable(f"invalid JSON: {_TOO_DEEP}", fatal=True)
            return
        else:
            yield from value if isinstance(value, list) else [value]
            return
    yield from _yaml_documents(text)


def _documents(text: str, syntax: Syntax = "auto") -> Iterator[Any]:
    """Documents in file order, `kind: List` expanded, empty documents skipped."""
    for doc in _raw_documents(text, syntax):
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List":
            items = doc.get("items")
            if items is None:
                continue
            if not isinstance(items, list):
                yield _Unreadable("the items of a kind: List must be a list")
                continue
            yield from (item for item in items if item is not None)
            continue
        yield doc


# Where each kind names its realm, space and stack: (the mapping under the document, its
# keys), in the order of the levels.
_PARENT_SLOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Space": ("spec", ("realmId",)),
    "Stack": ("spec", ("realmId", "spaceId")),
    "Cell": ("spec", ("realmId", "spaceId", "stackId")),
    "CellSet": ("spec", ("realmId", "spaceId", "stackId")),
    "Secret": ("metadata", ("realm", "space", "stack")),
    "CellProfile": ("metadata", ("realm", "space", "stack")),
}
SCOPE_LEVELS = ("realm", "space", "stack")


def in_scope(
    doc: dict[str, Any],
    scope: Mapping[str, str],
    defaults: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``doc`` with the parents ``scope`` gives (``{"realm": ..., "space": ...}``, as
    kukectl's ``--realm/--space/--stack``, kubectl's ``-n``) where it names none; a
    ValueError when it names another. ``defaults`` (kukectl's context, as kubectl's
    context namespace) fill what is still unnamed and never contradict the document;
    a level of them is taken only while the levels above are theirs too (the context's
    space is of its realm). Realms and nodes have no parents: unchanged."""
    slot = _PARENT_SLOTS.get(str(doc.get("kind")))
    soft = defaults or {}
    if slot is None or not (scope or soft):
        return doc
    where, keys = slot
    section = doc.get(where)
    filled = dict(section) if isinstance(section, dict) else {}
    coherent = True  # every level above is the defaults' own
    for level, key in zip(SCOPE_LEVELS, keys, strict=False):
        wanted = scope.get(level)
        named = filled.get(key)
        if named in (None, ""):
            if wanted is not None:
                filled[key] = wanted
            elif coherent and level in soft:
                filled[key] = soft[level]
        elif wanted is not None and named != wanted:
            raise ValueError(
                f"{where}.{key} is {named!r} but --{level} is {wanted!r}: the document "
                "belongs elsewhere (drop one of the two)"
            )
        coherent = coherent and (filled.get(key) or "default") == soft.get(level, "default")
    return {**doc, where: filled}


def load_manifests(
    text_or_path: str | os.PathLike[str],
    *,
    scope: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
    unknown_fields: list[tuple[int, str]] | None = None,
    syntax: Syntax = "auto",
) -> list[AnyResource]:
    """Every resource of a manifest text or file, validated, in file order.

    A `str` that is a single line without `: ` is taken as a file path; anything else is
    manifest text. ``scope``, ``defaults``: parents for documents that name none
    (``in_scope``). Raises `ManifestError` listing every invalid document.
    ``unknown_fields``: when a list, a field no model knows is left out instead of refused
    and named there (the document's index, the field's path; kukectl's --validate=warn).
    ``syntax``: ``json`` for a file named ``*.json`` (``Syntax``).
    """
    text = _read(text_or_path)
    resources: list[AnyResource] = []
    errors: list[tuple[int, InvalidResource | str]] = []
    for index, doc in enumerate(_documents(text, syntax)):
        if isinstance(doc, _Unreadable):
            errors.append((index, doc.message))
        elif not isinstance(doc, dict):
            errors.append((index, f"a document must be a mapping, got {type(doc).__name__}"))
        else:
            dropped: list[str] | None = [] if unknown_fields is not None else None
            try:
                scoped = in_scope(doc, scope or {}, defaults)
                resources.append(parse_resource(scoped, unknown_fields=dropped))
            except InvalidResource as exc:
                errors.append((index, exc))
            except ValueError as exc:
                errors.append((index, str(exc)))
            if unknown_fields is not None and dropped:
                unknown_fields.extend((index, path) for path in dropped)
    if errors:
        raise ManifestError(errors)
    return resources


# --- dumping ------------------------------------------------------------------------------


def dump_manifests(resources: Iterable[AnyResource], fmt: Literal["yaml", "json"] = "yaml") -> str:
    """Resources as multi-document YAML (`---` separated) or a JSON array.

    `load_manifests(dump_manifests(rs)) == rs` for valid resources, in either format.
    """
    docs = [to_document(res) for res in resources]
    if fmt == "json":
        return json.dumps(docs, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        if not docs:
            return ""
        return yaml.dump_all(
            docs,
            Dumper=_ManifestDumper,
            sort_keys=False,
            explicit_start=True,
            default_flow_style=False,
            allow_unicode=True,
        )
    raise ValueError(f"unknown manifest format {fmt!r}, expected 'yaml' or 'json'")
