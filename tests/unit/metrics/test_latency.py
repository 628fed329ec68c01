"""Latency histograms: the timer, the observer hook and the grpc.aio interceptor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from prometheus_client import CollectorRegistry

from kukeon.metrics import (
    GrpcLatencyInterceptor,
    latency_observer,
    observe_latency,
    request_latency_for,
    short_method_name,
)


def _count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(f"{name}_count", labels)
    return 0.0 if value is None else value


def _sum(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(f"{name}_sum", labels)
    return 0.0 if value is None else value


ETCD = "kukeon_etcd_request_duration_seconds"
CONTAINERD = "kukeon_containerd_request_duration_seconds"


def test_one_set_of_histograms_per_registry() -> None:
    registry = CollectorRegistry()
    assert request_latency_for(registry) is request_latency_for(registry)
    assert request_latency_for(CollectorRegistry()) is not request_latency_for(registry)


async def test_async_with_and_with_observe_even_on_failure() -> None:
    registry = CollectorRegistry()
    histogram = request_latency_for(registry).etcd
    async with observe_latency(histogram, "KV.Range"):
        await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError), observe_latency(histogram, "KV.Txn"):
        raise RuntimeError("boom")
    assert _count(registry, ETCD, operation="KV.Range") == 1
    assert _sum(registry, ETCD, operation="KV.Range") >= 0.009
    assert _count(registry, ETCD, operation="KV.Txn") == 1


async def test_decorator_times_each_concurrent_call() -> None:
    registry = CollectorRegistry()
    histogram = request_latency_for(registry).containerd

    @observe_latency(histogram, "Tasks.Create")
    async def create(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    assert list(await asyncio.gather(create(0.02), create(0.01))) == [0.02, 0.01]
    assert _count(registry, CONTAINERD, method="Tasks.Create") == 2
    assert 0.029 <= _sum(registry, CONTAINERD, method="Tasks.Create") < 0.5


def test_observer_hook() -> None:
    registry = CollectorRegistry()
    observe = latency_observer(request_latency_for(registry).etcd)
    observe("KV.Put", 0.25)
    assert _sum(registry, ETCD, operation="KV.Put") == 0.25


@pytest.mark.parametrize(
    ("method", "short"),
    [
        (b"/etcdserverpb.KV/Range", "KV.Range"),
        ("/etcdserverpb.Lease/LeaseGrant", "Lease.LeaseGrant"),
        (b"/containerd.services.tasks.v1.Tasks/Create", "Tasks.Create"),
        ("Bare", "Bare"),
    ],
)
def test_short_method_name(method: bytes | str, short: str) -> None:
    assert short_method_name(method) == short


class _FakeCall:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[_FakeCall], object]] = []

    def add_done_callback(self, callback: Callable[[_FakeCall], object]) -> None:
        self.callbacks.append(callback)


async def test_interceptor_reports_when_the_call_finishes() -> None:
    seen: list[tuple[str, float]] = []
    interceptor = GrpcLatencyInterceptor(lambda method, seconds: seen.append((method, seconds)))
    call = _FakeCall()

    async def continuation(details: grpc.aio.ClientCallDetails, request: object) -> _FakeCall:
        return call

    # grpc.aio hands interceptors the method as bytes, which the stub's ``str`` does not say.
    details = grpc.aio.ClientCallDetails(b"/etcdserverpb.KV/Txn", 1.0, None, None, None)  # type: ignore[arg-type]
    returned = await interceptor.intercept_unary_unary(continuation, details, object())
    assert returned is call
    assert seen == []  # nothing until the call is done
    await asyncio.sleep(0.01)
    (callback,) = call.callbacks
    callback(call)
    assert seen[0][0] == "KV.Txn"
    assert seen[0][1] >= 0.009
