"""A set's template revisions (kept in its status) and what `rollout history` and `rollout
undo` make of them."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest

from kukeon.api import CellSet, parse_resource, to_document
from kukeon.api.cellset import CHANGE_CAUSE_ANNOTATION
from kukeon.cli.cellsets import history_lines, rolled_back, undo_target
from kukeon.controllers.cellsetplan import REVISIONS_MAX_BYTES, record_revision
from kukeon.store import MAX_DOCUMENT_BYTES, STATUS_RESERVE_BYTES


def a_set(version: str, *, cause: str | None = None, limit: int | None = None) -> CellSet:
    spec: dict[str, Any] = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"id": "a", "image": "busybox", "env": [f"V={version}"]}]},
        },
    }
    if limit is not None:
        spec["revisionHistoryLimit"] = limit
    annotations = {CHANGE_CAUSE_ANNOTATION: cause} if cause else {}
    cellset = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "web", "annotations": annotations},
            "spec": spec,
        }
    )
    assert isinstance(cellset, CellSet)
    return cellset


def rolled(previous: CellSet, to: CellSet) -> CellSet:
    """``to`` with ``previous``'s revisions updated by the controller for ``to``."""
    status = previous.status.model_copy(
        update={
            "revisions": record_revision(
                to.model_copy(update={"status": previous.status}), to.template_hash()
            )
        }
    )
    return to.model_copy(update={"status": status})


def test_each_new_template_is_a_revision_with_its_cause() -> None:
    one = rolled(a_set("1"), a_set("1"))
    two = rolled(one, a_set("2", cause="v2 please"))
    assert [(r.revision, r.change_cause) for r in two.status.revisions] == [
        (1, None),
        (2, "v2 please"),
    ]
    assert two.status.revisions[-1].template_hash == a_set("2").template_hash()
    # The same template again is no new revision.
    assert rolled(two, a_set("2")).status.revisions == two.status.revisions


def test_going_back_renumbers_the_template() -> None:
    three = rolled(rolled(rolled(a_set("1"), a_set("1")), a_set("2")), a_set("3"))
    back = rolled(three, a_set("1"))
    assert [r.revision for r in back.status.revisions] == [2, 3, 4]
    assert back.status.revisions[-1].template_hash == a_set("1").template_hash()


def test_the_history_limit_keeps_the_latest() -> None:
    cellset = a_set("0", limit=2)
    for version in range(6):
        cellset = rolled(cellset, a_set(str(version), limit=2))
    assert [r.revision for r in cellset.status.revisions] == [4, 5, 6]
    cellset = rolled(cellset, a_set("9", limit=0))
    assert [r.revision for r in cellset.status.revisions] == [7]


def test_history_shows_number_hash_and_cause() -> None:
    two = rolled(rolled(a_set("1"), a_set("1")), a_set("2", cause="bump"))
    lines = history_lines(two)
    assert lines[0].split() == ["REVISION", "HASH", "CHANGE-CAUSE"]
    assert lines[1].split() == ["1", a_set("1").template_hash(), "<none>"]
    assert lines[2].split() == ["2", a_set("2").template_hash(), "bump"]


def test_undo_writes_the_kept_template_back() -> None:
    two = rolled(rolled(a_set("1", cause="first"), a_set("1", cause="first")), a_set("2"))
    target = undo_target(two, 0)
    assert target.revision == 1
    back = rolled_back(two, target)
    assert back.template_hash() == a_set("1").template_hash()
    assert back.metadata.annotations[CHANGE_CAUSE_ANNOTATION] == "first"
    assert undo_target(two, 2).revision == 2
    with pytest.raises(click.exceptions.Exit):
        undo_target(two, 7)
    with pytest.raises(click.exceptions.Exit):
        undo_target(rolled(a_set("1"), a_set("1")), 0)  # nothing earlier


def test_heavy_templates_keep_fewer_revisions() -> None:
    big = "x" * (REVISIONS_MAX_BYTES // 3)
    cellset = rolled(a_set("0"), a_set("0"))
    for version in range(1, 6):
        cellset = rolled(cellset, a_set(f"{version}-{big}"))
    # Each template weighs a third of the budget: the current one and one earlier fit.
    assert [r.revision for r in cellset.status.revisions] == [5, 6]


def test_kept_templates_leave_the_document_room_for_its_status() -> None:
    # A 300 KB template beside 200 KB of annotations kept an older 200 KB template after
    # a rollout (within REVISIONS_MAX_BYTES alone): a status over the store's limit.
    def heavy(version: str, size: int) -> CellSet:
        cellset = a_set(f"{version}-{'x' * size}")
        annotations = {"note": "n" * 200_000}
        return cellset.model_copy(
            update={"metadata": cellset.metadata.model_copy(update={"annotations": annotations})}
        )

    cellset = rolled(heavy("0", 200_000), heavy("0", 200_000))
    cellset = rolled(cellset, heavy("1", 300_000))
    assert [r.revision for r in cellset.status.revisions] == [2]
    document = json.dumps(to_document(cellset), separators=(",", ":")).encode()
    assert len(document) <= MAX_DOCUMENT_BYTES - STATUS_RESERVE_BYTES
    # Light enough, the earlier one is kept as before.
    light = rolled(rolled(heavy("0", 1_000), heavy("0", 1_000)), heavy("1", 1_000))
    assert [r.revision for r in light.status.revisions] == [1, 2]
