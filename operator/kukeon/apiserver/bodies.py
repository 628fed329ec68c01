"""Request bodies decoded with bounds: size, nesting depth, duplicate keys, YAML aliases.

Python's JSON decoder and PyYAML's composer both recurse once per level of nesting, so a
body nested 10,000 deep used to end in a ``RecursionError`` (a 500 and a traceback). Here
the depth is measured first without recursing -- for JSON by counting brackets outside
strings, for YAML by walking the parser's event stream with an explicit stack -- and the
decoders only ever see documents shallower than ``MAX_DEPTH``. A key given twice in one object is
refused (the last one silently winning hides mistakes and smuggles values past reviews),
and so are YAML aliases, which let a few hundred bytes expand into gigabytes once the
document is encoded as JSON for etcd.

YAML costs ~100 times JSON's CPU per value (libyaml's events, then PyYAML's composer and
constructor in Python: ~7-14 us a node), so a 1 MiB body of 100,000 keys or 500,000 flow
items took 2-4 s of kukeond's CPU to read. A YAML body is refused once its event scan meets
more than ``MAX_YAML_NODES`` nodes (a 413, after ~40 ms at most), and before any scan when
it has more than ``MAX_YAML_DIRECTIVES`` directive lines (libyaml compares each ``%TAG`` with
every earlier one: 40,000 of them took ~8 s before the first event). JSON has no node bound:
Python's decoder reads 1 MiB of any shape in ~0.1 s. Decoding that may take more than a few
milliseconds runs on ``DECODE_THREADS`` threads of its own (``decode_off_loop``), so neither
the event loop nor the default executor waits behind it.

Every failure is a ``BodyError`` carrying the HTTP code, a message that quotes at most a
few hundred characters of the input, and the key path when there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate, islice
from typing import Any, TypeVar

import yaml

from kukeon.api.meta import quote
from kukeon.api.yamlread import (
    JSON_TAGS,
    CJsonYamlLoader,
    finite_json_float,
    is_finite_yaml_float,
    not_json_message,
    not_json_number_message,
    refuse_json_constant,
)

MAX_DEPTH = 100
"""Deepest nesting of objects/arrays a body may have; a kukeon document needs about 8."""

JSON_MEDIA_TYPE = "application/json"
YAML_MEDIA_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
BODY_MEDIA_TYPES = frozenset({JSON_MEDIA_TYPE, *YAML_MEDIA_TYPES})
"""The Content-Types a created or replaced object may be sent as; any other is a 415, as
kube-apiserver answers (a ``text/plain`` body used to be read as JSON all the same)."""

MAX_YAML_NODES = 10_000
"""Most nodes (keys, values, items) a YAML body may have: a kukeon object has tens to a few
hundred; reading 10,000 costs ~0.1 s of CPU. A larger document is sent as JSON (kukectl
always does)."""

MAX_MANIFEST_NODES = 50_000
"""Most nodes a manifest pasted into the web console may have (``check_manifest``): its 500
documents at 100 each (a cell has 20-60)."""

MAX_YAML_DIRECTIVES = 64
"""Most lines beginning with ``%`` (YAML directives: ``%YAML``, ``%TAG``) a YAML body may
have; a document has none or one or two."""

# Bodies above these sizes are decoded off the event loop: JSON's decoder reads 64 KiB in
# ~4 ms, YAML 4 KiB (at most ~2,000 nodes) in ~15 ms.
THREAD_THRESHOLD = 64 * 1024
YAML_THREAD_THRESHOLD = 4 * 1024

DECODE_THREADS = 2
"""Bodies decoded at once off the loop; the others wait their turn (the in-flight bounds
limit how many): however many clients send large bodies, the default executor's threads
stay free for what else runs there, and at most this many threads contend with the loop."""

_decode_pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="kukeon-body")
_T = TypeVar("_T")


async def decode_off_loop(decode: Callable[[], _T]) -> _T:
    """``decode()`` on one of the ``DECODE_THREADS`` body threads."""
    return await asyncio.get_running_loop().run_in_executor(_decode_pool, decode)


def thread_threshold(content_type: str) -> int:
    """The size of a body of ``content_type`` above which it is decoded off the loop."""
    return YAML_THREAD_THRESHOLD if is_yaml(content_type) else THREAD_THRESHOLD


class BodyError(ValueError):
    """A body that cannot be decoded: the HTTP code, the message and the key path."""

    def __init__(self, code: int, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# --- JSON -----------------------------------------------------------------------------------

# A JSON string, escapes included, in the unrolled form that never backtracks.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, computed without recursion.

    Strings are removed first (a bracket inside one is text); what remains is reduced to its
    brackets and their running sum taken. Exact for valid JSON; for invalid JSON it is an
    estimate, and the decoder reports the real problem.
    """
    outside = _JSON_STRING.sub(b"", raw)
    brackets = outside.translate(None, _BRACKETS)
    if not brackets:
        return 0
    return max(0, max(accumulate(_STEP[b] for b in brackets)))


