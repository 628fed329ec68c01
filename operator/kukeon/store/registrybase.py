"""What every part of the registry stands on: its connection, state and raw etcd calls.

``RegistryBase`` holds the etcd client and configuration, the key layout, the document
codec, the cache of document bytes by revision and the record of invalid documents; it
opens and closes the connection and makes the raw range and transaction calls. The
registry's operations are built on it, one concern per module (``reads``, ``writes``,
``deletion``, ``watch``, ``resealing``), and put together as ``registry.Registry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aetcd import rpc

from kukeon.api import Kind

from .codec import DocumentCodec
from .connection import EtcdClient, EtcdConfig, Retrier
from .decoding import InvalidDocuments
from .documentcache import DocumentCache
from .encryption import Keyring
from .keys import KeyLayout, range_end
from .txn import Stored

if TYPE_CHECKING:
    from .realmquota import RealmQuotas

MAX_CAS_ROUNDS = 1000
"""Compare-and-swap rounds an operation may lose before it gives up (``Unavailable``)."""
_DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


class RegistryBase:
    """The registry's connection and state; see ``registry.Registry`` for its operations."""

    def __init__(
        self, *, client: EtcdClient, config: EtcdConfig, keyring: Keyring | None = None
    ) -> None:
        self._client = client
        self._config = config
        # Seals Secret values and inline registry passwords on write and opens them on
        # read (only kukeond holds one); without it they cannot be written and read as
        # absent (Secret data) or "***" (passwords).
        self._keyring = keyring
        self._layout = KeyLayout(config.key_prefix)
        self._invalid = InvalidDocuments()
        self._codec = DocumentCodec(layout=self._layout, keyring=keyring, invalid=self._invalid)
        self._retrier = Retrier(client=client, retry_timeout=config.retry_timeout)
        self._closed = False
        # Last revision at which each parent was seen alive and not being deleted: a create
        # compares against it directly (one round trip); a stale entry only costs a retry.
        self._parent_revisions: dict[bytes, int] = {}
        self._documents = DocumentCache(_DOCUMENT_CACHE_BYTES)
        self._quotas: RealmQuotas | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def connect(cls, config: EtcdConfig, *, keyring: Keyring | None = None) -> Self:
        """Open the channel and prove etcd answers (``Unavailable`` after the retry budget)."""
        client = EtcdClient(config)
        registry = cls(client=client, config=config, keyring=keyring)
        try:
            await registry.current_revision()
        except BaseException:
            await client.close()
            raise
        return registry

    async def close(self) -> None:
        """Close the channel; running watches end with ``Unavailable``."""
        self._closed = True
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def enforce_quotas(self, quotas: RealmQuotas) -> None:
        """Check every create, and every ``update(charged=True)`` that grows a document,
        against the realms' quotas (kukeond's registry; tools and tests write freely)."""
        self._quotas = quotas

    @property
    def quotas(self) -> RealmQuotas | None:
        return self._quotas

    @property
    def client(self) -> EtcdClient:
        """The aetcd client (leases, leader election); its channel is shared with the registry."""
        return self._client

    @property
    def config(self) -> EtcdConfig:
        return self._config

    @property
    def layout(self) -> KeyLayout:
        return self._layout

    @property
    def key_prefix(self) -> str:
        """Root of this registry's keys; ``<prefix>/leases/...`` is the framework's."""
        return self._layout.prefix

    def forget_history(self) -> None:
        """etcd's history went back (``HistoryRewound``): forget what was kept by revision,
        the versions and parents seen alive after the restored revision included (a
        revision of the restored store may name another version of the same key)."""
        self._documents.clear()
        self._codec.shared.clear()
        self._invalid.clear()
        self._parent_revisions.clear()

    def key_for(self, kind: Kind, key: Sequence[str]) -> str:
        return self._layout.key(kind, key)

    def invalid_documents(self) -> dict[Kind, int]:
        """Keys whose document did not decode when last read, by kind (safe from any thread).

        Reads by this process keep it current: lists and watches (kukeond watches every
        kind), reads by name, deletes.
        """
        return self._invalid.counts()

    def invalid_under(self, kind: Kind, scope: Sequence[str] = ()) -> list[tuple[str, ...]]:
        """The keys of ``kind`` under ``scope`` whose document is invalid now (lists skip
        them): what a list's answer can warn about."""
        start = self._layout.scope_prefix(kind, scope).encode()
        return [
            self._layout.split(kind, raw_key)
            for raw_key in self._invalid.keys_within(start, range_end(start))
        ]

    def invalid_documents_under(
        self, kind: Kind, scope: Sequence[str] = ()
    ) -> list[tuple[tuple[str, ...], str, int, str]]:
        """``invalid_under`` with each one's etcd key, revision and why it is invalid."""
        start = self._layout.scope_prefix(kind, scope).encode()
        return [
            (self._layout.split(kind, raw_key), raw_key.decode(errors="replace"), revision, why)
            for raw_key, revision, why in self._invalid.reasons_within(start, range_end(start))
        ]

    # --- raw etcd calls ------------------------------------------------------------------

    async def _range(
        self,
        key: bytes,
        end: bytes | None = None,
        *,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
    ) -> Any:
        request = rpc.RangeRequest(
            key=key,
            range_end=end or b"",
            revision=revision,
            limit=limit,
            keys_only=keys_only,
            count_only=count_only,
            min_mod_revision=min_mod_revision,
        )
        return await self._client.kvstub.Range(
            request, timeout=self._config.request_timeout, metadata=self._client.metadata
        )

    async def _txn(self, compare: list[Any], success: list[Any], failure: list[Any]) -> Any:
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self._client.kvstub.Txn(
            request, timeout=self._config.request_timeout, metadata=self._client.metadata
        )

    async def _read_one(self, key: bytes, what: str) -> Stored | None:
        async def attempt() -> Stored | None:
            response = await self._range(key)
            if not response.kvs:
                return None
            kv = response.kvs[0]
            return self._documents.remember(key, Stored(kv.value, kv.mod_revision))

        return await self._retrier.run(attempt, what=what, repeatable=True)

    async def current_revision(self) -> int:
        """The store's latest revision (a watch from it sees only later changes)."""

        async def attempt() -> int:
            root = self._layout.registry_root.encode()
            response = await self._range(root, range_end(root), count_only=True)
            revision: int = response.header.revision
            return revision

        return await self._retrier.run(attempt, what="read the current revision", repeatable=True)

    @property
    def keyring(self) -> Keyring | None:
        return self._keyring
