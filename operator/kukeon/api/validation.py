"""Turning a bad document into every reason it is bad, each naming the resource and the field.

Validation happens in two layers that both run on every document, so a user sees all of
their mistakes at once instead of fixing them one by one:

- per-field rules live on the models (types, DNS labels, absolute paths, restart knobs,
  egress rules, ...): pydantic reports every failing field in one pass, and
  `field_errors_from_pydantic` turns its locations into paths like `spec.containers[1].image`;
- rules across fields or across containers (unique container ids, the root container,
  `spec.id` against `metadata.name`, `tty.default`) are checked here on the raw document,
  so they are reported even when some other field of the same document is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from pydantic import ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from kukeon.api.hostusers import host_users_errors
from kukeon.api.meta import DEFAULT_PARENT, QUOTE_LIMIT, SCOPED_KINDS, Kind, quote


class FieldError(NamedTuple):
    """One reason a document is invalid: the field path and what is wrong with it."""

    field: str
    message: str


class InvalidResource(ValueError):  # noqa: N818 - the name is the public contract
    """A document that cannot be accepted, with every reason why.

    `name` is the display id of the resource, its parents and name joined by `/`
    (`default/default/default/web` for a cell), so a message points at one object.
    """

    def __init__(self, kind: str, name: str, causes: Sequence[FieldError]) -> None:
        self.kind = kind
        # A name is user input: a megabyte of it is not repeated in every message.
        self.name = name if len(name) <= QUOTE_LIMIT else f"{name[:QUOTE_LIMIT]}..."
        self.causes = list(causes)
        super().__init__(str(self))

    def lines(self) -> list[str]:
        prefix = f"{self.kind} {self.name}"
        return [
            f"{prefix}: {cause.field}: {cause.message}"
            if cause.field
            else f"{prefix}: {cause.message}"
            for cause in self.causes
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.name, self.causes))


def format_path(loc: Iterable[int | str], *, as_sent: bool = False) -> str:
    """`("spec", "containers", 1, "image")` -> `spec.containers[1].image`.

    ``as_sent``: every name is the document's own (an unknown field's location holds the
    key as it was sent and aliases above it), never turned into the camelCase alias."""
    path = ""
    parts = list(loc)
    for index, part in enumerate(parts):
        if part == "[key]":
            continue  # pydantic's marker after a mapping key that failed: shown as [key]
        mapping_key = index + 1 < len(parts) and parts[index + 1] == "[key]"
        if mapping_key or isinstance(part, int):
            path += f"[{part}]"
        else:
            name = part if as_sent else _external_name(part)
            path += f".{name}" if path else name
    return path


def _external_name(part: str) -> str:
    # A rule on a defaulted field reports the Python name; show the manifest's spelling.
    if "_" not in part:
        return part
    return _IRREGULAR_ALIASES.get(part) or to_camel(part)


_IRREGULAR_ALIASES = {"host_pid": "hostPID"}


# What a Kubernetes manifest says that kukeon says otherwise: (the field's parent, the
# field) -> how kukeon says it, appended to "unknown field".
_KUBERNETES_HINTS: dict[tuple[str, str], str] = {
    ("metadata", "namespace"): "kukeon has no namespaces; a document names its parents in "
    "spec (realmId, spaceId, stackId), `default` when unset",
    **{
        ("metadata", parent): "a document names its parents in spec (realmId, spaceId, "
        "stackId), `default` when unset; its own name is metadata.name"
        for parent in ("realm", "space", "stack")
    },
    ("containers", "name"): "a container's name is its `id`",
    ("resources", "limits"): "kukeon's resources are flat: memoryLimitBytes, "
    "cpuLimitMillicores, cpuShares, pidsLimit",
    ("resources", "requests"): "kukeon reserves nothing: memoryLimitBytes, "
    "cpuLimitMillicores, cpuShares and pidsLimit are limits",
    ("containers", "volumeMounts"): "a container's mounts are its `volumes` "
    "(source, target, readOnly)",
    ("containers", "securityContext"): "kukeon's are fields of the container: privileged, "
    "user, capabilities, readOnlyRootFilesystem, securityOpts",
    ("containers", "imagePullPolicy"): "kukeon pulls an image its node does not have",
    **{
        ("containers", field): "a container with a terminal and input is `attachable: true`"
        for field in ("stdin", "stdinOnce")
    },
    ("spec", "volumes"): "kukeon has no pod volumes: each container's `volumes` are its bind "
    "mounts (source, target, readOnly)",
    ("spec", "restartPolicy"): "kukeon's restart policy is each container's: "
    "containers[N].restartPolicy, always, on-failure or never",
    # not Kubernetes': a space's defaults.container, where a shared env is looked for
    ("container", "env"): "a space's container defaults are isolation ones (user, "
    "readOnlyRootFilesystem, capabilities, securityOpts, tmpfs, resources); env is each "
    "container's",
}

KUBERNETES_KINDS: dict[str, str] = {
    "Pod": "Cell",
    "Deployment": "CellSet",
    "ReplicaSet": "CellSet",
    "Namespace": "Realm, Space or Stack",
}
"""A Kubernetes kind a manifest may name -> kukeon's kind for it, said with "unknown kind"."""


