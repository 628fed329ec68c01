"""How kukectl shows resources (models): YAML/JSON documents, describe pages; tables are
``tables``' (computed from documents).

Everything here is a pure function of resources and a clock, so the output is tested
golden-file style without a server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import yaml

from kukeon.api import (
    AnyResource,
    Cell,
    CellProfile,
    CellSet,
    Event,
    Kind,
    Node,
    Secret,
    key_of,
    to_document,
)
from kukeon.client.paths import KINDS

from . import cellsetview, quotaview, tables
from .tables import NONE, format_rows, human_duration, kind_slug, render_table
from .terminal import terminal_safe

OutputFormat = Literal["table", "wide", "yaml", "json", "name"]


def age(res: AnyResource, now: datetime) -> str:
    return tables.age(tables.shown(res), now)


def object_name(res: AnyResource) -> str:
    return f"{kind_slug(res.kind)}/{res.metadata.name}"


def _state(res: AnyResource) -> str:
    # A container's CrashLoopBackOff is in the Containers table: the cell's own state here,
    # as kubectl describe's Status beside get's STATUS.
    return tables.state_of(Kind(res.kind), tables.shown(res), waiting=False)


def container_ready(status: Any) -> bool:
    """Whether a container's status (a model) counts as ready (``tables.container_ready``)."""
    return tables.container_ready(
        status.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
    )


def _text(obj: Any, field: str) -> str:
    """A status field as text; <none> when unset."""
    value = getattr(obj, field, None)
    return NONE if value in (None, "") else str(value)


def render_documents(items: Sequence[AnyResource], fmt: Literal["yaml", "json"]) -> str:
    """One object as one document; several as a multi-document YAML stream / JSON List."""
    docs = [to_document(res) for res in items]
    if fmt == "json":
        if len(docs) == 1:
            return json.dumps(docs[0], indent=2) + "\n"
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}, indent=2) + "\n"
    return yaml.safe_dump_all(docs, sort_keys=False, explicit_start=len(docs) > 1)


def render(
    kind: Kind,
    items: Sequence[AnyResource],
    fmt: OutputFormat,
    *,
    now: datetime | None = None,
    with_parents: bool = False,
) -> str:
    when = now or datetime.now(UTC)
    if fmt in ("yaml", "json"):
        return render_documents(items, fmt)
    if fmt == "name":
        return "\n".join(object_name(res) for res in items)
    return render_table(kind, items, now=when, wide=fmt == "wide", with_parents=with_parents)


# --- describe ---------------------------------------------------------------------------


def _mapping_text(values: dict[str, str]) -> list[str]:
    if not values:
        return [NONE]
    return [f"{key}={value}" for key, value in sorted(values.items())]


def _field_lines(pairs: Sequence[tuple[str, Sequence[str] | str]], indent: int = 0) -> list[str]:
    width = max(len(label) for label, _ in pairs) + 2
    lines: list[str] = []
    for label, value in pairs:
        values = [value] if isinstance(value, str) else list(value) or [NONE]
        values = [terminal_safe(text) for text in values]
        lines.append(" " * indent + f"{label + ':':<{width}}{values[0]}".rstrip())
        lines += [" " * (indent + width) + extra for extra in values[1:]]
    return lines


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return NONE
    return f"{value.isoformat()} ({human_duration((now - value).total_seconds())} ago)"


def _pruned(value: Any) -> Any:
    """Drop empty lists and maps: describe shows what is set, not every default."""
    if isinstance(value, dict):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _yaml_block(value: Any, indent: int) -> list[str]:
    text = yaml.safe_dump(_pruned(value), sort_keys=False, default_flow_style=False).rstrip()
    if text in ("{}", "[]"):
        return [" " * indent + NONE]
    return [" " * indent + line for line in text.splitlines()]


