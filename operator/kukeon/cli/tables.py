"""kubectl-like tables of objects, computed from their documents (the JSON the server sends).

``kukectl get`` prints a table straight from the server's answer, without defining or
validating the models (``kukeon.api``: most of what a ``get`` paid at start): a row reads
the camelCase document, missing fields taken at the models' defaults. A table of models
(``get -w``, describe, tests) reads each model's document with only the fields it was given
(``shown``), so both read alike. CellSets and CellProfiles, whose columns are computed by
their models, are parsed for their rows.

Tables are plain text columns (three spaces apart, like kubectl) so they read the same in a
terminal, a pipe and a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kukeon.api.names import SCOPE_PLACEHOLDER, SCOPED_KINDS, Kind
from kukeon.client.paths import KINDS

from .jsonpath import text_of, values
from .terminal import terminal_safe

if TYPE_CHECKING:
    from kukeon.api import AnyResource

NONE = "<none>"
Document = Mapping[str, Any]

# A status without a state reads as its model's default state.
_DEFAULT_STATES = {
    Kind.REALM: "Pending",
    Kind.SPACE: "Pending",
    Kind.STACK: "Pending",
    Kind.CELL: "Pending",
    Kind.NODE: "Unknown",
}

_WIDE_COLUMNS: dict[Kind, list[str]] = {
    Kind.REALM: ["NAMESPACE", "CGROUP"],
    Kind.SPACE: ["BRIDGE", "SUBNET", "CGROUP"],
    Kind.STACK: ["CGROUP"],
    Kind.CELL: ["IP", "NODE", "REASON", "CGROUP"],
    Kind.NODE: ["INTERNAL-IP", "CPUS", "MEMORY", "CGROUPS", "CONTAINERD"],
}


def human_duration(seconds: float) -> str:
    """kubectl's AGE: ``45s``, ``3m12s``, ``27m``, ``5h3m``, ``17h``, ``3d4h``, ``40d``, ``2y``."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def kind_slug(kind: Kind | str) -> str:
    """``Cell`` -> ``cell``, as in ``cell/web created``."""
    return str(kind).lower()


