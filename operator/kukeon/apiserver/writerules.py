"""What a write's body must satisfy before admission and the registry see it.

The body is made to agree with its URL (``prepare``: kind, name, parent ids and a
Secret's scope are filled from the URL when absent and refused when they differ) and
validated through ``kukeon.api`` with every invalid field reported at once (``parse``).
Beyond validity, a client may not add a finalizer (``check_finalizers``) nor set what
kukeond would ignore (``check_acted_on``) nor a container no node could run
(``check_runnable``), and what it asks to store must fit the
registry's size limit (``check_size``, for dry runs: a real write is refused by the
registry itself).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from kukeon.api import (
    API_VERSION,
    SCOPE_PLACEHOLDER,
    SCOPED_KINDS,
    AnyResource,
    Cell,
    CellSet,
    ContainerSpec,
    InvalidResource,
    Kind,
    Realm,
    Secret,
    Space,
    parse_resource,
    to_document,
)
from kukeon.api.cellset import CELLSET_LABEL, HASH_LENGTH, SUFFIX_LENGTH, TEMPLATE_HASH_LABEL
from kukeon.api.container import containerd_container_id
from kukeon.api.hostusers import host_users_change
from kukeon.api.labelrules import (
    ANNOTATIONS_MAX_BYTES,
    label_key_problem,
    label_value_problem,
)
from kukeon.api.meta import check_dns_label, quote
from kukeon.api.placement import is_scheduler_placed
from kukeon.apiserver.portclaims import port_causes
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.realmrules import realm_causes
from kukeon.apiserver.status import ApiError, Cause
from kukeon.apiserver.target import Target
from kukeon.client.paths import KINDS
from kukeon.store import MAX_DOCUMENT_BYTES, NotFound


def prepare(body: Any, target: Target, *, name_from_url: bool) -> dict[str, Any]:
    """Make the body agree with the URL: kind, name and parent ids."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a {target.kind.value} object")
    document = dict(body)
    causes = _agree_kind(document, target)
    document.setdefault("apiVersion", API_VERSION)
    metadata = document.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ApiError(
            400, "metadata must be an object", causes=[Cause("metadata", "must be an object")]
        )
    metadata = dict(metadata)
    if name_from_url and target.name is not None:
        causes.extend(_agree_name(metadata, target.name))
    document["metadata"] = metadata
    if target.kind in SCOPED_KINDS:
        causes.extend(_secret_scope_from_url(metadata, target.scope))
    spec = document.get("spec")
    if spec is None:
        spec = {}
    if isinstance(spec, dict):
        spec = dict(spec)
        causes.extend(_agree_parents(spec, target))
        document["spec"] = spec
    if causes:
        raise ApiError(
            400,
            f"{target.kind.value} does not match the URL: "
            + "; ".join(f"{c.field}: {c.message}" for c in causes),
            kind=target.kind.value,
            name=target.name or metadata.get("name"),
            causes=causes,
        )
    return document


def _agree_kind(document: dict[str, Any], target: Target) -> list[Cause]:
    kind = document.get("kind")
    if kind is None:
        document["kind"] = target.kind.value
    elif kind != target.kind.value:
        return [Cause("kind", f"must be {target.kind.value} on this URL, got {quote(kind)}")]
    return []


def _agree_name(metadata: dict[str, Any], from_url: str) -> list[Cause]:
    name = metadata.get("name")
    if not name:
        metadata["name"] = from_url
    elif name != from_url:
        why = f"must be {quote(from_url)} (the name in the URL), got {quote(name)}"
        return [Cause("metadata.name", why)]
    return []


def _agree_parents(spec: dict[str, Any], target: Target) -> list[Cause]:
    causes: list[Cause] = []
    for field, parent in zip(KINDS[target.kind].parent_fields, target.scope, strict=False):
        given = spec.get(field)
        if given in (None, ""):
            spec[field] = parent
        elif given != parent:
            why = f"must be {parent!r} (the parent in the URL), got {quote(given)}"
            causes.append(Cause(f"spec.{field}", why))
    return causes


