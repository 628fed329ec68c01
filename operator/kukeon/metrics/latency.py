"""Latency histograms of the daemon's calls to etcd and containerd, and ways to feed them.

``kukeon.store`` and ``kukeon.runtime.containerd`` may not import this package (the
dependency arrow points from the daemon down to them), so they are fed from outside:

- ``GrpcLatencyInterceptor``: a grpc.aio client interceptor that times every unary call
  on a channel and reports ``(method, seconds)`` to an observer; method is the short
  ``Service.Method`` (``KV.Range``, ``Tasks.Create``), a bounded set. Both clients build
  their channels with ``grpc.aio.*_channel(...)``, which takes ``interceptors=``, so the
  only wiring needed is passing these through. Streams are not timed (a watch or an
  event subscription lasts for hours; its "latency" is meaningless).
- ``latency_observer(histogram)``: the ``Callable[[str, float], None]`` any hook can take.
- ``observe_latency(histogram, label)``: times a block (``with``/``async with``) or every
  call of an async function (as a decorator), for code that can import this package.

Failed calls are observed too: a slow timeout is exactly what the histogram must show.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import grpc
from prometheus_client import CollectorRegistry, Histogram

P = ParamSpec("P")
R = TypeVar("R")

LatencyObserver = Callable[[str, float], None]
"""``observer(label, seconds)``: one finished call."""

ETCD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CONTAINERD_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RequestLatencyMetrics:
    """The etcd and containerd request-duration histograms of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.etcd = Histogram(
            "kukeon_etcd_request_duration_seconds",
            "Wall time of one unary etcd request (including failed ones), by gRPC operation.",
            ["operation"],
            buckets=ETCD_BUCKETS,
            registry=registry,
        )
        self.containerd = Histogram(
            "kukeon_containerd_request_duration_seconds",
            "Wall time of one unary containerd call (including failed ones), by gRPC method.",
            ["method"],
            buckets=CONTAINERD_BUCKETS,
            registry=registry,
        )

    def etcd_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """For the etcd channel's ``interceptors=``."""
        interceptor = GrpcLatencyInterceptor(latency_observer(self.etcd))
        return [cast(grpc.aio.ClientInterceptor, interceptor)]

    def containerd_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """For the containerd channel's ``interceptors=``."""
        interceptor = GrpcLatencyInterceptor(latency_observer(self.containerd))
        return [cast(grpc.aio.ClientInterceptor, interceptor)]


_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, RequestLatencyMetrics] = (
    weakref.WeakKeyDictionary()
)


def request_latency_for(registry: CollectorRegistry) -> RequestLatencyMetrics:
    """The histograms of ``registry``, created on first use (a registry refuses duplicates)."""
    with _lock:
        found = _by_registry.get(registry)
        if found is None:
            found = RequestLatencyMetrics(registry)
            _by_registry[registry] = found
        return found


def latency_observer(histogram: Histogram) -> LatencyObserver:
    """An observer hook that records into ``histogram``'s single label."""

    def observe(label: str, seconds: float) -> None:
        histogram.labels(label).observe(seconds)

    return observe


class LatencyTimer:
    """Times a ``with``/``async with`` block, or each call of a decorated async function."""

    def __init__(self, histogram: Histogram, label: str) -> None:
        self._child = histogram.labels(label)
        self._started: float | None = None

    def __enter__(self) -> LatencyTimer:
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started is not None:
            self._child.observe(time.perf_counter() - self._started)
            self._started = None

    async def __aenter__(self) -> LatencyTimer:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        child = self._child

        @functools.wraps(function)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()  # per call: concurrent calls must not share it
            try:
                return await function(*args, **kwargs)
            finally:
                child.observe(time.perf_counter() - started)

        return timed


def observe_latency(histogram: Histogram, label: str) -> LatencyTimer:
    """``async with observe_latency(h, "KV.Range"): ...`` or ``@observe_latency(h, "x")``."""
    return LatencyTimer(histogram, label)


def short_method_name(method: bytes | str) -> str:
    """``/etcdserverpb.KV/Range`` → ``KV.Range``; ``/containerd.services.tasks.v1.Tasks/Create``
    → ``Tasks.Create``."""
    path = method.decode() if isinstance(method, bytes) else method
    service, _, name = path.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}.{name}" if service else name


if TYPE_CHECKING:  # generic only in the type stubs
    _UnaryUnaryInterceptor = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
else:
    _UnaryUnaryInterceptor = grpc.aio.UnaryUnaryClientInterceptor


class GrpcLatencyInterceptor(_UnaryUnaryInterceptor):
    """Reports the wall time of every unary call on a grpc.aio channel to ``observer``."""

    def __init__(self, observer: LatencyObserver) -> None:
        self._observer = observer

    async def intercept_unary_unary(
        self,
        continuation: Any,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = short_method_name(client_call_details.method)
        started = time.perf_counter()
        call = await continuation(client_call_details, request)

        def finished(_: Any) -> None:
            self._observer(method, time.perf_counter() - started)

        call.add_done_callback(finished)
        return call