def format_rows(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, three spaces apart, no trailing spaces; control characters in
    a cell escaped (``terminal``)."""
    if not rows:
        return []
    rows = [[terminal_safe(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


# --- reading a document ----------------------------------------------------------------


def shown(res: AnyResource) -> dict[str, Any]:
    """The document of a model as it was given (fields left at their default are absent,
    as in a document that never had them): what a table reads of a model."""
    return res.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


def as_document(item: Document | AnyResource) -> Document:
    """A document as it is; a model as ``shown``."""
    return item if isinstance(item, Mapping) else shown(item)


def _part(document: Document, *path: str) -> Mapping[str, Any]:
    """The object at ``path`` (``status``, ``network``), empty when absent."""
    found: Any = document
    for name in path:
        found = found.get(name) if isinstance(found, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def _items(document: Document, *path: str) -> list[Mapping[str, Any]]:
    *parents, name = path
    found = _part(document, *parents).get(name)
    return [item for item in found or [] if isinstance(item, Mapping)]


def _text(value: Any) -> str:
    return NONE if value in (None, "") else str(value)


def timestamp(value: Any) -> datetime | None:
    """A document's time (RFC 3339); Go's zero time and nothing are None, naive is UTC."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    when = datetime.fromisoformat(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def age(document: Document, now: datetime) -> str:
    created = timestamp(_part(document, "metadata").get("creationTimestamp"))
    if created is None:
        return NONE
    return human_duration((now - created).total_seconds())


def name_of(document: Document) -> str:
    return str(_part(document, "metadata").get("name", ""))


def object_name(document: Document) -> str:
    """``cell/web``."""
    return f"{kind_slug(document.get('kind', ''))}/{name_of(document)}"


def scope_of(kind: Kind, document: Document) -> tuple[str, ...]:
    """The names of the object's parents, outermost first (``kukeon.api.scope_of``)."""
    if kind in SCOPED_KINDS:
        meta = _part(document, "metadata")
        space, stack = meta.get("space"), meta.get("stack")
        return (str(meta.get("realm", "")), space or SCOPE_PLACEHOLDER, stack or SCOPE_PLACEHOLDER)
    spec = _part(document, "spec")
    return tuple(str(spec.get(field, "")) for field in KINDS[kind].parent_fields)


def state_of(kind: Kind, document: Document, *, waiting: bool = True) -> str:
    """The STATE column: the status's state, ``Deleting``, ``Pulling``, a container's
    ``CrashLoopBackOff`` or the reason a running one's update waits, ``ImagePullBackOff``
    (``waiting``: describe shows them under Containers instead), a cordon."""
    status = _part(document, "status")
    state = status.get("state", _DEFAULT_STATES.get(kind))
    text = "" if state is None else str(state)
    if _part(document, "metadata").get("deletionTimestamp") is not None:
        return "Deleting" if text in ("", "Ready", "Pending") else text
    if text == "Pending" and status.get("reason") == "Pulling":
        return "Pulling"  # a cell whose image is being pulled (kubectl's ContainerCreating)
    if waiting and kind == Kind.CELL and text == "Degraded":
        # kubectl's STATUS: a container's waiting reason before the pod's phase; here also
        # that of one held on its former spec, whose update waits (ImagePullBackOff).
        for container in _items(document, "status", "containers"):
            said = container.get("reason")
            if said and (
                container.get("state") == "Waiting"  # CrashLoopBackOff
                or (container.get("state") == "Running" and said == status.get("reason"))
            ):
                return str(said)
    if kind == Kind.NODE and _part(document, "spec").get("unschedulable"):
        return f"{text or 'Unknown'},SchedulingDisabled"  # cordoned, as kubectl shows it
    return text or "Unknown"


def container_ready(status: Mapping[str, Any]) -> bool:
    """Whether a container counts as ready: its ``ready`` field, or for a status written
    before that field existed, that it ran (``Running``; ``Ready`` from a server of an
    earlier version)."""
    if "ready" in status:
        return bool(status["ready"])
    return str(status.get("state", "Pending")) in ("Running", "Ready")


def restarts_of(containers: list[Mapping[str, Any]], now: datetime) -> str:
    """A cell's RESTARTS, as kubectl's: ``3``, or ``3 (40s ago)`` with the age of the
    latest exit a restart followed (the newest ``lastState.finishedAt``)."""
    count = sum(int(c.get("restartCount", 0)) for c in containers)
    ended = [timestamp(_part(c, "lastState").get("finishedAt")) for c in containers]
    latest = max((when for when in ended if when is not None), default=None)
    if not count or latest is None:
        return str(count)
    return f"{count} ({human_duration((now - latest).total_seconds())} ago)"


def cell_reason(document: Document) -> str:
    """Why a cell is not simply running: its own reason, else its first container's."""
    reasons = [_part(document, "status").get("reason")]
    reasons += [c.get("reason") for c in _items(document, "status", "containers")]
    return next((str(r) for r in reasons if r), NONE)


# --- rows ------------------------------------------------------------------------------


def _columns(kind: Kind, *, wide: bool, with_parents: bool) -> list[str]:
    parents = [KINDS[p].kind.value.upper() for p in KINDS[kind].parents] if with_parents else []
    if kind == Kind.SECRET:
        return [*parents, "NAME", "TYPE", "KEYS", "AGE"]
    if kind == Kind.CELL_PROFILE:
        return [*parents, "NAME", "PREFIX", "PARAMETERS", "AGE"]
    if kind == Kind.CELL_SET:
        from . import cellsetview

        return [*parents, *cellsetview.set_columns(), "AGE"]
    columns = [*parents, "NAME", "STATE"]
    if kind == Kind.CELL:
        columns += ["READY", "RESTARTS"]
    columns.append("AGE")
    if wide:
        columns += _WIDE_COLUMNS.get(kind, [])
    return columns


def _modelled_row(kind: Kind, document: Document) -> list[str]:
    """The columns of a CellSet or CellProfile, which their models compute."""
    from kukeon.api import CellProfile, CellSet, parse_resource

    from . import cellsetview

    res = parse_resource(document)
    if isinstance(res, CellSet):
        return cellsetview.set_row(res)
    if isinstance(res, CellProfile):
        names = ",".join(p.name for p in res.spec.parameters) or NONE
        return [res.metadata.name, res.prefix(), names]
    raise TypeError(f"no modelled row for {kind.value}")


def _wide_cells(kind: Kind, document: Document) -> list[str]:
    spec, status = _part(document, "spec"), _part(document, "status")
    cgroup = _text(status.get("cgroupPath"))
    if kind == Kind.REALM:
        return [spec.get("namespace") or NONE, cgroup]
    if kind == Kind.SPACE:
        network = _part(status, "network")
        return [network.get("bridgeName") or NONE, network.get("subnet") or NONE, cgroup]
    if kind == Kind.STACK:
        return [cgroup]
    if kind == Kind.NODE:
        capacity = _part(status, "capacity")
        internal = [
            str(a.get("address"))
            for a in _items(status, "addresses")
            if a.get("type") == "InternalIP"
        ]
        return [
            internal[0] if internal else NONE,
            str(capacity.get("cpus", 0)),
            f"{int(capacity.get('memoryBytes', 0)) // (1 << 20)}Mi",
            capacity.get("cgroupMode") or NONE,
            capacity.get("containerdVersion") or NONE,
        ]
    return [
        _part(status, "network").get("ip") or NONE,
        spec.get("nodeName") or status.get("nodeName") or NONE,
        cell_reason(document),
        cgroup,
    ]


def _row(
    kind: Kind, document: Document, now: datetime, *, wide: bool, with_parents: bool
) -> list[str]:
    row = list(scope_of(kind, document)) if with_parents else []
    if kind == Kind.SECRET:
        keys = _items(document, "status", "keys")
        return [
            *row,
            name_of(document),
            document.get("type", "Opaque"),
            str(len(keys)),
            age(document, now),
        ]
    if kind in (Kind.CELL_SET, Kind.CELL_PROFILE):
        return [*row, *_modelled_row(kind, document), age(document, now)]
    row += [name_of(document), state_of(kind, document)]
    if kind == Kind.CELL:
        containers = _items(document, "status", "containers")
        ready = sum(1 for c in containers if container_ready(c))
        total = len(_items(document, "spec", "containers"))
        row += [f"{ready}/{total}", restarts_of(containers, now)]
    row.append(age(document, now))
    if wide and kind in _WIDE_COLUMNS:
        row += _wide_cells(kind, document)
    return row


@dataclass(frozen=True)
class TableLayout:
    """The columns of a `get` table: the kind's own (or `-o custom-columns`), then the
    label columns of `-L` and `--show-labels`."""

    kind: Kind
    wide: bool = False
    with_parents: bool = False
    label_columns: tuple[str, ...] = ()
    show_labels: bool = False
    custom: tuple[tuple[str, str], ...] = ()

    def columns(self) -> list[str]:
        if self.custom:
            columns = [header for header, _ in self.custom]
        else:
            columns = _columns(self.kind, wide=self.wide, with_parents=self.with_parents)
        columns += [key.rsplit("/", 1)[-1].upper() for key in self.label_columns]
        return columns + (["LABELS"] if self.show_labels else [])

    def row(self, item: Document | AnyResource, now: datetime) -> list[str]:
        document = as_document(item)
        if self.custom:
            row = [
                ",".join(text_of(v) for v in values(document, path)) or NONE
                for _, path in self.custom
            ]
        else:
            row = _row(self.kind, document, now, wide=self.wide, with_parents=self.with_parents)
        labels = _part(document, "metadata", "labels")
        row += [str(labels.get(key, "")) for key in self.label_columns]
        if self.show_labels:
            row.append(",".join(f"{k}={v}" for k, v in sorted(labels.items())) or NONE)
        return row


def render_table(
    kind: Kind,
    items: Iterable[Document | AnyResource],
    *,
    now: datetime,
    wide: bool = False,
    with_parents: bool = False,
    headers: bool = True,
    layout: TableLayout | None = None,
) -> str:
    shape = layout or TableLayout(kind, wide=wide, with_parents=with_parents)
    rows: list[list[str]] = [shape.columns()] if headers else []
    rows += [shape.row(item, now) for item in items]
    return "\n".join(format_rows(rows))


_WATCH_MIN_WIDTHS = {"EVENT": 8, "NAME": 20, "STATE": 10, "AGE": 5}
"""Room `get -w` leaves from the start, so later rows rarely push a column."""


class WatchTable:
    """The rows of `get -w`, one event at a time, under one header: each column keeps the
    widest width seen so far (starting with room for typical values), so rows stay aligned
    with the header and with each other as long as their values fit."""

    def __init__(self, layout: TableLayout, *, events: bool = False) -> None:
        self.layout = layout
        self.events = events  # kubectl's --output-watch-events: an EVENT column first
        self.columns = (["EVENT"] if events else []) + layout.columns()
        self.widths = [max(len(c), _WATCH_MIN_WIDTHS.get(c, 0)) for c in self.columns]

    def _line(self, cells: Sequence[str]) -> str:
        cells = [terminal_safe(cell) for cell in cells]
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells, strict=True)]
        return "   ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()

    def fit(self, items: Iterable[Document | AnyResource], now: datetime) -> None:
        """Widen the columns for rows about to be printed (the initial list)."""
        for item in items:
            self.row(item, now)

    def header(self) -> str:
        return self._line(self.columns)

    def row(self, item: Document | AnyResource, now: datetime, *, event: str = "ADDED") -> str:
        """``event`` DELETED: the object is gone, its STATE column says ``Deleted``: its
        last state (``Ready``, or a relist's last known one) read as an object still there.
        Nothing of it is ready or available any more: READY is ``0/N``, AVAILABLE ``0``."""
        cells = self.layout.row(item, now)
        layout = self.layout
        if event == "DELETED" and not layout.custom:
            own = _columns(layout.kind, wide=layout.wide, with_parents=layout.with_parents)
            if "STATE" in own:
                cells[own.index("STATE")] = "Deleted"
            if "READY" in own:
                at = own.index("READY")
                cells[at] = f"0/{cells[at].partition('/')[2]}"
            if "AVAILABLE" in own:
                cells[own.index("AVAILABLE")] = "0"
        return self._line([event, *cells] if self.events else cells)