def _unknown_field(loc: tuple[int | str, ...]) -> str:
    names = [part for part in loc if isinstance(part, str)]
    hint = _KUBERNETES_HINTS.get((names[-2], names[-1])) if len(names) > 1 else None
    return f"unknown field ({hint})" if hint else "unknown field"


_JSON_TYPE_RULES = {
    "bool_type": "must be a boolean, true or false (not text, not a number)",
    "int_type": "must be a JSON integer (no quotes, no decimal point, not true or false)",
}
"""The rule of ``api.meta.Bool`` and ``Int``, which take JSON's types only (pydantic's
"must be a valid integer, got '5'" read as if '5' were not one)."""


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_field(tuple(error["loc"]))
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    message = error["msg"]
    value = error.get("input")
    if kind == "string_type" and isinstance(value, Mapping):
        # Kubernetes' env entries and ports are objects; kukeon's are strings.
        if "env" in error["loc"]:
            return "must be a string KEY=VALUE, e.g. FOO=bar (not Kubernetes' {name, value})"
        if "ports" in error["loc"]:
            return "must be a string [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], e.g. 8080:80"
    if kind == "list_type" and error["loc"][-1:] == ("env",):
        # compose's `environment: {FOO: bar}`, or one string: kukeon's env is a list.
        return "must be a list of KEY=VALUE strings, e.g. [FOO=bar, DEBUG=1]"
    if kind == "model_type" and error["loc"][-1:] == ("tty",) and isinstance(value, bool):
        # Kubernetes' `tty: true`: kukeon's tty holds the terminal's options.
        return (
            "must be the terminal's options (prompt, onInit, logFile), not a boolean: "
            "a container with a terminal is `attachable: true`"
        )
    if kind in _JSON_TYPE_RULES:
        message = _JSON_TYPE_RULES[kind]
    elif kind == "model_type":
        message = "must be an object of fields"  # pydantic's names the model's Python class
    elif message.startswith("Input should be"):
        message = "must be" + message[len("Input should be") :]
    if value is None or isinstance(value, str | int | float | bool):
        message += f", got {quote(value)}"  # at most QUOTE_LIMIT characters of it
    return message


def field_errors_from_pydantic(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(
            format_path(error["loc"], as_sent=error["type"] == UNKNOWN_FIELD), _message(error)
        )
        for error in exc.errors()
    ]


# --- fields no model knows, dropped on request (the API's fieldValidation=Warn|Ignore) ------

UNKNOWN_FIELD = "extra_forbidden"
"""pydantic's error type of a field the model does not have."""

Location = tuple[int | str, ...]


def droppable_unknown(
    exc: ValidationError, doc: Mapping[str, Any], explained: Iterable[str] = ()
) -> list[Location]:
    """The locations of the fields no model knows, each found in ``doc`` as a key of an
    object, so that a copy without them can be validated again; a field a rule explains
    (``explained``, paths) is not one of them."""
    skip = set(explained)
    found: list[Location] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] != UNKNOWN_FIELD or format_path(loc, as_sent=True) in skip:
            continue
        if _holds(doc, loc):
            found.append(loc)
    return found