def _secret_scope_from_url(metadata: dict[str, Any], scope: tuple[str, ...]) -> list[Cause]:
    """Fill a Secret's (a CellProfile's) metadata.realm/space/stack from its URL (`-`:
    none), or say why not."""
    causes: list[Cause] = []
    for level, from_url in zip(("realm", "space", "stack"), scope, strict=False):
        wanted = None if from_url == SCOPE_PLACEHOLDER else from_url
        given = metadata.get(level) or None
        if given is None and wanted is not None:
            metadata[level] = wanted
        elif given != wanted:
            shown = (
                repr(wanted) if wanted is not None else f"unset ({SCOPE_PLACEHOLDER} in the URL)"
            )
            causes.append(
                Cause(f"metadata.{level}", f"must be {shown} (the URL), got {quote(given)}")
            )
    return causes


def parse(document: Mapping[str, Any], *, unknown_fields: list[str] | None = None) -> AnyResource:
    """The resource, or a 422 naming every invalid field; ``unknown_fields``: a list for the
    paths of the fields no model knows, dropped instead of refused (``fieldvalidation``)."""
    try:
        return parse_resource(document, unknown_fields=unknown_fields)
    except InvalidResource as exc:
        raise ApiError(
            422,
            f'{exc.kind} "{exc.name}" is invalid: '
            + "; ".join(f"{c.field}: {c.message}" if c.field else c.message for c in exc.causes),
            kind=exc.kind,
            name=exc.name,
            causes=[Cause(c.field, c.message) for c in exc.causes],
        ) from None


def base64_values(secret: Secret) -> dict[str, str]:
    """A Secret's values as its ``data`` (in memory only: no document shows them)."""
    values = secret.values() or {}
    return {key: base64.b64encode(value).decode() for key, value in values.items()}


