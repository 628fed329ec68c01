"""Label selectors: a=b, a==b, a!=b, a in (x,y), a notin (x), a (exists), !a (absent),
a>5 and a<5 (integers, as apimachinery's Gt and Lt)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.api.cellset import check_label_key
from kukeon.api.labelrules import label_key_problem, label_value_problem
from kukeon.store import Invalid, parse_selector


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (None, {}, True),
        ("", {"a": "b"}, True),
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("e", {"e": ""}, True),
        ("e", {}, False),
        ("!e", {}, True),
        ("!e", {"e": "x"}, False),
        ("a=b, c!=d ,e", {"a": "b", "c": "x", "e": "1"}, True),
        ("a=b,c!=d,e", {"a": "b", "c": "d", "e": "1"}, False),
        ("kukeon.io/node=n1", {"kukeon.io/node": "n1"}, True),
        ("a = b", {"a": "b"}, True),
        ("a=", {"a": ""}, True),
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x, y)", {"a": "z"}, False),
        ("a in (x,y)", {}, False),
        ("a in ()", {"a": ""}, True),
        ("a notin (x,y)", {"a": "z"}, True),
        ("a notin (x,y)", {}, True),  # as Kubernetes': notin and != match the key's absence
        ("a notin (x)", {"a": "x"}, False),
        ("tier in (web,api),env notin (prod),!legacy", {"tier": "api", "env": "dev"}, True),
        ("tier in (web,api),env notin (prod),!legacy", {"tier": "api", "legacy": ""}, False),
        ("in", {"in": "1"}, True),  # a keyword only where an operator is expected
        ("a>5", {"a": "6"}, True),
        ("a>5", {"a": "5"}, False),
        ("a<5", {"a": "4"}, True),
        ("a<5", {}, False),  # Gt and Lt need the key
        ("a>5", {"a": "x"}, False),  # ... and a value that reads as an integer
        ("a>5", {"a": "6.0"}, False),
        ("a>5", {"a": "99999999999999999999"}, False),  # past int64: ParseInt fails
        ("a<5", {"a": "-3"}, True),  # not a label value kukeon takes now, but stored ones
        ("a>05", {"a": "007"}, True),
        ("a>6", {"a": "0000000000000000000000007"}, True),  # ParseInt takes any zeros
        ("a<00000000000000000000000000002", {"a": "1"}, True),
        ("a>1", {"a": "-0000000000000000000000000009223372036854775808"}, False),
        ("a<1", {"a": "-0000000000000000000000000009223372036854775808"}, True),
        ("a<1", {"a": "-9223372036854775809"}, False),
        ("a > 1, a < 3", {"a": "2"}, True),
        ("a>1,b", {"a": "2"}, False),
        ("a<1", {"a": " 0"}, False),
        ("a<1", {"a": "\u0660"}, False),  # an Arabic-Indic zero: Python's int, not Go's
    ],
)
def test_selector_matching(selector: str | None, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(selector).matches(labels) is matches


@pytest.mark.parametrize(
    ("selector", "term"),
    [
        ("a=b,,c", "empty term"),
        ("=b", "'=b'"),
        ("a=b c", "'a=b c'"),
        ("!", "'!'"),
        ("a=-x", "'a=-x'"),
        ("a=b=c", "'a=b=c'"),
        ("a=b,", "empty term"),
        ("x,a in (b,-c),z", "'a in (b,-c)'"),
        ("a in (x", "'a in (x'"),
        ("a in x", "'a in x'"),
        ("a in (x y)", "'a in (x y)'"),
        ("a notin", "'a notin'"),
        ("a foo (x)", "'a foo (x)'"),
        ("!a=b", "'!a=b'"),
        ("a>x", "'a>x' has 'x' after > or <"),
        ("a<1.5", "'a<1.5' has '1.5' after > or <"),
        ("a>", "'a>' has '' after > or <"),
        ("a>99999999999999999999", "which must be an integer (int64)"),
        ("a>=1", "found '=', expected an integer"),
        ("a<(1)", "found '(', expected an integer"),
        ("a>1 2", "'a>1 2'"),
        ("a>-1", "invalid label value '-1'"),
        ("!a>1", "'!a>1'"),
        ("x,a>b,z", "'a>b'"),
    ],
)
def test_bad_selectors_name_the_term(selector: str, term: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_selector(selector)
    assert "label selector" in str(caught.value)
    assert caught.value.causes[0].field == "labelSelector"
    assert term in caught.value.causes[0].message


def test_a_set_is_no_invalid_key() -> None:
    """The red team's case: `a in (x,y)` was one term with an invalid key."""
    assert "invalid label key" not in str(parse_selector("a in (x,y)"))
    with pytest.raises(Invalid) as caught:
        parse_selector("a in (x,y")
    assert "expected ',' or ')'" in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(
    label=st.one_of(
        st.integers(-(2**63), 2**63 - 1).map(str),
        st.builds("{}{}{}".format, st.sampled_from(["", "+", "-"]), st.text("0"), st.integers(0)),
        st.text(max_size=8),
    ),
    operand=st.integers(0, 2**63 - 1),
    greater=st.booleans(),
)
def test_comparisons_are_go_parse_ints(label: str, operand: int, greater: bool) -> None:
    """Chosen exactly when the label is an ASCII-decimal int64 past the operand."""
    go_int = re.fullmatch(r"[+-]?[0-9]+", label) and -(2**63) <= int(label) < 2**63
    expected = bool(go_int) and (int(label) > operand if greater else int(label) < operand)
    selector = parse_selector(f"a{'>' if greater else '<'}{operand}")
    assert selector.matches({"a": label}) is expected


