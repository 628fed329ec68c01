"""Each realm's write budget: a token bucket of bytes, refilled at its rate up to its burst;
a write that does not fit is a 429 whose Retry-After is when it would, taking nothing; the
settings refuse a burst smaller than the largest document."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from pydantic import ValidationError

from kukeon.api import CellSet, Realm, parse_resource
from kukeon.apiserver.handlerbase import stored_nothing
from kukeon.apiserver.settings import MIN_WRITE_BURST_BYTES, ApiSettings
from kukeon.apiserver.status import ApiError, from_store_error
from kukeon.apiserver.writebudget import (
    MAX_RETRY_AFTER_SECONDS,
    RATE_REFRESH_SECONDS,
    Rate,
    RealmRates,
    WriteBudget,
    set_cells_bytes,
)
from kukeon.daemon.app import Daemon
from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.endpoints import api_settings
from kukeon.store import EtcdAway, NotFound, OutcomeUnknown, Unavailable
from tests.unit.api.test_spread import set_doc


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _budget(rate: int = 100, burst: int = 1000) -> tuple[WriteBudget, Clock]:
    clock = Clock()
    return WriteBudget(default=Rate(rate, burst), clock=clock), clock


def test_a_realm_writes_its_burst_then_its_rate() -> None:
    budget, clock = _budget()
    for _ in range(10):
        budget.charge("team", 100)
    with pytest.raises(ApiError) as refused:
        budget.charge("team", 100)
    error = refused.value
    assert (error.code, error.reason) == (429, "TooManyRequests")
    assert error.headers == {"Retry-After": "1"}  # 100 bytes at 100 a second
    assert "realmWriteBytesPerSecond 100" in error.message
    assert "realmWriteBurstBytes 1000" in error.message
    clock.now += 0.5
    with pytest.raises(ApiError):  # half of it is there: still refused, nothing taken
        budget.charge("team", 100)
    assert budget.available("team") == pytest.approx(50)
    clock.now += 0.5
    budget.charge("team", 100)
    assert budget.available("team") == pytest.approx(0)


def test_retry_after_is_the_wait_for_the_write_rounded_up() -> None:
    budget, clock = _budget(rate=100, burst=1000)
    budget.charge("team", 1000)
    with pytest.raises(ApiError) as refused:
        budget.charge("team", 750)
    assert refused.value.headers == {"Retry-After": "8"}
    clock.now += 7.5
    budget.charge("team", 750)


def test_realms_have_buckets_of_their_own() -> None:
    budget, _ = _budget()
    budget.charge("team", 1000)
    with pytest.raises(ApiError):
        budget.charge("team", 1)
    budget.charge("other", 1000)  # another realm is untouched by the first one's writes


def test_refill_stops_at_the_burst_and_a_clock_going_back_refills_nothing() -> None:
    budget, clock = _budget()
    budget.charge("team", 600)
    clock.now += 3600
    assert budget.available("team") == 1000
    budget.charge("team", 1000)
    clock.now -= 100
    assert budget.available("team") == 0


def test_a_write_bigger_than_the_burst_waits_for_a_full_bucket() -> None:
    budget, clock = _budget()
    budget.charge("team", 1)
    with pytest.raises(ApiError) as refused:
        budget.charge("team", 10**9)
    assert refused.value.headers == {"Retry-After": "1"}
    clock.now += 1
    budget.charge("team", 10**9)
    assert budget.available("team") == 0


def test_retry_after_is_capped_for_a_very_low_rate() -> None:
    budget, _ = _budget()
    slow = Rate(1, MIN_WRITE_BURST_BYTES, "the realm's spec.quota.writeBytesPerSecond")
    budget.charge("team", MIN_WRITE_BURST_BYTES, slow)
    with pytest.raises(ApiError) as refused:
        budget.charge("team", MIN_WRITE_BURST_BYTES, slow)
    assert refused.value.headers == {"Retry-After": str(MAX_RETRY_AFTER_SECONDS)}
    assert "spec.quota.writeBytesPerSecond 1" in refused.value.message


def test_a_zero_rate_is_no_bound() -> None:
    budget, _ = _budget()
    for _ in range(100):
        budget.charge("team", 10**6, Rate(0, 1000))
    assert len(budget) == 0


def test_a_refund_gives_back_up_to_the_burst() -> None:
    budget, _ = _budget()
    budget.charge("team", 700)
    budget.refund("team", 700)
    assert budget.available("team") == 1000
    budget.refund("team", 700)
    assert budget.available("team") == 1000
    budget.refund("never-charged", 5)  # no bucket: nothing to give back
    assert len(budget) == 1


def test_full_buckets_are_forgotten() -> None:
    budget, clock = _budget(rate=1000, burst=1000)
    for index in range(2000):
        budget.charge(f"realm-{index}", 10)
        clock.now += 0.001
    # Every bucket refills within a second: the table does not keep every realm ever named.
    assert len(budget) < 1100


def _realm(rate: int | None) -> Realm:
    quota = {} if rate is None else {"quota": {"writeBytesPerSecond": rate}}
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Realm",
        "metadata": {"name": "team"},
        "spec": quota,
    }
    realm = parse_resource(document)
    assert isinstance(realm, Realm)
    return realm


async def test_a_realm_rate_is_its_spec_else_the_default_read_every_few_seconds() -> None:
    clock = Clock()
    stored: dict[str, Realm | None] = {"team": _realm(5000), "plain": _realm(None)}
    reads: list[str] = []

    async def read(name: str) -> Realm | None:
        reads.append(name)
        return stored.get(name)

    default = Rate(100, MIN_WRITE_BURST_BYTES)
    rates = RealmRates(default=default, read_realm=read, clock=clock)
    own = await rates.of("team")
    assert (own.bytes_per_second, own.burst_bytes) == (5000, MIN_WRITE_BURST_BYTES)
    assert "spec.quota.writeBytesPerSecond" in own.setting
    assert await rates.of("plain") == default
    assert await rates.of("missing") == default
    assert await rates.of("team") == own
    assert reads == ["team", "plain", "missing"]
    stored["team"] = _realm(0)
    clock.now += RATE_REFRESH_SECONDS
    assert (await rates.of("team")).bytes_per_second == 0  # an admin's change is seen


def test_the_settings_refuse_a_burst_smaller_than_a_document() -> None:
    assert ApiSettings().realm_write_rate == Rate(16 * 1024, 8 * 1024 * 1024)
    with pytest.raises(ValidationError, match="largest document"):
        ApiSettings(realm_write_burst_bytes=MIN_WRITE_BURST_BYTES - 1)
    with pytest.raises(ValidationError, match="realm_write_bytes_per_second"):
        ApiSettings(realm_write_bytes_per_second=-1)
    config = DaemonConfig.model_validate(
        {"realmWriteBytesPerSecond": 0, "realmWriteBurstBytes": MIN_WRITE_BURST_BYTES}
    )
    assert (config.realm_write_bytes_per_second, config.realm_write_burst_bytes) == (
        0,
        MIN_WRITE_BURST_BYTES,
    )
    with pytest.raises(ValidationError, match="realmWriteBurstBytes"):
        DaemonConfig.model_validate({"realmWriteBurstBytes": 4096})


def test_the_daemon_hands_its_settings_to_the_api_server() -> None:
    config = DaemonConfig.model_validate(
        {"realmWriteBytesPerSecond": 1234, "realmWriteBurstBytes": 2 * MIN_WRITE_BURST_BYTES}
    )
    settings = api_settings(cast("Daemon", SimpleNamespace(config=config)))
    assert settings.realm_write_rate == Rate(1234, 2 * MIN_WRITE_BURST_BYTES)


def _cellset(replicas: int, image: str = "busybox:latest") -> CellSet:
    document = set_doc(replicas)
    document["spec"]["template"]["spec"]["containers"][0]["image"] = image
    found = parse_resource(document)
    assert isinstance(found, CellSet)
    return found


def test_a_set_is_charged_for_the_cells_kukeond_writes_for_it() -> None:
    """A set's write costs, besides its document, each cell it makes (~3 writes of a cell's
    document over its life and a tombstone): a new set, a roll, the replicas added."""
    one = set_cells_bytes(_cellset(1), None)
    assert 3 * 1000 < one < 3 * 2000  # three writes of a one-container cell, and a tombstone
    assert set_cells_bytes(_cellset(40), None) == 40 * one
    assert set_cells_bytes(_cellset(40), _cellset(10)) == 30 * one  # scaled up
    assert set_cells_bytes(_cellset(10), _cellset(40)) == 0  # down: paid when they were made
    assert set_cells_bytes(_cellset(10), _cellset(10)) == 0  # a label, an annotation
    rolled = set_cells_bytes(_cellset(10, "busybox:1.36"), _cellset(10))
    assert rolled == pytest.approx(10 * one, rel=0.05)  # a roll replaces every cell
    realm = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "r"}}
    )
    assert set_cells_bytes(realm, None) == 0


def test_scaling_a_set_up_and_down_in_a_loop_is_refused_by_the_budget() -> None:
    """Each scale-up of 50 cells costs ~50 cells' lives: a 1 MiB burst holds a few."""
    budget, _ = _budget(rate=16 * 1024, burst=MIN_WRITE_BURST_BYTES)
    up, down = (
        set_cells_bytes(_cellset(50), _cellset(0)),
        set_cells_bytes(_cellset(0), _cellset(50)),
    )
    passed = 0
    while budget.available("r") >= up + down:
        budget.charge("r", up)
        budget.charge("r", down)
        passed += 1
    assert 0 < passed < 10
    with pytest.raises(ApiError) as refused:
        budget.charge("r", up)
    assert refused.value.code == 429


def test_a_write_refused_while_etcd_is_away_is_given_back() -> None:
    # EtcdAway is refused before anything is sent; a 503 after the retry budget, or a write
    # whose outcome is unknown, may have landed and stays charged.
    assert stored_nothing(EtcdAway("etcd is away", retry_after_seconds=1))
    assert stored_nothing(from_store_error(EtcdAway("etcd is away", retry_after_seconds=1)))
    assert stored_nothing(ApiError(422, "invalid"))
    assert stored_nothing(NotFound("gone"))
    assert not stored_nothing(Unavailable("etcd is unavailable after 20s of retries"))
    assert not stored_nothing(OutcomeUnknown("the write may have been applied"))
    assert not stored_nothing(ApiError(500, "internal"))
