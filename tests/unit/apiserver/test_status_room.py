"""A user's write leaves room for the status kukeond writes (``apiserver.statusroom``).

Before, a cell created with a spec just under the store's 1 MiB limit was taken, then every
status write for it was refused: the user saw Pending with no reason. A CellSet's template
is counted twice (its status keeps the current one in ``status.revisions``)."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.apiserver.status import ApiError
from kukeon.apiserver.statusroom import (
    SPEC_MAX_BYTES,
    STATUS_RESERVE_BYTES,
    check_status_room,
    needed_bytes,
)
from kukeon.apiserver.target import Target
from kukeon.store import MAX_DOCUMENT_BYTES
from tests.unit.api.test_spread import set_doc

CELL = Target(Kind.CELL, ("r", "s", "st"), "web", None)
CELLSET = Target(Kind.CELL_SET, ("r", "s", "st"), "web", None)


def _cell(env_bytes: int) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "web"},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "containers": [
                    {
                        "id": "main",
                        "image": "busybox",
                        "env": [f"BIG={'x' * env_bytes}"],
                    }
                ],
            },
        }
    )


def _cellset(env_bytes: int) -> AnyResource:
    document: dict[str, Any] = set_doc(2)
    container = document["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [f"BIG={'x' * env_bytes}"]
    return parse_resource(document)


def _refusal(target: Target, res: AnyResource, current: AnyResource | None = None) -> str:
    with pytest.raises(ApiError) as caught:
        check_status_room(target, res, current)
    assert caught.value.code == 422
    return str(caught.value)


def test_the_reserve_is_kept_under_the_store_limit() -> None:
    assert SPEC_MAX_BYTES == MAX_DOCUMENT_BYTES - STATUS_RESERVE_BYTES == 1024 * 1024 - 65536


def test_a_cell_just_under_the_store_limit_is_refused_naming_its_size_and_the_limit() -> None:
    cell = _cell(MAX_DOCUMENT_BYTES - 2048)  # fits the store, leaves no room for a status
    size = needed_bytes(cell)
    assert SPEC_MAX_BYTES < size < MAX_DOCUMENT_BYTES
    message = _refusal(CELL, cell)
    assert f"{size} bytes" in message
    assert f"{SPEC_MAX_BYTES}-byte limit" in message
    assert str(STATUS_RESERVE_BYTES) in message


def test_a_cell_leaving_the_reserve_is_taken() -> None:
    cell = _cell(SPEC_MAX_BYTES - 4096)
    assert needed_bytes(cell) <= SPEC_MAX_BYTES
    check_status_room(CELL, cell, None)


def test_a_cellsets_template_is_counted_twice() -> None:
    cellset = _cellset(600 * 1024)  # its document alone is well under the limit
    assert needed_bytes(cellset) > 2 * 600 * 1024
    assert "template counted twice" in _refusal(CELLSET, cellset)
    check_status_room(CELLSET, _cellset(400 * 1024), None)


def test_a_document_stored_before_the_bound_may_be_written_without_growing() -> None:
    stored = _cell(MAX_DOCUMENT_BYTES - 2048)
    check_status_room(CELL, stored, stored)  # a label changed, a finalizer removed
    check_status_room(CELL, _cell(MAX_DOCUMENT_BYTES - 4096), stored)  # shrunk, still over
    _refusal(CELL, _cell(MAX_DOCUMENT_BYTES - 1024), stored)  # grown


def test_status_writes_and_kinds_without_a_kukeond_status_are_not_bounded_here() -> None:
    cell = _cell(MAX_DOCUMENT_BYTES - 2048)
    check_status_room(CELL._replace(subresource="status"), cell, cell)
    secret = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Secret",
            "metadata": {"name": "big", "realm": "r"},
            "stringData": {"key": "x" * (MAX_DOCUMENT_BYTES - 4096)},
        }
    )
    check_status_room(Target(Kind.SECRET, ("r", "-", "-"), "big", None), secret, None)
