"""Status objects: shape, store error mapping."""

from __future__ import annotations

import json

import pytest

from kukeon.api import FieldError
from kukeon.apiserver.status import ApiError, Cause, from_store_error, status_response
from kukeon.store import (
    AlreadyExists,
    ChildrenExist,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    StoreError,
    Unavailable,
)


def test_status_document_shape() -> None:
    error = ApiError(
        422,
        'Cell "r/s/st/web" is invalid',
        kind="Cell",
        name="web",
        causes=[Cause("spec.containers[0].image", "required")],
    )
    assert error.to_status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 422,
        "reason": "Invalid",
        "message": 'Cell "r/s/st/web" is invalid',
        "details": {
            "name": "web",
            "kind": "Cell",
            "causes": [{"field": "spec.containers[0].image", "message": "required"}],
        },
    }
    response = status_response(error)
    assert response.status == 422
    assert response.content_type == "application/json"
    assert response.body is not None
    assert json.loads(bytes(response.body))["code"] == 422  # type: ignore[arg-type]


def test_details_are_left_out_when_unknown() -> None:
    assert "details" not in ApiError(401, "no token").to_status()
    assert ApiError(401, "no token").to_status()["reason"] == "Unauthorized"


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (NotFound("realm x not found"), 404, "NotFound"),
        (AlreadyExists("realm x already exists"), 409, "AlreadyExists"),
        (Conflict("stale"), 409, "Conflict"),
        (ChildrenExist("has children", children=["a"]), 409, "Conflict"),
        (Invalid("bad", causes=[FieldError("spec.x", "unknown field")]), 422, "Invalid"),
        (Gone("compacted", compacted_revision=10), 410, "Gone"),
        (Unavailable("etcd down"), 503, "ServiceUnavailable"),
        (StoreError("something else"), 500, "InternalError"),
    ],
)
def test_store_errors_map_to_http(error: StoreError, code: int, reason: str) -> None:
    mapped = from_store_error(error, kind="Realm", name="x")
    assert (mapped.code, mapped.reason) == (code, reason)
    assert mapped.message == str(error)
    assert mapped.kind == "Realm"


def test_invalid_causes_are_carried() -> None:
    mapped = from_store_error(Invalid("bad", causes=[FieldError("spec.x", "unknown field")]))
    assert mapped.causes == [Cause("spec.x", "unknown field")]
