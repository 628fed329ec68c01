"""The node routes' query parameters: what no number or flag can mean is a 400, never a 500.

``str.isdigit`` is true of '²' and '٣'-like characters that ``int`` refuses or reads; each
parser here accepted '²' and then raised ValueError (a 500) when it converted it.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import click
import pytest
from multidict import MultiDict

from kukeon.apiserver.status import ApiError
from kukeon.cli.logs import _query
from kukeon.cli.portforward import parse_ports
from kukeon.daemon.noderoutes import (
    MAX_LIMIT_BYTES,
    MAX_SINCE_SECONDS,
    MAX_TAIL_LINES,
    LogQuery,
    _parse_signal,
)
from kukeon.daemon.transfer import _port

SUPERSCRIPT_TWO = "\u00b2"


@pytest.mark.parametrize("name", ["tailLines", "sinceSeconds", "limitBytes"])
@pytest.mark.parametrize("value", [SUPERSCRIPT_TWO, "\u0663", "-1", "1e3", " 1"])
def test_a_log_number_no_ascii_decimal_is_400(name: str, value: str) -> None:
    with pytest.raises(ApiError) as refused:
        LogQuery.parse(MultiDict({name: value}))
    assert refused.value.code == 400
    assert str(refused.value).startswith(f"{name}: ")


def test_log_numbers_that_are_decimal_are_read() -> None:
    query = LogQuery.parse(MultiDict({"tailLines": "12", "sinceSeconds": "5"}))
    assert query.tail == 12
    assert query.render.since is not None


@pytest.mark.parametrize("digits", ["9" * 23, "9" * 5000, "0" * 20 + "9" * 13])
def test_a_log_number_over_the_limit_means_all_we_keep(digits: str) -> None:
    """`kukectl logs --tail 99999999999999999999999` was refused as "not a whole number
    >= 0" (exit 1), and `--since 99999999h` as "not a whole number of seconds > 0"."""
    query = LogQuery.parse(MultiDict({"tailLines": digits}))
    assert query.tail == MAX_TAIL_LINES
    since = LogQuery.parse(MultiDict({"sinceSeconds": digits})).render.since
    assert since is not None
    assert datetime.now(UTC) - since >= timedelta(seconds=MAX_SINCE_SECONDS)


@pytest.mark.parametrize("value", ["0", "000", "", "x"])
def test_limit_bytes_not_a_number_over_zero_is_400(value: str) -> None:
    """kube-apiserver refuses limitBytes < 1; before, the route ignored it (every byte sent)."""
    with pytest.raises(ApiError) as refused:
        LogQuery.parse(MultiDict({"limitBytes": value}))
    assert refused.value.code == 400
    assert str(refused.value).startswith("limitBytes: ")


def test_limit_bytes_is_read() -> None:
    assert LogQuery.parse(MultiDict({"limitBytes": "12"})).limit == 12
    assert LogQuery.parse(MultiDict({"limitBytes": "9" * 5000})).limit == MAX_LIMIT_BYTES
    assert LogQuery.parse(MultiDict()).limit is None


def test_kukectl_limit_bytes_is_sent_unless_zero() -> None:
    def query(limit_bytes: int) -> dict[str, str]:
        return _query(
            follow=False,
            tail=None,
            timestamps=False,
            since=None,
            since_time=None,
            previous=False,
            limit_bytes=limit_bytes,
        )

    assert query(4096) == {"limitBytes": "4096"}
    assert query(0) == {}  # kubectl's default: no limit


def test_leading_zeros_do_not_count() -> None:
    assert LogQuery.parse(MultiDict({"tailLines": "0" * 20 + "7"})).tail == 7
    with pytest.raises(ApiError):
        LogQuery.parse(MultiDict({"sinceSeconds": "0" * 20}))


@pytest.mark.parametrize("value", [SUPERSCRIPT_TWO, "\u0663", "0", "65536", "", None])
def test_a_port_forward_port_no_port_number_is_400(value: str | None) -> None:
    with pytest.raises(ApiError) as refused:
        _port(value)
    assert refused.value.code == 400


def test_a_port_forward_port_is_read() -> None:
    assert (_port("1"), _port("65535")) == (1, 65535)


def test_a_signal_number_no_ascii_decimal_is_400() -> None:
    with pytest.raises(ApiError) as refused:
        _parse_signal(SUPERSCRIPT_TWO)
    assert refused.value.code == 400
    assert _parse_signal("9") == signal.SIGKILL


@pytest.mark.parametrize(
    ("text", "number"), [("SIGRTMIN+3", 37), ("rtmax-1", 63), ("37", 37), ("hup", 1)]
)
def test_a_signal_is_read_by_dockers_names(text: str, number: int) -> None:
    assert _parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "65", "999", "SIGRTMIN+40", "NOPE", ""])
def test_what_names_no_signal_is_400(text: str) -> None:
    with pytest.raises(ApiError) as refused:
        _parse_signal(text)
    assert refused.value.code == 400


@pytest.mark.parametrize("spec", [f"{SUPERSCRIPT_TWO}:80", f"8080:{SUPERSCRIPT_TWO}"])
def test_kukectl_port_forward_with_no_ascii_digits_is_a_usage_error(spec: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_ports((spec,))


def test_a_log_stream_is_one_of_kube_apiservers_words() -> None:
    assert LogQuery.parse(MultiDict()).render.stream is None
    assert LogQuery.parse(MultiDict({"stream": "All"})).render.stream is None
    assert LogQuery.parse(MultiDict({"stream": "Stdout"})).render.stream == "stdout"
    assert LogQuery.parse(MultiDict({"stream": "Stderr"})).render.stream == "stderr"
    for bad in ("stdout", "", "Both", "x" * 1000):
        with pytest.raises(ApiError) as refused:
            LogQuery.parse(MultiDict({"stream": bad}))
        assert refused.value.code == 400
        assert str(refused.value).startswith("stream: "), bad
        assert len(str(refused.value)) < 120


def test_a_tail_of_one_stream_is_400_as_kube_apiservers() -> None:
    assert LogQuery.parse(MultiDict({"stream": "All", "tailLines": "3"})).tail == 3
    with pytest.raises(ApiError) as refused:
        LogQuery.parse(MultiDict({"stream": "Stderr", "tailLines": "3"}))
    assert refused.value.code == 400
    assert "tailLines and stream" in str(refused.value)