GO_BLANKS = " \t\r\n"
"""apimachinery's ``isWhitespace``: the only characters its lexer skips."""
OTHER_SPACES = [c for c in map(chr, range(0x3001)) if c.isspace() and c not in GO_BLANKS]


@pytest.mark.parametrize(
    ("selector", "term"),
    [
        ("a=b\u00a0", "invalid label value 'b\\xa0'"),
        ("a\u00a0in (x)", "invalid label key 'a\\xa0in'"),
        ("\u00a0", "invalid label key '\\xa0'"),  # no empty selector: a key that is not one
        ("\v", "invalid label key '\\x0b'"),
        ("\f", "invalid label key '\\x0c'"),
        ("a=b\v,c", "invalid label value 'b\\x0b'"),
        ("a in (x,\fy)", "invalid label value '\\x0cy'"),
        ("a\u3000=b", "invalid label key 'a\\u3000'"),
        ("a=b\x1c", "invalid label value 'b\\x1c'"),
        ("x,\u2028,y", "invalid label key '\\u2028'"),
        ("a>1\x85", "invalid label value '1\\x85'"),
    ],
)
def test_only_gos_four_blanks_separate(selector: str, term: str) -> None:
    """Python's ``str.isspace`` took ``\\v``, ``\\f``, U+00A0 and the like for blanks:
    ``a=b\\u00a0`` chose ``a=b`` and ``\\u00a0`` chose everything, where apimachinery's
    lexer keeps them in the key or value, which then does not validate."""
    with pytest.raises(Invalid) as caught:
        parse_selector(selector)
    assert term in caught.value.causes[0].message


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("\t a \r\n= b\n", {"a": "b"}, True),
        (" \t\r\n", {}, True),  # blank: everything
        ("a\tin\n(\rx ,\ty\n)", {"a": "y"}, True),
        ("!\ta\r,\nb", {"b": "1"}, True),
    ],
)
def test_gos_four_blanks_are_skipped(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(selector).matches(labels) is matches


@settings(max_examples=300, deadline=None)
@given(
    selector=st.sampled_from(["a=b", "a in (x,y)", "!a", "a>5", "a,b!=c", "k.io/n==v"]),
    space=st.sampled_from(OTHER_SPACES),
    at=st.integers(0, 12),
)
def test_any_other_space_is_refused(selector: str, space: str, at: int) -> None:
    """Anywhere in a selector, a space Go does not skip lands in a key or value (none may
    hold one), so the selector is refused, as kube-apiserver refuses it."""
    at = min(at, len(selector))
    with pytest.raises(Invalid):
        parse_selector(selector[:at] + space + selector[at:])


@pytest.mark.parametrize("text", ["a\n", "a.b_c-d\n", "a\r", "a\n\n"])
def test_a_final_line_break_is_no_label_key_or_value(text: str) -> None:
    """Python's ``$`` also matches before a final newline (Go's does not): ``a\\n`` was a
    valid key and value, so the API stored labels no selector can name."""
    assert label_key_problem(text) is not None
    assert label_value_problem(text) is not None
    assert label_key_problem(text.rstrip()) is None
    assert label_value_problem(text.rstrip()) is None


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("example.com/App_Name", True),
        ("a-1.b/x", True),
        ("Example.com/x", False),  # a prefix is a DNS subdomain: lowercase
        ("ex_ample.com/x", False),
        ("-a.com/x", False),
        ("a..b/x", False),
        ("/x", False),
        ("a/b/c", False),
        (f"{'a' * 254}/x", False),
    ],
)
def test_a_key_prefix_is_a_dns_subdomain(key: str, valid: bool) -> None:
    """apimachinery's IsQualifiedName: the prefix was taken with capitals and '_' (so the
    API stored `Example.com/x`, which kube-apiserver refuses); the CellSet's label-key
    fields had the strict rule, now the same one."""
    assert (label_key_problem(key) is None) is valid
    if valid:
        assert check_label_key(key) == key
    else:
        with pytest.raises(ValueError, match="DNS subdomain"):
            check_label_key(key)