def _holds(doc: Any, loc: Location) -> bool:
    """Whether ``loc`` leads through ``doc``'s objects and arrays to a key of an object."""
    value = doc
    for step in loc[:-1]:
        in_object = isinstance(value, Mapping) and isinstance(step, str) and step in value
        in_array = isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value)
        if not (in_object or in_array):
            return False
        value = value[step]
    return isinstance(value, Mapping) and loc[-1] in value


def without(doc: Mapping[str, Any], locations: Iterable[Location]) -> dict[str, Any]:
    """A copy of ``doc`` without the keys at ``locations`` (each as ``droppable_unknown``
    found it); only the objects and arrays on their way are copied, ``doc`` is unchanged."""
    root = dict(doc)
    copied = {id(root)}
    for loc in locations:
        parent: Any = root
        for step in loc[:-1]:
            child = parent[step]
            if id(child) not in copied:
                child = dict(child) if isinstance(child, Mapping) else list(child)
                parent[step] = child
                copied.add(id(child))
            parent = child
        parent.pop(loc[-1], None)
    return root


# --- rules across fields, on the raw document ---------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


_PARENT_FIELDS: dict[str, tuple[str, ...]] = {
    Kind.REALM: (),
    Kind.SPACE: ("realmId",),
    Kind.STACK: ("realmId", "spaceId"),
    Kind.CELL: ("realmId", "spaceId", "stackId"),
}


def display_name(kind: Kind | str, doc: Mapping[str, Any]) -> str:
    """The resource's parents and name joined by `/`, from a possibly invalid document."""
    spec = _mapping(doc.get("spec"))
    name = _text(_mapping(doc.get("metadata")).get("name")) or _text(spec.get("id")) or "<unnamed>"
    if str(kind) in SCOPED_KINDS:
        metadata = _mapping(doc.get("metadata"))
        scope = [_text(metadata.get(level)) for level in ("realm", "space", "stack")]
        return "/".join([*(part for part in scope if part), name])
    parents = _PARENT_FIELDS.get(str(kind), ())
    return "/".join([*(str(_text(spec.get(p)) or DEFAULT_PARENT) for p in parents), name])


def cross_field_errors(kind: Kind, doc: Mapping[str, Any]) -> list[FieldError]:
    """The rules that span several fields, checked on the raw document."""
    errors: list[FieldError] = []
    spec = _mapping(doc.get("spec"))
    name = _text(_mapping(doc.get("metadata")).get("name"))
    if kind in (Kind.STACK, Kind.CELL):
        spec_id = _text(spec.get("id"))
        if name and spec_id and name != spec_id:
            errors.append(
                FieldError(
                    "spec.id", f"must equal metadata.name {quote(name)}, got {quote(spec_id)}"
                )
            )
    if kind == Kind.CELL:
        errors.extend(_cell_errors(spec, name or _text(spec.get("id"))))
    return errors


def _cell_errors(spec: Mapping[str, Any], cell_name: str | None) -> list[FieldError]:
    containers = spec.get("containers")
    if containers is None and "containers" in spec:  # `containers: null` is no container
        return [FieldError("spec.containers", "at least one container is required")]
    if not isinstance(containers, list):
        return []  # missing or of the wrong type: the field's own error says so
    errors: list[FieldError] = []
    if not containers:
        errors.append(FieldError("spec.containers", "at least one container is required"))
    ids: dict[str, int] = {}
    roots: list[int] = []
    parents = {
        "realmId": _text(spec.get("realmId")) or DEFAULT_PARENT,
        "spaceId": _text(spec.get("spaceId")) or DEFAULT_PARENT,
        "stackId": _text(spec.get("stackId")) or DEFAULT_PARENT,
        "cellId": cell_name,
    }
    for index, container in enumerate(containers):
        if isinstance(container, Mapping):
            errors.extend(_container_errors(index, container, parents, ids))
            if container.get("root") is True:
                roots.append(index)
    errors.extend(_root_errors(spec, containers, roots, ids))
    errors.extend(_tty_default_errors(spec, containers, ids))
    errors.extend(FieldError(field, why) for field, why in host_users_errors(spec))
    return errors


