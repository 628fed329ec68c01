"""Field selectors: the fields each kind supports, = / == / !=, and a clear refusal; the
text read as apimachinery's ``fields.ParseSelector`` reads it (escapes, nothing trimmed)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.api.fieldterms import (
    RawTerm,
    escape_value,
    parse_raw,
    split_terms,
    term,
    unescape_value,
)
from kukeon.apiserver.fieldselector import FieldSelectorError, parse_field_selector
from kukeon.client.apiclient import _fields


def _cell(name: str, state: str, node: str | None, reason: str | None = None) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "nodeName": node,
                "containers": [{"id": "a", "image": "busybox"}],
            },
            "status": {"state": state, "reason": reason},
        }
    )


CELLS = [
    _cell("a", "Ready", "n1", "x,y=z"),
    _cell("b", "Failed", "n2", "back\\slash"),
    _cell("c", "Ready", None, " spaced "),
]


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("", ["a", "b", "c"]),
        ("status.state=Ready", ["a", "c"]),
        ("status.state==Ready,spec.nodeName!=n1", ["c"]),
        ("spec.nodeName=", ["c"]),
        ("metadata.name=b", ["b"]),
        ("metadata.name=a,", ["a"]),  # empty terms are skipped, as apimachinery's
        (",,", ["a", "b", "c"]),
        ("status.reason=x\\,y\\=z", ["a"]),  # \, and \= are a value's , and =
        ("status.reason!=x\\,y\\=z,status.state=Ready", ["c"]),
        ("status.reason==back\\\\slash", ["b"]),  # \\ is one backslash
        ("status.reason= spaced ", ["c"]),  # a value keeps its spaces
        ("status.reason=spaced", []),
    ],
)
def test_selects(selector: str, names: list[str]) -> None:
    chosen = parse_field_selector(Kind.CELL, selector)
    assert [c.metadata.name for c in CELLS if chosen.matches(c)] == names


@pytest.mark.parametrize(
    ("kind", "selector", "named"),
    [
        (Kind.CELL, "spec.bogus=1", "spec.bogus"),
        (Kind.REALM, "spec.nodeName=n1", "spec.nodeName"),
        (Kind.SECRET, "status.state=Ready", "status.state"),
        (Kind.CELL, "status.state", "status.state"),
        # nothing is trimmed: the field is 'status.state ' (kube-apiserver: "field label
        # not supported"); it used to be trimmed and chose Ready cells
        (Kind.CELL, "metadata.name!=b, status.state = Ready", "' status.state '"),
        (Kind.CELL, "metadata.name!=b,status.state = Ready", "'status.state '"),
        (Kind.NODE, "\tspec.unschedulable=true", "'\\tspec.unschedulable'"),
    ],
)
def test_unsupported_fields_are_refused_by_name(kind: Kind, selector: str, named: str) -> None:
    with pytest.raises(FieldSelectorError, match=re.escape(named)):
        parse_field_selector(kind, selector)


@pytest.mark.parametrize(
    ("selector", "says"),
    [
        (" ", "is not FIELD=VALUE"),  # only the empty text selects everything
        ("status.state", "is not FIELD=VALUE"),
        ("status.state===Ready", "unescaped '='"),  # `==` then a bare `=`
        ("status.state=Re=ady", "unescaped '='"),
        ("status.state!==Ready", "unescaped '='"),
        ("status.reason=a\\b", "invalid escape sequence"),
        ("status.reason=a\\ b", "invalid escape sequence"),
        ("status.reason=ab\\", "ends in a lone"),
        ("status.reason=\\\\\\", "ends in a lone"),
    ],
)
def test_malformed_text_is_refused(selector: str, says: str) -> None:
    with pytest.raises(FieldSelectorError, match=says):
        parse_field_selector(Kind.CELL, selector)


def test_the_first_operator_splits_the_term() -> None:
    assert parse_raw("a!=b") == [RawTerm("a", "!=", "b")]
    assert parse_raw("a==b") == [RawTerm("a", "==", "b")]
    assert parse_raw("a=!b") == [RawTerm("a", "=", "!b")]
    assert parse_raw("a!b=c") == [RawTerm("a!b", "=", "c")]  # an unknown field, later
    assert parse_raw("a\\,b=c") == [RawTerm("a\\,b", "=", "c")]  # one term: the comma is escaped
    assert split_terms("a=\\\\,b=c") == ["a=\\\\", "b=c"]  # an escaped backslash, then a comma


def test_the_clients_name_term_is_escaped() -> None:
    """A watch of one object by name (kukectl get -w NAME): the name is one value."""
    assert parse_raw(_fields("a,b=c\\", "status.state=Ready")) == [
        RawTerm("metadata.name", "=", "a,b=c\\"),
        RawTerm("status.state", "=", "Ready"),
    ]


@given(st.text())
def test_escaping_round_trips(value: str) -> None:
    assert unescape_value(escape_value(value)) == value
    assert split_terms(escape_value(value)) == [escape_value(value)]


_FIELDS = st.text(st.characters(exclude_characters="\\,=!"), min_size=1)


@given(st.lists(st.tuples(_FIELDS, st.sampled_from(["=", "==", "!="]), st.text()), min_size=1))
def test_terms_written_with_term_read_back(terms: list[tuple[str, str, str]]) -> None:
    text = ",".join(term(field, value, op) for field, op, value in terms)
    assert parse_raw(text) == [RawTerm(field, op, value) for field, op, value in terms]


@given(st.text(alphabet="ab.=!,\\ \t\u00a0\u00e9"))
def test_any_text_is_read_or_refused_and_reads_the_same_when_written_again(text: str) -> None:
    try:
        parsed = parse_raw(text)
    except FieldSelectorError:
        return  # refused (what the messages say: the tests above)
    again = ",".join(term(t.field, t.value, t.operator) for t in parsed)
    assert parse_raw(again) == parsed
