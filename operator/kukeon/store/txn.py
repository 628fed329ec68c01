"""The pieces of the registry's etcd transactions: compares, operations, what a read found.

Every write of the registry is one etcd transaction whose compares decide it (the key's
``create_revision`` or ``mod_revision``, a child range still empty); these build them.
A ``Decide`` callback is one read-decide-swap round's decision (``deletion``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

from aetcd import rpc

from kukeon.api import AnyResource

from .decoding import load_document


def compare_created(key: bytes, revision: int, end: bytes | None = None) -> Any:
    return rpc.Compare(
        key=key,
        range_end=end or b"",
        target=rpc.Compare.CREATE,
        result=rpc.Compare.EQUAL,
        create_revision=revision,
    )


def compare_modified(key: bytes, revision: int) -> Any:
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def put_op(key: bytes, value: bytes) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))


def delete_op(key: bytes) -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def read_op(key: bytes) -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


class Stored(NamedTuple):
    """One document as read, with the revisions the next compare needs."""

    value: bytes
    mod_revision: int

    @property
    def metadata(self) -> dict[str, Any]:
        """The stored metadata, empty when the document does not even load."""
        loaded = load_document(self.value)
        return {} if isinstance(loaded, str) else dict(loaded["metadata"])


Compares = list[Any]


class Lost(enum.Enum):
    """A compare-and-swap round lost its compare (someone wrote first)."""

    LOST = enum.auto()


Decide = Callable[[AnyResource, Stored], tuple[Any, list[Any]]]
"""Given the current object, the next document (None: remove the key; "keep": no write)
and any extra compares the write needs."""
