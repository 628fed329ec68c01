"""Key rotation: seal every stored value again under the keyring's current key.

Only Secrets and Realms carry sealed values (``codec.SEALED_KINDS``); rewriting one changes
its envelopes and nothing else, by compare-and-swap like any write.
"""

from __future__ import annotations

from typing import Any

from kukeon.api import Kind

from .codec import SEALED_KINDS
from .decoding import load_document
from .encryption import EncryptionError, key_ids_in, reseal_document
from .errors import Invalid
from .keys import range_end
from .registrybase import MAX_CAS_ROUNDS, RegistryBase
from .txn import Stored, compare_modified, put_op

_SealedKeys = list[tuple[Kind, bytes]]
_Failures = list[str]


class RegistryResealing(RegistryBase):
    """reseal and key_ids_in_use."""

    async def _sealed_keys(self) -> _SealedKeys:
        found: _SealedKeys = []
        for kind in SEALED_KINDS:
            prefix = self._layout.kind_prefix(kind).encode()

            async def attempt(prefix: bytes = prefix) -> Any:
                return await self._range(prefix, range_end(prefix), keys_only=True)

            response = await self._retrier.run(
                attempt, what=f"list {kind.value} keys", repeatable=True
            )
            found.extend((kind, kv.key) for kv in response.kvs)
        return found

    async def reseal(self) -> tuple[int, _Failures]:
        """Seal every stored value again under the keyring's current key (a key rotation).

        Each document is rewritten by compare-and-swap (a concurrent write makes it read
        and seal again), and only its envelopes change: no spec, status, generation or
        value does, so no controller sees a change to act on. Readers keep working
        throughout, as they open any key of the file. Returns how many documents were
        rewritten and the keys whose values could not be opened (left as they were).
        """
        keyring = self._keyring
        if keyring is None:
            raise Invalid("this registry has no encryption key: nothing can be sealed again")
        rewritten = 0
        failed: _Failures = []
        for kind, raw_key in await self._sealed_keys():
            for _ in range(MAX_CAS_ROUNDS):
                stored = await self._read_one(raw_key, f"read {raw_key.decode()}")
                if stored is None:
                    break
                document = load_document(stored.value)
                if isinstance(document, str):
                    failed.append(f"{raw_key.decode()}: {document}")
                    break
                try:
                    changed = reseal_document(kind.value, raw_key, document, keyring)
                except EncryptionError as error:
                    failed.append(f"{raw_key.decode()}: {error}")
                    break
                if not changed:
                    break
                data = self._codec.encode(document, label=raw_key.decode())

                async def attempt(
                    stored: Stored = stored, data: bytes = data, raw_key: bytes = raw_key
                ) -> Any:
                    compare = [compare_modified(raw_key, stored.mod_revision)]
                    return await self._txn(compare, [put_op(raw_key, data)], [])

                response = await self._retrier.run(
                    attempt, what=f"seal {raw_key.decode()} again", repeatable=True
                )
                if response.succeeded:
                    self._documents.remember(raw_key, Stored(data, response.header.revision))
                    rewritten += 1
                    break
        return rewritten, failed

    async def key_ids_in_use(self) -> dict[str, int]:
        """How many stored documents carry values sealed under each key id."""
        counts: dict[str, int] = {}
        for kind, raw_key in await self._sealed_keys():
            stored = await self._read_one(raw_key, f"read {raw_key.decode()}")
            document = load_document(stored.value) if stored is not None else "gone"
            if isinstance(document, str):
                continue
            for key_id in key_ids_in(kind.value, raw_key, document):
                counts[key_id] = counts.get(key_id, 0) + 1
        return counts
