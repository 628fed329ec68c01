"""kukectl says a bad selector's problem once, as kubectl does: the server's message named
the problem in other words than its cause (``label selector 'a in (': 'a in (' is not a
requirement ...; labelSelector: 'a in (' is not a requirement ...``), so the cause was
printed again after it."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import make_mocked_request

from kukeon.api import Kind
from kukeon.apiserver.request import field_filter, label_selector
from kukeon.apiserver.status import ApiError
from kukeon.cli.runner import api_error_text
from kukeon.client.errors import ApiRequestError, StatusCause

LONG_TERM = "a in (" + ",".join(["x" * 60] * 40)


def _printed(query: dict[str, str]) -> tuple[str, ApiRequestError]:
    """What kukectl prints for the API's answer to a list with ``query``."""
    request = make_mocked_request("GET", "/apis/kukeon.io/v1beta1/cells?" + urlencode(query))
    try:
        label_selector(request)
        field_filter(request, Kind.CELL)
    except ApiError as refused:
        answer = ApiRequestError.from_status(refused.to_status(), 400)
    else:
        pytest.fail(f"{query} was not refused")
    return api_error_text(answer), answer


@pytest.mark.parametrize(
    "query",
    [
        {"labelSelector": "a in ("},
        {"labelSelector": "a=b=c"},
        {"labelSelector": "x,a>b,z"},
        {"labelSelector": "!"},
        {"labelSelector": LONG_TERM},  # its cause is cut to the server's limit
        {"labelSelector": "a" * 5000},  # over the length limit
        {"fieldSelector": "foo=1"},
    ],
    ids=["open-set", "two-equals", "comparison", "bang", "long-term", "too-long", "field"],
)
def test_a_bad_selector_is_said_once(query: dict[str, str]) -> None:
    text, answer = _printed(query)
    assert text == answer.message  # every cause is in the message: nothing appended
    (cause,) = answer.causes
    assert cause.field in ("labelSelector", "fieldSelector")
    said = cause.message.split("... (")[0]
    assert text.count(said) == 1, text
    assert text.startswith(cause.field + ": ")


def test_a_cause_the_message_does_not_say_is_still_added() -> None:
    """Two causes with one message: the field tells which the message already says."""
    causes = [StatusCause("spec.a", "required", ""), StatusCause("spec.b", "required", "")]
    answer = ApiRequestError(422, "Invalid", "Cell 'c': spec.a: required", causes=causes)
    assert api_error_text(answer) == "Cell 'c': spec.a: required; spec.b: required"
