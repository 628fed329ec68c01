"""The API server's bound on requests in flight: short requests all together, long-running
ones per token holder and all together (the local admin's too, with a tenth kept for it);
each released when its request ends, however it ends."""

from __future__ import annotations

import contextlib

import pytest

from kukeon.apiserver.inflight import InflightLimits
from kukeon.apiserver.status import ApiError


def test_short_requests_past_the_bound_are_429_with_retry_after() -> None:
    limits = InflightLimits(max_requests=2, max_long_running_per_user=5)
    with (
        limits.admitted(user="a", long_running=False),
        limits.admitted(user="b", long_running=False),
    ):
        with pytest.raises(ApiError) as refused, limits.admitted(user="c", long_running=False):
            pass
        assert refused.value.code == 429
        assert refused.value.reason == "TooManyRequests"
        assert refused.value.headers == {"Retry-After": "1"}
        # The setting a user sets (docs/install.md), not the internal name.
        assert "(apiMaxRequestsInflight 2)" in refused.value.message
        # Long-running requests do not count against the short ones' bound.
        with limits.admitted(user="c", long_running=True):
            pass
    with limits.admitted(user="c", long_running=False):
        assert limits.requests == 1


def test_long_running_requests_are_bounded_per_user() -> None:
    limits = InflightLimits(max_requests=1, max_long_running_per_user=2)
    with (
        limits.admitted(user="eve", long_running=True),
        limits.admitted(user="eve", long_running=True),
    ):
        with pytest.raises(ApiError) as refused, limits.admitted(user="eve", long_running=True):
            pass
        assert "'eve' already has 2" in refused.value.message
        assert "(apiMaxLongRunningPerUser 2)" in refused.value.message
        with limits.admitted(user="bob", long_running=True):
            pass  # another user has their own
        for _ in range(5):  # the local admin (no user) is not bound
            with limits.admitted(user=None, long_running=True):
                pass
    assert not limits.long_running


def test_a_request_that_fails_is_released() -> None:
    limits = InflightLimits(max_requests=1, max_long_running_per_user=1)
    for long_running in (False, True):
        with pytest.raises(RuntimeError), limits.admitted(user="a", long_running=long_running):
            raise RuntimeError("the handler failed")
    assert limits.requests == 0
    assert not limits.long_running


def test_one_user_takes_at_most_a_quarter_of_the_short_bound() -> None:
    limits = InflightLimits(max_requests=8, max_long_running_per_user=5)
    with (
        limits.admitted(user="eve", long_running=False),
        limits.admitted(user="eve", long_running=False),
    ):
        with (
            pytest.raises(ApiError) as refused,
            limits.admitted(user="eve", long_running=False),
        ):
            pass
        assert refused.value.code == 429
        assert "'eve' already has 2 requests" in refused.value.message
        assert "a quarter of apiMaxRequestsInflight 8" in refused.value.message
        # Others still get in, and what no user holds (the public page) counts in all only.
        with (
            limits.admitted(user="bob", long_running=False),
            limits.admitted(user=None, long_running=False),
        ):
            assert limits.requests == 4
    assert limits.requests == 0
    assert not limits.short


def test_long_running_requests_are_bounded_all_together() -> None:
    # Before, only per token holder: many holders, or one local client, opened them until
    # kukeond ran out of memory or descriptors.
    limits = InflightLimits(max_requests=1, max_long_running_per_user=3, max_long_running=10)
    assert limits.max_long_running_shared == 9  # a tenth kept for the local admin and nodes
    with contextlib.ExitStack() as held:
        for user in ["a", "a", "a", "b", "b", "b", "c", "c", "c"]:
            held.enter_context(limits.admitted(user=user, long_running=True))
        with pytest.raises(ApiError) as refused, limits.admitted(user="d", long_running=True):
            pass
        assert refused.value.code == 429
        assert refused.value.headers == {"Retry-After": "1"}
        assert "(apiMaxLongRunning 10, of which token holders take 9)" in refused.value.message
        # The local admin still gets the place kept for it, and no more.
        held.enter_context(limits.admitted(user=None, long_running=True))
        with pytest.raises(ApiError) as refused, limits.admitted(user=None, long_running=True):
            pass
        assert "the server has 10 watches" in refused.value.message
        assert "(apiMaxLongRunning 10)" in refused.value.message
        # Short requests have their own bound.
        with limits.admitted(user="d", long_running=False):
            pass
    assert limits.long_running_open == 0
    assert not limits.long_running


def test_the_local_admins_long_running_requests_count_in_all() -> None:
    limits = InflightLimits(max_requests=1, max_long_running_per_user=1, max_long_running=3)
    with contextlib.ExitStack() as held:
        for _ in range(2):  # the token holders' share: 3 less a tenth kept (at least 1)
            held.enter_context(limits.admitted(user=None, long_running=True))
        with pytest.raises(ApiError), limits.admitted(user="eve", long_running=True):
            pass
        held.enter_context(limits.admitted(user=None, long_running=True))
        assert limits.long_running_open == 3


def test_the_editors_of_one_realm_take_at_most_a_quarter_of_the_short_bound() -> None:
    limits = InflightLimits(max_requests=8)
    with (
        limits.admitted(user="eve", long_running=False, realms="team"),
        limits.admitted(user="mallory", long_running=False, realms="team"),
    ):
        # A third token of the realm: its user has room, its realm none.
        with (
            pytest.raises(ApiError) as refused,
            limits.admitted(user="trent", long_running=False, realms="team"),
        ):
            pass
        assert refused.value.code == 429
        assert refused.value.headers["Retry-After"] == "1"
        assert "the editors of realm team already have 2 requests" in refused.value.message
        # Another realm's editors, a token naming more realms, and viewers get in.
        with (
            limits.admitted(user="olga", long_running=False, realms="other"),
            limits.admitted(user="pat", long_running=False, realms="other,team"),
            limits.admitted(user="victor", long_running=False),
        ):
            assert limits.requests == 5
        # Long-running requests are not counted here.
        with limits.admitted(user="trent", long_running=True, realms="team"):
            pass
    assert limits.requests == 0
    assert not limits.short_by_realm