class _Duplicates:
    """Objects that had a key twice while decoding, to name their paths afterwards (each
    object is held, so that no id is reused by a later one while decoding)."""

    def __init__(self) -> None:
        self.found: list[tuple[dict[str, Any], str]] = []

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)  # the last value of a repeated key kept, in C
        if len(result) < len(pairs):
            self._record(result, pairs)
        return result

    def _record(self, result: dict[str, Any], pairs: list[tuple[str, Any]]) -> None:
        """Each key of ``pairs`` repeated, once, in the order its second mention comes (sets:
        a search of ``found`` for each repeat made 50,000 of them cost a minute of CPU)."""
        seen: set[str] = set()
        recorded: set[str] = set()
        for key, _ in pairs:
            if key not in seen:
                seen.add(key)
            elif key not in recorded:
                recorded.add(key)
                self.found.append((result, key))

    def paths(self, root: Any) -> list[tuple[str, str]]:
        """Each repeated key's path in the decoded ``root`` and the key, in the order met; a
        repeat inside a value that a later repeat replaced is in no path (it is not kept)."""
        wanted = {id(mapping) for mapping, _ in self.found}
        where = _find_paths(root, wanted)
        return [
            (_join(where[id(mapping)], key), key)
            for mapping, key in self.found
            if id(mapping) in where
        ]


def _find_paths(root: Any, wanted: set[int]) -> dict[int, str]:
    """The paths of the objects whose ids are ``wanted`` in the decoded tree (one iterative
    walk)."""
    stack: list[tuple[Any, str]] = [(root, "")]
    found: dict[int, str] = {}
    while stack and len(found) < len(wanted):
        value, path = stack.pop()
        if isinstance(value, dict):
            if id(value) in wanted:
                found[id(value)] = path
            # Only what can hold an object is walked (a path is text made for each).
            stack.extend(
                (v, f"{path}.{k}" if path else str(k))
                for k, v in value.items()
                if isinstance(v, dict | list)
            )
        elif isinstance(value, list):
            stack.extend(
                (v, f"{path}[{i}]") for i, v in enumerate(value) if isinstance(v, dict | list)
            )
    return found


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def decode_json(
    raw: bytes, *, max_depth: int = MAX_DEPTH, duplicates: list[str] | None = None
) -> Any:
    """A JSON body as Python values; BodyError when it is too deep, malformed or repeats a
    key. ``duplicates``: when a list, a repeated key's path is appended to it instead, and
    the last of its values kept (kube-apiserver's ``fieldValidation=Warn|Ignore``)."""
    depth = json_depth(raw)
    if depth > max_depth:
        raise BodyError(
            400, f"the request body is nested {depth} levels deep, over the limit of {max_depth}"
        )
    repeated = _Duplicates()
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=repeated.hook,
            parse_constant=refuse_json_constant,
            parse_float=finite_json_float,
        )
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the request body is not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise BodyError(
            400,
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
        ) from None
    except (ValueError, RecursionError) as exc:
        # Numbers with thousands of digits, NaN/Infinity; RecursionError cannot happen
        # below the depth limit, and is still not allowed to become a 500.
        raise BodyError(400, f"the request body is not valid JSON: {quote(str(exc))}") from None
    if repeated.found:
        paths = repeated.paths(value)
        if duplicates is not None:
            duplicates.extend(path for path, _ in paths)
        elif paths:
            raise duplicate_key(*paths[0])
    return value


