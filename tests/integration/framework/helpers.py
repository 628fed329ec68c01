"""Builders shared by the framework's integration tests."""

from __future__ import annotations

import uuid
from typing import Any

from prometheus_client import CollectorRegistry

from kukeon.api import ObjectMeta, Realm, Resource
from kukeon.framework import Settings

AnyResource = Resource[Any, Any]


def fast_settings(**overrides: Any) -> Settings:
    """Short delays so retries, shutdowns and takeovers take a fraction of a second."""
    values: dict[str, Any] = {
        "node_name": f"node-{uuid.uuid4().hex[:6]}",
        "backoff_initial": 0.05,
        "backoff_max": 1.0,
        "backoff_jitter": 0.1,
        "resync_interval": None,
        "queue_idle_timeout": 0.5,
        "shutdown_grace": 2.0,
        "watch_retry_initial": 0.1,
        "watch_retry_max": 1.0,
        "lease_ttl": 2,
        "leader_poll_interval": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


def new_realm(name: str, **labels: str) -> Realm:
    return Realm(metadata=ObjectMeta(name=name, labels=labels))


def with_labels(obj: AnyResource, **labels: str) -> AnyResource:
    metadata = obj.metadata.model_copy(update={"labels": {**obj.metadata.labels, **labels}})
    return obj.model_copy(update={"metadata": metadata})


def sample(metrics: CollectorRegistry, name: str, **labels: str) -> float:
    value = metrics.get_sample_value(name, labels)
    return 0.0 if value is None else value