def check_finalizers(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """A client may remove a finalizer (to free an object whose owner is gone for good), never
    add one: each is a promise that a kukeond will release it, and one nobody keeps would
    hold a deletion (and `kukectl delete --wait`) for ever. kukeond sets its own through the
    registry, not through this API."""
    kept = set(current.metadata.finalizers) if current is not None else set()
    added = sorted(set(res.metadata.finalizers) - kept)
    if added:
        why = (
            f"cannot add {', '.join(quote(name) for name in added)}: only kukeond adds "
            "finalizers (and releases them); a client may only remove one"
        )
        raise ApiError(
            422,
            f"{target.label()}: metadata.finalizers: {why}",
            reason="Invalid",
            kind=target.kind.value,
            name=target.name,
            causes=[Cause("metadata.finalizers", why)],
        )


def check_labels(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """A label is there to be selected (`-l`, a set's selector, `nodeSelector`): one no
    selector can name (`a b`, `x,y`, a value of 64 characters) is refused, as Kubernetes
    refuses it, in an object's labels and in a set's template (its cells' labels). Labels
    an object already had are left alone, so a legacy one does not block other changes.

    Annotations, as Kubernetes': keys of the labels' form, and at most 256 KiB in all
    (a set copies its template's to every cell, each a document of its own in etcd).

    A set's template may not carry the labels its controller puts on each cell
    (`_reserved_template_labels`)."""
    causes = _label_causes("metadata.labels", res.metadata.labels, _labels_of(current))
    kept_notes = current.metadata.annotations if current is not None else {}
    causes += _annotation_causes("metadata.annotations", res.metadata.annotations, kept_notes)
    causes += _node_selector_causes(res, current)
    if isinstance(res, CellSet):
        kept_meta = current.spec.template.metadata if isinstance(current, CellSet) else None
        template = res.spec.template.metadata
        kept_labels = kept_meta.labels if kept_meta is not None else {}
        causes += _label_causes("spec.template.metadata.labels", template.labels, kept_labels)
        causes += _reserved_template_labels(template.labels, kept_labels)
        causes += _annotation_causes(
            "spec.template.metadata.annotations",
            template.annotations or {},
            (kept_meta.annotations or {}) if kept_meta is not None else {},
        )
    if causes:
        raise ApiError(
            422,
            f"{target.label()}: {causes[0].field}: {causes[0].message}",
            reason="Invalid",
            kind=target.kind.value,
            name=target.name,
            causes=causes,
        )


_RESERVED_TEMPLATE_LABELS = {
    CELLSET_LABEL: "the set's name",
    TEMPLATE_HASH_LABEL: "the hash of the template the cell was made from",
}
"""The labels a set's controller puts on each of its cells, over the template's."""


def _reserved_template_labels(labels: Mapping[str, str], kept: Mapping[str, str]) -> list[Cause]:
    """A reserved label in a set's template was stored and silently replaced on every cell
    by the controller's value. One the stored template already has, with that value, is
    let through: a set written before this rule stays writable (scaled, say)."""
    return [
        Cause(
            f"spec.template.metadata.labels[{quote(key)}]",
            f"{quote(key)} is set by kukeon on each of the set's cells ({what}): leave it out",
        )
        for key, what in _RESERVED_TEMPLATE_LABELS.items()
        if key in labels and kept.get(key) != labels[key]
    ]


def _selectors_of(res: AnyResource | None) -> dict[str, Mapping[str, str]]:
    """The node selectors of a cell or a set (its own and its template's), by field path."""
    if isinstance(res, Cell):
        return {"spec.nodeSelector": res.spec.node_selector}
    if isinstance(res, CellSet):
        found: dict[str, Mapping[str, str]] = {"spec.nodeSelector": res.spec.node_selector}
        if res.spec.template.spec is not None:
            found["spec.template.spec.nodeSelector"] = res.spec.template.spec.node_selector
        return found
    return {}


def _node_selector_causes(res: AnyResource, current: AnyResource | None) -> list[Cause]:
    """A `nodeSelector` term no node label can satisfy (a key such as `a b` or `a/b/c`, a
    value of 64 characters): node labels are label keys and values, so the cell would stay
    unscheduled for good, the scheduler saying only that no node matches. Terms stored
    before are left alone, as labels are."""
    kept = _selectors_of(current)
    causes: list[Cause] = []
    for field, selector in _selectors_of(res).items():
        for cause in _label_causes(field, selector, kept.get(field, {})):
            why = f"{cause.message}; no node's label can match it"
            causes.append(cause._replace(message=why))
    return causes


def _annotation_causes(
    field: str, annotations: Mapping[str, str], kept: Mapping[str, str]
) -> list[Cause]:
    if annotations == kept:
        return []
    causes = [
        Cause(f"{field}[{quote(key)}]", f"{quote(key)} {problem}")
        for key in annotations
        if key not in kept and (problem := label_key_problem(key, what="an annotation key"))
    ]
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        causes.append(
            Cause(field, f"{size} bytes of keys and values, more than {ANNOTATIONS_MAX_BYTES}")
        )
    return causes


def _labels_of(res: AnyResource | None) -> Mapping[str, str]:
    return res.metadata.labels if res is not None else {}


def _label_causes(field: str, labels: Mapping[str, str], kept: Mapping[str, str]) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in labels.items():
        if key in kept and kept[key] == value:
            continue
        for problem, shown in ((label_key_problem(key), key), (label_value_problem(value), value)):
            if problem is not None:
                causes.append(Cause(f"{field}[{quote(key)}]", f"{quote(shown)} {problem}"))
    return causes


_NOT_ACTED_ON: dict[str, str] = {}
"""Container fields the model loads (kukeon manifests carry them) but kukeond does not act
on: a write that sets or changes one is refused, so nobody believes it works."""

_ACTED_ON_FIELDS = {"ports", "networks", "cni_config_path"}


def check_acted_on(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """Refuse what a write asks that kukeond would ignore, or that only kukeon decides: the
    fields of `_NOT_ACTED_ON`, a `containerdId` other than the derived one, and networks
    the cell cannot have (`_network_causes`). Compared with the stored object, so a
    document written before these rules stays writable as long as the write leaves those
    values as they were. A set's template is checked as the cells it makes
    (`_template_causes`); a realm's by `realmrules`."""
    if isinstance(res, Realm):
        causes = realm_causes(res, current)
        refuse_invalid(target, res, causes)
        return
    if isinstance(res, CellSet):
        refuse_invalid(target, res, _template_causes(res, current))
        return
    if not isinstance(res, Cell):
        return
    causes = _cell_causes(res, current)
    if isinstance(current, Cell) and (change := host_users_change(current.spec, res.spec)):
        causes.append(Cause(*change))
    refuse_invalid(target, res, causes)


def _cell_causes(res: Cell, current: AnyResource | None) -> list[Cause]:
    """What `check_acted_on` refuses in a cell's containers, compared with ``current``."""
    before = {c.id: c for c in current.spec.containers} if isinstance(current, Cell) else {}
    causes: list[Cause] = []
    for index, container in enumerate(res.spec.containers):
        path = f"spec.containers[{index}]"
        old = before.get(container.id)
        written = container.model_dump(by_alias=True, include=_ACTED_ON_FIELDS)
        kept = old.model_dump(by_alias=True, include=_ACTED_ON_FIELDS) if old else {}
        for field, why in _NOT_ACTED_ON.items():
            if written.get(field) and written.get(field) != kept.get(field):
                causes.append(Cause(f"{path}.{field}", why))
        causes += _network_causes(res, index)
        causes += _alias_causes(res, index, old)
        derived = containerd_container_id(
            space=res.spec.space_id, stack=res.spec.stack_id, cell=res.metadata.name,
            container=container.id,
        )  # fmt: skip
        given = container.containerd_id
        if given and given != derived and given != (old.containerd_id if old else None):
            why = f"is derived by kukeon ({quote(derived)}): leave it out"
            causes.append(Cause(f"{path}.containerdId", why))
    return causes + port_causes(res, current)


def _alias_causes(cell: Cell, index: int, old: ContainerSpec | None) -> list[Cause]:
    """`networksAliases` of a cell with no network namespace: no hosts file lists them (its
    own is the host's, and it is no peer of any cell). Refused when set or changed, or when
    the cell's containers move to the host's network."""
    container = cell.spec.containers[index]
    if not container.networks_aliases or not all(c.host_network for c in cell.spec.containers):
        return []
    if old is not None and old.host_network and old.networks_aliases == container.networks_aliases:
        return []  # stored so before this rule
    why = (
        "the cell has no network namespace (every container uses the host's network): no "
        "hosts file lists its aliases; remove them or hostNetwork"
    )
    return [Cause(f"spec.containers[{index}].networksAliases", why)]


def _template_causes(res: CellSet, current: AnyResource | None) -> list[Cause]:
    """A set's template checked as the cells it makes (the set controller stores them
    without these checks): networks or a cniConfigPath a cell cannot have, ports its node
    cannot publish. Such a template was stored and each of its cells failed on its node
    (NetworkFailed) or had the value ignored. A cause the stored template has too is let
    through, so a set written before stays writable (scaled, say)."""
    cell = _template_cell(res)
    if cell is None:
        return []
    stored = _template_cell(current) if isinstance(current, CellSet) else None
    known = set(_cell_causes(stored, None)) if stored is not None else set()
    causes = [cause for cause in _cell_causes(cell, stored) if cause not in known]
    if cell.spec.auto_delete and not (stored is not None and stored.spec.auto_delete):
        causes.append(Cause("spec.autoDelete", _SET_AUTO_DELETE))
    return _in_template(causes)


_SET_AUTO_DELETE = (
    "must be false in a set's template: the set makes a new cell for every cell it loses, "
    "so a cell that deletes itself once its root container exits would be made again at "
    "once, over and over (a set's cells are kept by their containers' restartPolicy, as a "
    "ReplicaSet's pods by theirs)"
)


def _in_template(causes: list[Cause]) -> list[Cause]:
    """A template cell's causes named as the set's fields (`spec.template.spec.…`)."""
    template = "spec.template.spec."
    return [
        Cause(template + cause.field.removeprefix("spec."), cause.message, cause.reason)
        for cause in causes
    ]


def _template_cell(cellset: CellSet) -> Cell | None:
    """A cell as ``cellset`` would make it; None while it has no template spec (a profile
    not resolved yet) or the template cannot make a cell (reported by other checks)."""
    if cellset.spec.template.spec is None:
        return None
    name = f"{cellset.metadata.name}-{'0' * HASH_LENGTH}-{'0' * SUFFIX_LENGTH}"
    try:
        cell = parse_resource(cellset.cell_document(name, "0" * HASH_LENGTH))
    except InvalidResource:
        return None
    return cell if isinstance(cell, Cell) else None


ContainerCheck = Callable[[ContainerSpec], Sequence[tuple[str, str]]]
"""A container's mistakes that no node could run, as (field relative to the container,
reason): kukeond passes the runtime spec builder's host-independent checks
(``runtime.containerd.speccheck``; the API server does not import the runtime)."""


def check_runnable(
    target: Target, res: AnyResource, current: AnyResource | None, check: ContainerCheck | None
) -> None:
    """Refuse a container that no node could run, for a reason that needs neither the host
    nor the image (``check``): an unknown capability or security option, a malformed
    ``user``, a mount over /proc or one destination used twice, a tmpfs option the kernel
    does not know. Checked on a cell's containers, a set's template and a space's
    container defaults. A mistake the stored object already had is let through, so a
    document written before these rules stays writable (its node reports it, as before)."""
    if check is None:
        return
    causes: list[Cause] = []
    for prefix, container, stored in containers_of(res, current):
        known = set(check(stored)) if stored else set()
        causes += [
            Cause(f"{prefix}.{field}", reason)
            for field, reason in check(container)
            if (field, reason) not in known
        ]
    refuse_invalid(target, res, causes)


CELL_KEY_MAX = 230
"""The most characters of a cell's realm, space, stack and name joined by one character:
its node names host objects after them, and the longest must fit Linux's 255 (a network
namespace file ``kukeon-<instance>_<realm>_<space>_<stack>_<cell>``, its nftables chain
``ports-c-`` + that), beside what a Kubernetes name allows (253)."""


def check_host_names(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """Refuse a new cell, or a new set's cells, whose names together pass ``CELL_KEY_MAX``:
    its node could not name its network namespace, and the cell would never start."""
    if current is not None:
        return  # a name and its parents never change
    if not isinstance(res, Cell | CellSet):
        return
    longest = sum(map(len, target.key)) + len(target.key) - 1
    whose = "cell's name"
    if isinstance(res, CellSet):
        longest += HASH_LENGTH + SUFFIX_LENGTH + 2  # its cells: `<set>-<hash>-<suffix>`
        whose = "name of the set's cells"
    if longest > CELL_KEY_MAX:
        why = (
            f"with its realm, space and stack the {whose} is {longest} characters, over the "
            f"{CELL_KEY_MAX} a node can name host objects after (its network namespace): "
            "use shorter names"
        )
        refuse_invalid(target, res, [Cause("metadata.name", why)])


ContainerAt = tuple[str, ContainerSpec, ContainerSpec | None]


def containers_of(res: AnyResource, current: AnyResource | None) -> list[ContainerAt]:
    """Each container ``res`` asks for, its field path and its stored version (same id)."""
    if isinstance(res, Space):
        defaults = _space_defaults(res)
        stored = _space_defaults(current) if isinstance(current, Space) else None
        return [("spec.defaults.container", defaults, stored)] if defaults else []
    if isinstance(res, Cell):
        prefix, containers = "spec.containers", res.spec.containers
        before = current.spec.containers if isinstance(current, Cell) else []
    elif isinstance(res, CellSet) and res.spec.template.spec is not None:
        prefix, containers = "spec.template.spec.containers", res.spec.template.spec.containers
        old = current.spec.template.spec if isinstance(current, CellSet) else None
        before = old.containers if old is not None else []
    else:
        return []
    by_id = {c.id: c for c in before}
    return [(f"{prefix}[{i}]", c, by_id.get(c.id)) for i, c in enumerate(containers)]


def _space_defaults(space: Space) -> ContainerSpec | None:
    """The fields of a space's container defaults, as a container that sets only them."""
    defaults = space.spec.defaults.container if space.spec.defaults else None
    if defaults is None:
        return None
    return ContainerSpec.model_construct(
        id="defaults",
        image="-",
        user=defaults.user,
        capabilities=defaults.capabilities,
        security_opts=list(defaults.security_opts),
        tmpfs=list(defaults.tmpfs),
        resources=defaults.resources,
    )


def _network_causes(cell: Cell, index: int) -> list[Cause]:
    """What container ``index`` of ``cell`` asks of the network that the cell cannot have.

    Every container shares the root container's network namespace: the root container's
    `cniConfigPath` replaces the space's network for the cell and is refused on the others;
    `networks` of every container are merged (the cell joins each space once). A cell whose
    containers all use the host's network has no namespace to attach.
    """
    container = cell.spec.containers[index]
    path = f"spec.containers[{index}]"
    causes: list[Cause] = []
    no_netns = all(c.host_network for c in cell.spec.containers)
    is_root = container.id == cell.spec.root_container().id
    if container.cni_config_path is not None:
        if not is_root:
            why = (
                "only the root container's cniConfigPath is used: every container shares its "
                f"network namespace (set it on {quote(cell.spec.root_container().id)})"
            )
            causes.append(Cause(f"{path}.cniConfigPath", why))
        elif no_netns:
            why = "the cell has no network namespace: every container uses the host's network"
            causes.append(Cause(f"{path}.cniConfigPath", why))
    for position, name in enumerate(container.networks):
        where = f"{path}.networks[{position}]"
        if not _is_dns_label(name):
            causes.append(Cause(where, f"{quote(name)} is not a space name (a DNS label)"))
        elif name == cell.spec.space_id:
            why = f"{quote(name)} is the cell's own space (its first interface is on it)"
            causes.append(Cause(where, why))
        elif no_netns:
            why = "the cell has no network namespace: every container uses the host's network"
            causes.append(Cause(where, why))
    return causes


async def check_networks(
    registry: RegistryApi, target: Target, res: AnyResource, current: AnyResource | None
) -> None:
    """Every space a cell's containers newly name in `networks` must exist in the cell's
    realm and not be being deleted (404-free: a 422 naming the field). Names the stored
    cell already had are not read again: a space deleted later is the node's to report.
    A set's template is checked as the cells it makes (they were stored, then failed)."""
    refuse_invalid(target, res, await _as_cells(_missing_spaces, registry, res, current))


CellRule = Callable[[RegistryApi, Cell, AnyResource | None], Awaitable[list[Cause]]]
"""A rule over a cell and its stored version that reads the registry."""


async def _as_cells(
    rule: CellRule, registry: RegistryApi, res: AnyResource, current: AnyResource | None
) -> list[Cause]:
    """``rule``'s causes for a cell, or for the cell a set's template makes (named under
    `spec.template.spec`, judged against the stored template's cell); none for others."""
    if isinstance(res, CellSet):
        cell = _template_cell(res)
        stored = _template_cell(current) if isinstance(current, CellSet) else None
        return [] if cell is None else _in_template(await rule(registry, cell, stored))
    if isinstance(res, Cell):
        return await rule(registry, res, current)
    return []


async def _missing_spaces(
    registry: RegistryApi, res: Cell, current: AnyResource | None
) -> list[Cause]:
    before = {c.id: c for c in current.spec.containers} if isinstance(current, Cell) else {}
    realm = res.spec.realm_id
    causes: list[Cause] = []
    for index, container in enumerate(res.spec.containers):
        old = before.get(container.id)
        for position, name in enumerate(container.networks):
            if (old is not None and name in old.networks) or not _is_dns_label(name):
                continue
            where = f"spec.containers[{index}].networks[{position}]"
            try:
                space = await registry.get(Kind.SPACE, (realm, name))
            except NotFound:
                causes.append(Cause(where, f"realm {quote(realm)} has no space {quote(name)}"))
                continue
            if space.metadata.deletion_timestamp is not None:
                why = f"space {quote(name)} of realm {quote(realm)} is being deleted"
                causes.append(Cause(where, why))
    return causes


async def check_node_selector(
    registry: RegistryApi, target: Target, res: AnyResource, current: AnyResource | None
) -> None:
    """A cell pinned to a node (`nodeName`) whose labels its `nodeSelector` does not match
    is refused (a 422 naming `spec.nodeSelector`): the scheduler, the only reader of the
    selector, never places a cell that has a node, so the node ran it regardless. Checked
    when the cell is written with a node and its node or its selector is new; a node not
    registered (yet) cannot be judged and is let through, as Kubernetes lets `nodeName`
    name any node. A set's template is checked as the cells it makes (the set's
    `nodeSelector` merged in)."""
    refuse_invalid(target, res, await _as_cells(_selector_mismatch, registry, res, current))


async def _selector_mismatch(
    registry: RegistryApi, cell: Cell, current: AnyResource | None
) -> list[Cause]:
    node, selector = cell.spec.node_name, cell.spec.node_selector
    if node is None or not selector:
        return []
    if isinstance(current, Cell) and (current.spec.node_name, current.spec.node_selector) == (
        node,
        selector,
    ):
        return []  # placed so before: a node's labels may change, it is not re-judged
    try:
        found = await registry.get(Kind.NODE, (node,))
    except NotFound:
        return []
    missing = {
        key: value for key, value in selector.items() if found.metadata.labels.get(key) != value
    }
    if not missing:
        return []
    wanted = ", ".join(f"{key}={value}" for key, value in sorted(missing.items()))
    if is_scheduler_placed(cell):
        # The user wrote no nodeName: the scheduler placed the cell and never moves it.
        fix = "the scheduler does not move a placed cell: delete and create it again"
    else:
        fix = "fix the node's labels, the selector, or leave nodeName out"
    why = (
        f"node {quote(node)} (spec.nodeName) does not carry {wanted}: a cell with a node is "
        f"never scheduled, so the selector would be ignored; {fix}"
    )
    return [Cause("spec.nodeSelector", why)]


def _is_dns_label(name: str) -> bool:
    try:
        check_dns_label(name)
    except ValueError:
        return False
    return True


def refuse_invalid(target: Target, res: AnyResource, causes: list[Cause]) -> None:
    """A 422 naming every cause of ``res``'s refusal, when there is any."""
    if causes:
        raise ApiError(
            422,
            f"{target.label()}: " + "; ".join(f"{c.field}: {c.message}" for c in causes),
            reason="Invalid",
            kind=target.kind.value,
            name=target.name or res.metadata.name,
            causes=causes,
        )


def document_size(res: AnyResource) -> int:
    """The bytes of ``res``'s document as the registry stores it, at least. A Secret's
    values are in no document (write-only), so they are added as its ``data`` (sealed, they
    take a little more): without them a dry run measured a Secret of any size as empty."""
    size = len(json.dumps(to_document(res), separators=(",", ":"), ensure_ascii=False).encode())
    if isinstance(res, Secret):
        size += sum(len(name) + len(value) + 6 for name, value in base64_values(res).items())
    return size


def check_size(res: AnyResource, target: Target) -> None:
    """The registry's size limit, checked before a dry run answers."""
    size = document_size(res)
    if size > MAX_DOCUMENT_BYTES:
        why = f"the document is {size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit"
        raise ApiError(
            422,
            f"{target.label()}: {why}",
            kind=target.kind.value,
            name=target.name,
            causes=[Cause("", why)],
        )