def duplicate_key(path: str, key: str) -> BodyError:
    """The refusal of ``key`` repeated; ``path`` is its own (its mapping's, then the key)."""
    return BodyError(422, f"duplicate key {quote(key)} at {quote(path)}", field=path)


# --- YAML -----------------------------------------------------------------------------------

# JSON data with YAML 1.2 scalars, as kukectl reads manifests (`yes` stays a string), on
# libyaml when PyYAML was built with it (10x faster to scan).
_Loader = CJsonYamlLoader


class _Frame:
    """One open collection while scanning: its path, and where the next node goes in it."""

    __slots__ = ("expecting_key", "index", "key", "mapping", "path", "seen")

    def __init__(self, path: str, *, mapping: bool) -> None:
        self.path = path
        self.mapping = mapping
        self.index = 0  # sequences: the next item's index
        self.expecting_key = mapping  # mappings: whether the next node is a key
        self.key: str | None = None  # mappings: the key of the value that comes next
        self.seen: set[tuple[bool, str]] = set()

    def node_done(self) -> None:
        """A key, value or item of this collection is complete."""
        if self.mapping:
            self.expecting_key = not self.expecting_key
        else:
            self.index += 1


def _node_path(frame: _Frame | None, event: yaml.NodeEvent, *, duplicates: bool) -> str:
    """Where ``event`` stands in its collection (a key: its mapping); a repeated key is
    refused here (unless ``duplicates``), and a key is recorded as the one whose value comes
    next."""
    if frame is None:
        return ""
    if frame.mapping and frame.expecting_key:
        if isinstance(event, yaml.ScalarEvent):
            key = str(event.value)
            marker = (event.style is None, key)
            if marker in frame.seen and not duplicates:
                raise duplicate_key(_join(frame.path, key), key)
            frame.seen.add(marker)
            frame.key = key
        else:
            frame.key = "<complex key>"
        return frame.path  # a key: errors point at its mapping
    if frame.mapping:
        return _join(frame.path, frame.key or "")
    return f"{frame.path}[{frame.index}]"


_FLOAT_TAG = "tag:yaml.org,2002:float"
_NULL_TAG = "tag:yaml.org,2002:null"


def _refused_value(scanner: Any, event: yaml.NodeEvent, *, is_key: bool) -> str | None:
    """Why JSON has no such node, or None: a float it has not (``.nan``, ``.inf``,
    ``1.0e+999``), or a key with no text (null, a mapping, a sequence; other keys are
    written as text, as sigs.k8s.io/yaml does)."""
    if not isinstance(event, yaml.ScalarEvent):
        if is_key and isinstance(event, yaml.CollectionStartEvent):
            return "a mapping or sequence is not a key: a JSON object's key is text"
        return None
    tag = event.tag
    if tag in (None, "!"):
        tag = scanner.resolve(yaml.ScalarNode, event.value, event.implicit)
    if is_key:
        return "null is not a key: a JSON object's key is text" if tag == _NULL_TAG else None
    if tag == _FLOAT_TAG and not is_finite_yaml_float(event.value):
        return not_json_number_message(quote(event.value))
    return None