def _node_lines(kind: Kind, nodes: Any) -> list[str]:
    """The per-node materialisation of a realm, space or stack (``status.nodes``)."""
    lines = ["Nodes:"]
    if not nodes:
        return [*lines, f"  {NONE}"]
    header = ["NODE", "STATE", "CGROUP"]
    if kind == Kind.SPACE:
        header += ["BRIDGE", "SUBNET"]
    rows = [[*header, "REASON"]]
    for name, entry in sorted(nodes.items()):
        row = [name, str(entry.state), entry.cgroup_path or NONE]
        if kind == Kind.SPACE:
            row += [entry.bridge_name or NONE, entry.subnet or NONE]
        rows.append([*row, entry.reason or NONE])
    return lines + ["  " + line for line in format_rows(rows)]


def _mebibytes(count: int) -> str:
    return f"{count // (1 << 20)}Mi"


def _node_detail_lines(res: Node, now: datetime) -> list[str]:
    """What `describe node` adds: addresses, capacity, system info, conditions, heartbeat
    (kubectl's page, with kukeon's figures)."""
    status = res.status
    lines = ["Addresses:"]
    if status.addresses:
        lines += _field_lines([(a.type, a.address) for a in status.addresses], indent=2)
    else:
        lines.append(f"  {NONE}")
    lines += _field_lines(
        [
            ("API Endpoint", status.api_endpoint or NONE),
            ("Last Heartbeat", _when(status.last_heartbeat_time, now)),
            ("Unschedulable", str(res.spec.unschedulable).lower()),
        ]
    )
    for title, resources in (("Capacity", status.capacity), ("Allocatable", status.allocatable)):
        lines.append(f"{title}:")
        lines += _field_lines(
            [("cpu", str(resources.cpus)), ("memory", _mebibytes(resources.memory_bytes))],
            indent=2,
        )
    capacity = status.capacity
    lines.append("System Info:")
    lines += _field_lines(
        [
            ("Cgroup Mode", capacity.cgroup_mode or NONE),
            ("containerd Version", capacity.containerd_version or NONE),
            ("runc Version", capacity.runc_version or NONE),
            ("CNI Plugins", ", ".join(capacity.cni_plugins) or NONE),
        ],
        indent=2,
    )
    lines.append("Conditions:")
    if not status.conditions:
        return [*lines, f"  {NONE}"]
    rows = [["TYPE", "STATUS", "LAST TRANSITION", "REASON", "MESSAGE"]]
    for condition in status.conditions:
        since = condition.last_transition_time
        rows.append(
            [
                condition.type,
                condition.status,
                NONE if since is None else f"{human_duration((now - since).total_seconds())} ago",
                condition.reason or NONE,
                condition.message or NONE,
            ]
        )
    return lines + ["  " + line for line in format_rows(rows)]


def _secret_lines(res: Secret) -> list[str]:
    """What describe shows of a Secret: its type and, per key, size and digest (no value)."""
    lines = [f"Type: {res.type}", "Data:"]
    if not res.status.keys:
        return [*lines, f"  {NONE}"]
    rows = [["KEY", "BYTES", "SHA256"]]
    rows += [[k.name, str(k.size), k.sha256 or "(hidden from viewers)"] for k in res.status.keys]
    return lines + ["  " + line for line in format_rows(rows)]


_EPOCH = datetime.min.replace(tzinfo=UTC)
DESCRIBE_EVENTS_MAX = 20
"""describe shows at most this many of the object's most recent Events."""


def sort_events(events: Iterable[Event]) -> list[Event]:
    """Oldest first by last occurrence, as kubectl events prints them."""
    return sorted(
        events,
        key=lambda e: (e.last_timestamp or _EPOCH, e.first_timestamp or _EPOCH, e.metadata.name),
    )


