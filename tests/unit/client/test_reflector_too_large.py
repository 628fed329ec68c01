"""`follow` when the server is behind the revision it resumes from (504 ResourceVersionTooLarge).

A server whose etcd was restored from an older backup never reaches the revision kukectl
last saw: asking again from it would wait forever, so the reflector lists again (as
client-go's does) and goes on from the list's revision, reporting what differs.
"""

from __future__ import annotations

from kukeon.client.apiclient import ApiRequestError, ObjectList
from kukeon.client.errors import StatusCause
from kukeon.client.reflector import too_large
from tests.unit.client.test_reflector import Script, collect, ev, realm


def _too_large(wanted: int, current: int) -> ApiRequestError:
    return ApiRequestError.from_status(
        {
            "kind": "Status",
            "code": 504,
            "reason": "Timeout",
            "message": f"Timeout: Too large resource version: {wanted}, current: {current}",
            "details": {
                "causes": [
                    {
                        "reason": "ResourceVersionTooLarge",
                        "message": "Too large resource version",
                        "field": "resourceVersion",
                    }
                ],
                "retryAfterSeconds": 1,
            },
        },
        504,
    )


async def test_a_revision_the_server_has_not_reached_relists() -> None:
    restored = ObjectList([realm("a", 8)], 12)
    script = Script(
        [
            ([ev("ADDED", "a", 30)], None),  # the stream ends; the server comes back restored
            ([], _too_large(30, 12)),
            ([ev("ADDED", "d", 13)], None),
        ],
        listing=restored,
    )
    notes: list[str] = []
    seen = await collect(script, 3, notify=notes.append)
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "d")]
    assert script.watched_from == [None, 30, 12]
    assert script.lists == 1
    assert any("Too large resource version" in note for note in notes)


def test_only_a_504_naming_the_cause_is_too_large() -> None:
    assert too_large(_too_large(5, 4))
    assert not too_large(ApiRequestError(504, "Timeout", "the request did not complete"))
    cause = StatusCause("resourceVersion", "x", "ResourceVersionTooLarge")
    assert not too_large(ApiRequestError(500, "InternalError", "x", causes=[cause]))