def _refuse_node(
    scanner: Any, event: yaml.NodeEvent, path: str, *, is_key: bool, tags: bool
) -> None:
    """A BodyError naming ``path`` for a node that is no JSON value: an alias, and when
    ``tags`` a tag of no JSON value or a value JSON has not (``_refused_value``)."""
    refusal: str | None = None
    if isinstance(event, yaml.AliasEvent):
        refusal = "YAML aliases are not accepted"
    elif tags:
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in JSON_TAGS:
            refusal = not_json_message(tag)
        else:
            refusal = _refused_value(scanner, event, is_key=is_key)
    if refusal:
        where = quote(path) if path else "the top level"
        raise BodyError(400, f"{refusal} (at {where})", field=path)


def _opened(
    event: yaml.CollectionStartEvent, path: str, mapping_paths: dict[int, str] | None
) -> _Frame:
    """The frame of a collection that starts at ``path`` (a mapping's path recorded by its
    start in the text, when ``mapping_paths`` is a dict)."""
    mapping = isinstance(event, yaml.MappingStartEvent)
    if mapping and mapping_paths is not None and event.start_mark is not None:
        mapping_paths[event.start_mark.index] = path
    return _Frame(path, mapping=mapping)


_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"
"""libyaml's problem past its 1,000 levels: its scanner reads a flow collection's brackets
ahead of the events, so it can get there before the scan counts ``max_depth``."""


def _next_event(scanner: Any, max_depth: int) -> yaml.Event:
    try:
        event: yaml.Event = scanner.get_event()
    except yaml.MarkedYAMLError as exc:
        if exc.problem == _LIBYAML_TOO_DEEP:
            raise BodyError(
                400, f"the request body is nested more than {max_depth} levels deep"
            ) from None
        raise
    return event


def _scan_yaml(
    text: str,
    max_depth: int,
    *,
    one_document: bool = True,
    duplicates: bool = False,
    tags: bool = True,
    mapping_paths: dict[int, str] | None = None,
    max_nodes: int = MAX_YAML_NODES,
    advice: str = "send a document this large as JSON",
) -> None:
    """Check the YAML event stream, iteratively: depth, aliases, repeated keys (unless
    ``duplicates``), tags of no JSON value (when ``tags``: `!!binary`, `!!set`...), one
    document (when ``one_document``), at most ``max_nodes`` nodes (the scan stops at the
    first one over). ``mapping_paths``: when a dict, each mapping's
    path by its start index in the text (to name the keys the constructor finds repeated).

    The composer and constructor recurse once per level, so they only ever see a stream
    that passed here. Raises BodyError with the path of what is refused.
    """
    scanner: Any = _Loader(text)  # PyYAML's parser methods are untyped
    stack: list[_Frame] = []
    documents = nodes = 0
    try:
        while True:
            event = _next_event(scanner, max_depth)
            if isinstance(event, yaml.StreamEndEvent):
                break
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1 and one_document:
                    raise BodyError(400, "the request body must hold one YAML document")
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
                if stack:
                    stack[-1].node_done()
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            nodes += 1
            if nodes > max_nodes:
                raise too_many_nodes(max_nodes, advice)
            frame = stack[-1] if stack else None
            is_key = frame is not None and frame.mapping and frame.expecting_key
            path = _node_path(frame, event, duplicates=duplicates)
            _refuse_node(scanner, event, path, is_key=is_key, tags=tags)
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= max_depth:
                    raise BodyError(
                        400, f"the request body is nested more than {max_depth} levels deep"
                    )
                stack.append(_opened(event, path, mapping_paths))
                continue
            if frame is not None:  # a scalar
                frame.node_done()
    finally:
        scanner.dispose()
    if documents != 1 and one_document:
        raise BodyError(400, f"the request body must hold one YAML document, got {documents}")


def too_many_nodes(limit: int, advice: str) -> BodyError:
    return BodyError(
        413,
        f"the YAML request body has more than {limit} nodes (keys, values and items), over "
        f"the limit of {limit} for YAML; {advice}",
    )


_DIRECTIVE_LINE = re.compile(r"^%", re.MULTILINE)