def last_seen(event: Event, now: datetime) -> str:
    """``45s``, or ``45s (x3 over 5m)`` for an Event that happened several times."""
    last = event.last_timestamp or event.first_timestamp
    if last is None:
        return NONE
    text = human_duration((now - last).total_seconds())
    if event.count > 1 and event.first_timestamp is not None:
        over = human_duration((now - event.first_timestamp).total_seconds())
        text += f" (x{event.count} over {over})"
    return text


def _event_lines(events: Sequence[Event], now: datetime) -> list[str]:
    """The ``Events:`` section of a describe page: the most recent ones, oldest first."""
    lines = ["Events:"]
    recent = sort_events(events)[-DESCRIBE_EVENTS_MAX:]
    if not recent:
        return [*lines, f"  {NONE}"]
    rows = [["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]]
    for event in recent:
        source = event.source.node or event.source.component
        rows.append(
            [str(event.type), event.reason, last_seen(event, now), source, event.message or NONE]
        )
    return lines + ["  " + line for line in format_rows(rows)]


def _identity_lines(res: AnyResource, kind: Kind, when: datetime) -> list[str]:
    """Name, kind, parents and metadata: the head of every describe page."""
    meta = res.metadata
    parents = [
        (KINDS[parent].kind.value, name)
        for parent, name in zip(KINDS[kind].parents, key_of(res)[:-1], strict=True)
    ]
    pairs: list[tuple[str, Sequence[str] | str]] = [
        ("Name", meta.name),
        ("Kind", kind.value),
        *parents,
        ("Labels", _mapping_text(meta.labels)),
        ("Annotations", _mapping_text(meta.annotations)),
        ("UID", meta.uid or NONE),
        ("Resource Version", meta.resource_version or NONE),
        ("Generation", str(meta.generation)),
        ("Created", _when(meta.creation_timestamp, when)),
    ]
    if meta.deletion_timestamp is not None:
        pairs.append(("Deleting Since", _when(meta.deletion_timestamp, when)))
    pairs.append(("Finalizers", meta.finalizers or [NONE]))
    return _field_lines(pairs)


def _spec_lines(res: AnyResource, kind: Kind) -> list[str]:
    """The spec as YAML; a cell's containers one block each, under their id."""
    spec = to_document(res).get("spec", {})
    containers = spec.pop("containers", None) if kind == Kind.CELL else None
    lines = ["Spec:", *_yaml_block(spec, 2)]
    if containers is not None:
        lines.append("  Containers:")
        for container in containers:
            lines.append(f"    {container.get('id', '?')}:")
            lines += _yaml_block({k: v for k, v in container.items() if k != "id"}, 6)
    return lines


_STATUS_TEXTS = (
    ("Reason", "reason"),
    ("Message", "message"),
    ("Observed Generation", "observed_generation"),
    ("Node", "node_name"),
    ("Cgroup", "cgroup_path"),
)
_STATUS_TIMES = (("Updated", "updated_at"), ("Ready Since", "ready_at"))
"""The common status fields describe shows (label, model field), each when the kind has it."""


def _status_lines(res: AnyResource, kind: Kind, when: datetime) -> list[str]:
    """The kind's own common status fields, and a cell's or space's network."""
    status = res.status
    # Only the fields this kind's status has: a node has no cgroup and no ready time, and a
    # "<none>" for them would read as something missing.
    has = type(status).model_fields
    status_pairs: list[tuple[str, Sequence[str] | str]] = [("State", _state(res))]
    status_pairs += [
        (label, _text(status, field)) for label, field in _STATUS_TEXTS if field in has
    ]
    status_pairs += [
        (label, _when(getattr(status, field), when))
        for label, field in _STATUS_TIMES
        if field in has
    ]
    if kind == Kind.CELL:
        status_pairs.append(("IP", status.network.ip or NONE))
        status_pairs.append(("Bridge", status.network.bridge_name or NONE))
    elif kind == Kind.SPACE:
        status_pairs.append(("Bridge", status.network.bridge_name or NONE))
        status_pairs.append(("Subnet", status.network.subnet or NONE))
    return ["Status:", *_field_lines(status_pairs, indent=2)]


def _container_status_lines(containers: Sequence[Any], when: datetime) -> list[str]:
    """The ``Containers:`` table of a cell's describe page."""
    if not containers:
        return ["Containers:", f"  {NONE}"]
    rows = [["ID", "STATE", "READY", "PID", "EXIT CODE", "RESTARTS", "REASON", "MESSAGE"]]
    probes: list[list[str]] = [["CONTAINER", "PROBE", "RESULT", "FAILURES", "SINCE", "MESSAGE"]]
    for c in containers:
        exit_code = NONE if c.exit_code is None else str(c.exit_code)
        if c.exit_signal:
            exit_code += f" ({c.exit_signal})"
        rows.append(
            [
                c.id,
                str(c.state),
                "true" if container_ready(c) else "false",
                NONE if c.pid is None else str(c.pid),
                exit_code,
                str(c.restart_count),
                c.reason or NONE,
                c.message or NONE,
            ]
        )
        for p in c.probes:
            since = p.last_transition_time.isoformat() if p.last_transition_time else NONE
            probes.append(
                [
                    c.id,
                    str(p.probe),
                    str(p.result),
                    str(p.consecutive_failures),
                    since,
                    p.message or NONE,
                ]
            )
    lines = ["Containers:", *("  " + line for line in format_rows(rows))]
    if len(probes) > 1:
        lines += ["Probes:", *("  " + line for line in format_rows(probes))]
    return lines + _last_state_lines(containers, when)


def _last_state_lines(containers: Sequence[Any], when: datetime) -> list[str]:
    """``Last State:``, how each restarted or waiting container's previous run ended
    (Kubernetes' ``lastState.terminated``, the last line it wrote as MESSAGE), apart from
    the table above, which says what runs (or waits) now."""
    rows = [["CONTAINER", "REASON", "EXIT CODE", "STARTED", "FINISHED", "MESSAGE"]]
    for c in containers:
        last = c.last_state
        if last is None:
            continue
        code = str(last.exit_code) + (f" ({last.signal})" if last.signal else "")
        started = last.started_at.isoformat() if last.started_at else NONE
        finished = _when(last.finished_at, when)
        rows.append([c.id, last.reason or NONE, code, started, finished, last.message or NONE])
    if len(rows) == 1:
        return []
    return ["Last State:", *("  " + line for line in format_rows(rows))]


def describe(
    res: AnyResource,
    *,
    now: datetime | None = None,
    events: Sequence[Event] | None = None,
    members: Sequence[Cell] = (),
    quota: Mapping[str, Any] | None = None,
) -> str:
    """A human page about one object: identity, spec, status, containers, reasons, a
    CellSet's ``members`` (its cells), a realm's ``quota`` use (``quotaview``), and its
    recent ``events`` when given (an empty list shows ``Events: <none>``)."""
    when = now or datetime.now(UTC)
    kind = Kind(res.kind)
    lines = _identity_lines(res, kind, when)
    if isinstance(res, Secret):
        return "\n".join([*lines, *_secret_lines(res)]) + "\n"
    lines += _spec_lines(res, kind)
    if isinstance(res, CellProfile):  # a template: no status
        return "\n".join(lines) + "\n"
    if isinstance(res, CellSet):
        lines += cellsetview.set_status_lines(res) + cellsetview.set_cell_lines(res, members)
    else:
        lines += _status_lines(res, kind, when)
    if kind in (Kind.REALM, Kind.SPACE, Kind.STACK):
        lines += _node_lines(kind, res.status.nodes)
    if quota is not None:
        lines += quotaview.quota_lines(quota)
    if isinstance(res, Node):
        lines += _node_detail_lines(res, when)
    if kind == Kind.CELL:
        lines += _container_status_lines(res.status.containers, when)
    if events is not None:
        lines += _event_lines(events, when)
    return "\n".join(lines) + "\n"