def _container_errors(
    index: int,
    container: Mapping[str, Any],
    parents: Mapping[str, str | None],
    ids: dict[str, int],
) -> list[FieldError]:
    """A container's duplicate id (recorded in ``ids``) and parents that differ from the cell's."""
    errors: list[FieldError] = []
    path = f"spec.containers[{index}]"
    container_id = _text(container.get("id"))
    if container_id is not None:
        if container_id in ids:
            errors.append(
                FieldError(
                    f"{path}.id",
                    f"duplicate container id {quote(container_id)} "
                    f"(also spec.containers[{ids[container_id]}])",
                )
            )
        else:
            ids[container_id] = index
    for field, expected in parents.items():
        given = _text(container.get(field))
        if given is not None and expected is not None and given != expected:
            errors.append(
                FieldError(
                    f"{path}.{field}",
                    f"must match the cell's {quote(expected)}, got {quote(given)}",
                )
            )
    return errors


def _root_errors(
    spec: Mapping[str, Any],
    containers: list[Any],
    roots: list[int],
    ids: Mapping[str, int],
) -> list[FieldError]:
    """One root at most, and it agrees with ``rootContainerId``."""
    errors = [
        FieldError(
            f"spec.containers[{index}].root",
            f"only one container may set root: true (spec.containers[{roots[0]}] does)",
        )
        for index in roots[1:]
    ]
    root_id = _text(spec.get("rootContainerId"))
    if root_id is None:
        return errors
    if root_id not in ids:
        errors.append(FieldError("spec.rootContainerId", f"no container with id {quote(root_id)}"))
        return errors
    errors.extend(
        FieldError(
            f"spec.containers[{index}].root",
            f"conflicts with spec.rootContainerId {quote(root_id)}",
        )
        for index in roots
        if _text(containers[index].get("id")) != root_id
    )
    return errors


def _tty_default_errors(
    spec: Mapping[str, Any], containers: list[Any], ids: Mapping[str, int]
) -> list[FieldError]:
    tty_default = _text(_mapping(spec.get("tty")).get("default"))
    if tty_default is None:
        return []
    if tty_default not in ids:
        return [FieldError("spec.tty.default", f"no container with id {quote(tty_default)}")]
    if containers[ids[tty_default]].get("attachable") is not True:
        return [FieldError("spec.tty.default", f"container {quote(tty_default)} is not attachable")]
    return []


def dedupe(errors: Iterable[FieldError]) -> list[FieldError]:
    return list(dict.fromkeys(errors))


# --- the order a reader meets the errors in -------------------------------------------------

_IDENTITY_FIELDS = ("apiVersion", "kind", "metadata")
"""What a document is comes before what it asks for, wherever the document puts them."""

_PATH_STEP = re.compile(r"\[([^\]]*)\]|([^.\[]+)")
"""One step of a ``format_path`` path: ``[index]`` / ``[key]``, or a field name."""


def in_document_order(errors: Iterable[FieldError], doc: Mapping[str, Any]) -> list[FieldError]:
    """``errors`` in the order a reader meets their fields: the whole document's first, then
    ``apiVersion``, ``kind`` and ``metadata``, then the rest as ``doc`` has them (keys in its
    order, list items by index). A field ``doc`` lacks (``required``) comes after its
    present siblings; errors of one field keep the order they were found in."""
    return sorted(errors, key=lambda error: _document_place(error.field, doc))


def _document_place(field: str, doc: Mapping[str, Any]) -> tuple[int, ...]:
    """Where ``field`` (a ``format_path`` path) is in ``doc``: a position at each level."""
    steps = [index or name for index, name in _PATH_STEP.findall(field)]
    if not steps:
        return ()
    first = steps[0]
    if first in _IDENTITY_FIELDS:
        place = [_IDENTITY_FIELDS.index(first)]
    else:
        place = [len(_IDENTITY_FIELDS) + _position(doc, first)]
    value = doc.get(first)
    for step in steps[1:]:
        if isinstance(value, Mapping):
            place.append(_position(value, step))
            value = value.get(step)
        elif isinstance(value, list) and step.isascii() and step.isdigit():
            place.append(int(step))
            value = value[int(step)] if int(step) < len(value) else None
        else:
            break
    return tuple(place)


def _position(mapping: Mapping[str, Any], key: str) -> int:
    """``key``'s position among ``mapping``'s keys; after all of them when it is not one."""
    for position, present in enumerate(mapping):
        if present == key:
            return position
    return len(mapping)