def check_directives(text: str, limit: int = MAX_YAML_DIRECTIVES) -> None:
    """A 400 when ``text`` has more than ``limit`` lines beginning with ``%`` (directives),
    counted before any parser reads them."""
    count = sum(1 for _ in islice(_DIRECTIVE_LINE.finditer(text), limit + 1))
    if count > limit:
        raise BodyError(
            400,
            f"the YAML request body has more than {limit} lines beginning with '%' (YAML "
            f"directives), over the limit of {limit}",
        )


def check_manifest(
    raw: bytes, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_MANIFEST_NODES
) -> str:
    """The text of a manifest of any number of documents (JSON or YAML), refused when no
    reader could expand it safely: not UTF-8, nested over ``max_depth``, or with a YAML
    alias (a few hundred bytes of aliases expand into gigabytes once answered as JSON),
    or when reading it would cost seconds: more than ``max_nodes`` nodes (the scan stops
    at the first one over, so that a hostile body is refused in ~50 ms) or
    ``MAX_YAML_DIRECTIVES`` directive lines.

    What else is wrong with it (a syntax error, a repeated key, a tag of no JSON value) is
    left to the reader, which reports it per document."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the request body is not UTF-8: {exc.reason}") from None
    if text.lstrip().startswith(("{", "[")) and (depth := json_depth(raw)) > max_depth:
        raise BodyError(
            400, f"the request body is nested {depth} levels deep, over the limit of {max_depth}"
        )
    check_directives(text)
    # On libyaml, the reader's parser too, so a syntax error stops both at the same place;
    # the reader reports it, with the documents before it.
    with contextlib.suppress(yaml.YAMLError):
        _scan_yaml(
            text,
            max_depth,
            one_document=False,
            duplicates=True,
            tags=False,
            max_nodes=max_nodes,
            advice="apply a manifest this large with kukectl",
        )
    return text


def decode_yaml(
    raw: bytes,
    *,
    max_depth: int = MAX_DEPTH,
    duplicates: list[str] | None = None,
    max_nodes: int = MAX_YAML_NODES,
) -> Any:
    """A single-document YAML body; BodyError when too deep, malformed, aliased or repeating,
    or with more than ``max_nodes`` nodes or ``MAX_YAML_DIRECTIVES`` directives.

    ``duplicates``: when a list, a repeated key's path is appended to it instead (keys
    equal as JSON's text too: ``1`` and ``"1"``), and its last value kept."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the request body is not UTF-8: {exc.reason}") from None
    check_directives(text)
    mapping_paths: dict[int, str] | None = {} if duplicates is not None else None
    try:
        _scan_yaml(
            text,
            max_depth,
            duplicates=duplicates is not None,
            mapping_paths=mapping_paths,
            max_nodes=max_nodes,
        )
        loader = _Loader(text)  # a SafeLoader: no Python objects
        if mapping_paths is not None:
            loader.repeated_keys = []
        try:
            value = loader.get_single_data()
        finally:
            loader.dispose()
    except BodyError:
        raise
    except yaml.YAMLError as exc:
        raise BodyError(400, f"the request body is not valid YAML: {quote(str(exc))}") from None
    except (ValueError, RecursionError) as exc:
        raise BodyError(400, f"the request body is not valid YAML: {quote(str(exc))}") from None
    if duplicates is not None and mapping_paths is not None:
        repeats = dict.fromkeys(loader.repeated_keys or ())  # a key given 3 times: once
        duplicates.extend(_join(mapping_paths.get(index, ""), key) for index, key in repeats)
    return value


def is_yaml(content_type: str) -> bool:
    return "yaml" in content_type


def decode_body(
    raw: bytes,
    content_type: str,
    *,
    max_depth: int = MAX_DEPTH,
    duplicates: list[str] | None = None,
) -> Any:
    """The body as Python values, read as YAML when the content type says so, else JSON.
    ``duplicates``: repeated keys' paths collected there instead of refused."""
    if is_yaml(content_type):
        return decode_yaml(raw, max_depth=max_depth, duplicates=duplicates)
    return decode_json(raw, max_depth=max_depth, duplicates=duplicates)
