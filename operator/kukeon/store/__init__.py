"""The registry on etcd: versioned documents, CAS writes, status, finalizers, list + watch.

etcd is the only source of truth. Every resource is one compact JSON document under
``<prefix>/registry/<plural>/<parents...>/<name>`` (``keys``); ``Registry`` (``registry``)
creates, reads, lists, updates (spec and status separately), deletes (finalizers, children
first) and watches them, always by compare-and-swap on the etcd revision. ``connection``
knows how to reach etcd (endpoints, TLS, auth, deadlines, retries) and ``embedded`` runs
a private etcd process when no endpoints are configured, with mutual TLS on the
certificates ``pki`` makes.

This package may import ``kukeon.api`` and nothing else of the project.
"""

from kukeon.store.connection import EtcdClient, EtcdConfig, OutcomeUnknown
from kukeon.store.decoding import STATUS_RESERVE_BYTES
from kukeon.store.embedded import EmbeddedEtcd, EtcdProcess, EtcdStartError
from kukeon.store.errors import (
    AlreadyExists,
    ChildrenExist,
    Conflict,
    DocumentTooLarge,
    EtcdAway,
    Gone,
    HistoryRewound,
    Invalid,
    InvalidStoredDocument,
    NotFound,
    QuotaExceeded,
    SpaceExceeded,
    StoreError,
    Unavailable,
)
from kukeon.store.keys import DEFAULT_PREFIX, KINDS, KeyLayout, KindInfo, key_for
from kukeon.store.registry import (
    CHILDREN_FINALIZER,
    MAX_DOCUMENT_BYTES,
    Registry,
    ResourceList,
    WatchEvent,
)
from kukeon.store.selectors import LabelSelector, parse_selector

__all__ = [
    "CHILDREN_FINALIZER",
    "DEFAULT_PREFIX",
    "KINDS",
    "MAX_DOCUMENT_BYTES",
    "STATUS_RESERVE_BYTES",
    "AlreadyExists",
    "ChildrenExist",
    "Conflict",
    "DocumentTooLarge",
    "EmbeddedEtcd",
    "EtcdAway",
    "EtcdClient",
    "EtcdConfig",
    "EtcdProcess",
    "EtcdStartError",
    "Gone",
    "HistoryRewound",
    "Invalid",
    "InvalidStoredDocument",
    "KeyLayout",
    "KindInfo",
    "LabelSelector",
    "NotFound",
    "OutcomeUnknown",
    "QuotaExceeded",
    "Registry",
    "ResourceList",
    "SpaceExceeded",
    "StoreError",
    "Unavailable",
    "WatchEvent",
    "key_for",
    "parse_selector",
]
