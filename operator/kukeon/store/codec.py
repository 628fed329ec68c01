"""Resources to stored bytes and back: validation, size limit, sealing, decoding.

No I/O here. A write is validated through ``kukeon.api`` (the canonical document and its
model), its sealed values are sealed (``encryption``) and it is refused over
``MAX_DOCUMENT_BYTES``; a read is decoded as untrusted data (``decoding``): a document that
is not a valid resource of its key is recorded in ``InvalidDocuments`` and is either
skipped by the caller (lists, watches) or ``InvalidStoredDocument`` (reads by name).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError

from kukeon.api import (
    AnyResource,
    FieldError,
    InvalidResource,
    Kind,
    Realm,
    Secret,
    to_document,
)
from kukeon.api.tolerant import parse_tolerating_status

from .decoding import MAX_DOCUMENT_BYTES as MAX_DOCUMENT_BYTES
from .decoding import InvalidDocuments, load_document, parse_document
from .encryption import (
    EncryptionError,
    Keyring,
    SealingError,
    seal_passwords,
    seal_secret,
    unseal_document,
)
from .errors import DocumentTooLarge, Invalid, InvalidStoredDocument
from .keys import KeyLayout, display_name
from .shareddecodes import SharedDecodes
from .txn import Stored

SEALED_KINDS = (Kind.SECRET, Kind.REALM)
"""Kinds whose stored documents carry sealed values (see ``encryption``)."""


class ValidatedDump:
    """Proof for ``Registry.create`` that a model is, field for field, one that passed
    ``parse_resource``: the canonical JSON of the model ``parse_resource`` just returned,
    taken at once (``of``). The API server has validated a request's body when it creates;
    with this the registry does not validate that body a second time.

    Pydantic models are mutable (and ``model_copy(update=...)`` does not validate), so the
    model itself proves nothing: the registry dumps the model it is given again and trusts
    it only when that dump equals this one (``proves``), else validates it in full.
    """

    __slots__ = ("_dump",)

    def __init__(self, dump: str) -> None:
        self._dump = dump

    @classmethod
    def of(cls, fresh: AnyResource) -> ValidatedDump:
        """The proof for ``fresh``: only ever the model ``parse_resource`` has just returned."""
        return cls(fresh.model_dump_json(by_alias=True, exclude_none=True))

    def proves(self, res: AnyResource) -> bool:
        """``res`` serialises exactly as the validated model did (nothing changed since)."""
        return res.model_dump_json(by_alias=True, exclude_none=True) == self._dump


@functools.cache  # per model class: pydantic's get_default inspects the factory's signature
def _initial_status_factory(model: type[AnyResource]) -> Callable[[], Any]:
    field = model.model_fields["status"]
    factory = field.default_factory
    if factory is None or field.default_factory_takes_validated_data:
        return lambda: field.get_default(call_default_factory=True, validated_data={})
    return cast(Callable[[], Any], factory)


def _initial_status(model: type[AnyResource]) -> Any:
    """The status a new object of ``model`` has (what validating it without one gives)."""
    return _initial_status_factory(model)()


def label_of(kind: Kind, key: Sequence[str]) -> str:
    """How messages name an object: ``Cell 'r/s/st/c'``."""
    return f"{kind.value} {display_name(key)!r}"


class DocumentCodec:
    """The documents of one key layout, sealed and opened with one keyring (or none)."""

    def __init__(
        self, *, layout: KeyLayout, keyring: Keyring | None, invalid: InvalidDocuments
    ) -> None:
        self._layout = layout
        self.shared = SharedDecodes()
        """The newest decoded version of each key, handed to every watch and list."""
        # Seals Secret values and inline registry passwords on write and opens them on
        # read (only kukeond holds one); without it they cannot be written and read as
        # absent (Secret data) or "***" (passwords).
        self._keyring = keyring
        self.invalid = invalid
        """Keys whose document did not decode when last read."""

    @staticmethod
    def validated(document: dict[str, Any]) -> AnyResource:
        """``document`` validated through kukeon.api, as its model (a stored status's
        fields of another version left out: ``api.tolerant``)."""
        try:
            return parse_tolerating_status(document)
        except InvalidResource as error:
            raise Invalid.from_invalid_resource(error) from error

    @classmethod
    def validate(cls, document: dict[str, Any]) -> tuple[dict[str, Any], AnyResource]:
        """Validate through kukeon.api; the canonical document to store and its model."""
        parsed = cls.validated(document)
        canonical = to_document(parsed)
        canonical["metadata"].pop("resourceVersion", None)
        return canonical, parsed

    @staticmethod
    def new_object(
        res: AnyResource, *, uid: str, created: datetime, finalizers: list[str]
    ) -> AnyResource | None:
        """The model ``validated`` would give for ``res``'s document with the registry's
        metadata and no status, when ``res`` is proven valid (``ValidatedDump``); None when
        that metadata does not validate (the full validation then says why). Not for a kind
        with sealed values.

        Only the metadata is validated again, on its own (the registry's values in it are
        new); the rest is ``res``'s, as validated. That is the whole document's validation:
        no rule of any kind reads a metadata field but ``name`` (``cross_field_errors`` and
        the models' own validators), and the status is the kind's initial one (unit test:
        the same bytes and model as the full validation, kind by kind).
        """
        metadata = res.metadata
        try:
            new_metadata = type(metadata).model_validate(
                {
                    "name": metadata.name,
                    "labels": metadata.labels,
                    "annotations": metadata.annotations,
                    "uid": uid,
                    "generation": 1,
                    "creationTimestamp": created,
                    "finalizers": finalizers,
                }
            )
        except ValidationError:
            return None
        return res.model_copy(
            update={"metadata": new_metadata, "status": _initial_status(type(res))}
        )

    @staticmethod
    def as_written(model: AnyResource, revision: int, **metadata: Any) -> AnyResource:
        """The validated model as stored at ``revision`` (no second parse of our own bytes)."""
        update = {"resource_version": str(revision), **metadata}
        return model.model_copy(update={"metadata": model.metadata.model_copy(update=update)})

    def encode(self, document: dict[str, Any], *, label: str) -> bytes:
        data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        metadata = document.get("metadata", {})
        return self._within_limit(data, label, document.get("kind"), metadata.get("name"))

    def encode_model(self, model: AnyResource, *, label: str) -> bytes:
        """The bytes ``encode`` gives for ``to_document(model)``, without building that
        document: pydantic writes the same compact JSON (camelCase, nulls left out, text
        as UTF-8) in one call. Not for a kind with sealed values (they are sealed into the
        document first). ``model.metadata.resource_version`` must be unset."""
        data = model.model_dump_json(by_alias=True, exclude_none=True).encode()
        return self._within_limit(data, label, model.kind, model.metadata.name)

    @staticmethod
    def _within_limit(data: bytes, label: str, kind: str | None, name: str | None) -> bytes:
        if len(data) > MAX_DOCUMENT_BYTES:
            why = f"the document is {len(data)} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit"
            raise DocumentTooLarge(
                f"{label}: {why}", causes=[FieldError("", why)], kind=kind, name=name
            )
        return data

    def parsed(
        self, kind: Kind, raw_key: bytes, document: dict[str, Any], revision: int
    ) -> AnyResource | str:
        """``document`` (loaded from ``raw_key``) as a resource, or why not (then recorded)."""
        key = self._layout.split(kind, raw_key)
        parsed = self.unsealed(kind, raw_key, document) or parse_document(
            document, kind=kind, key=key, revision=revision
        )
        if isinstance(parsed, str):
            self.invalid.seen(kind, raw_key, revision, parsed)
        else:
            self.invalid.valid(raw_key, revision)
        return parsed

    def decoded(self, kind: Kind, raw_key: bytes, value: bytes, revision: int) -> AnyResource | str:
        """The resource stored as ``value`` under ``raw_key``, or why it is not one."""
        loaded = load_document(value)
        if isinstance(loaded, str):
            # Only the registry writes, after validating: someone wrote etcd by hand.
            self.invalid.seen(kind, raw_key, revision, loaded)
            return loaded
        return self.parsed(kind, raw_key, loaded, revision)

    def shared_version(self, kind: Kind, raw_key: bytes, revision: int) -> AnyResource | None:
        """The object already decoded from this version, if kept (``shareddecodes``)."""
        if kind in SEALED_KINDS:
            return None
        return self.shared.get(raw_key, revision)

    def share(self, kind: Kind, raw_key: bytes, revision: int, res: AnyResource | str) -> None:
        """Keep a decoded version for the other readers of it (not one with opened sealed
        values); an invalid one drops the key's older version."""
        if kind in SEALED_KINDS:
            return
        if isinstance(res, str):
            self.shared.forget(raw_key, revision)
        else:
            self.shared.keep(raw_key, revision, res)

    def decoded_shared(
        self, kind: Kind, raw_key: bytes, value: bytes, revision: int
    ) -> AnyResource | str:
        """``decoded``, through the shared versions: what watches use."""
        found = self.shared_version(kind, raw_key, revision)
        if found is not None:
            return found
        decoded = self.decoded(kind, raw_key, value, revision)
        self.share(kind, raw_key, revision, decoded)
        return decoded

    def decode(self, kind: Kind, raw_key: bytes, value: bytes, revision: int) -> AnyResource:
        decoded = self.decoded(kind, raw_key, value, revision)
        if isinstance(decoded, str):
            raise self.unreadable(kind, raw_key, revision, decoded)
        return decoded

    def last_version(self, kind: Kind, kv: Any, revision: int) -> AnyResource | None:
        """A watch event's previous version, for a DELETED event; None when not valid.

        Nothing is recorded: that version was either delivered (valid) or skipped already.
        """
        found = self.shared_version(kind, kv.key, kv.mod_revision)
        if found is not None:  # that version, stamped with the deletion's revision
            return self.as_written(found, revision)
        return self._parsed_quietly(kind, kv, revision, self._keyring)

    def prior_version(self, kind: Kind, kv: Any) -> AnyResource | None:
        """A change's version before (etcd's ``prev_kv``) as selectors see it, for
        ``WatchEvent.prior``: the one kept decoded (none is decoded for it), or, for a kind
        with sealed values (never kept), read again from ``kv`` with those values left
        sealed: a Secret without its data, a password ``***`` (labels, name and status are
        not sealed). No plaintext is opened or held for it. None when not kept or not valid.
        """
        if kind not in SEALED_KINDS:
            return self.shared.get(kv.key, kv.mod_revision)
        return self._parsed_quietly(kind, kv, kv.mod_revision, None)

    def _parsed_quietly(
        self, kind: Kind, kv: Any, revision: int, keyring: Keyring | None
    ) -> AnyResource | None:
        """``kv``'s version, stamped ``revision``, its sealed values opened with ``keyring``
        (None: left sealed); None when not valid. Nothing is recorded: that version was
        either delivered (valid) or skipped already."""
        loaded = load_document(kv.value)
        if isinstance(loaded, str):
            return None
        key = self._layout.split(kind, kv.key)
        parsed = self._opened(kind, kv.key, loaded, keyring) or parse_document(
            loaded, kind=kind, key=key, revision=revision
        )
        return None if isinstance(parsed, str) else parsed

    def unsealed(self, kind: Kind, raw_key: bytes, document: dict[str, Any]) -> str | None:
        """Open the sealed values of ``document`` in place; why not, when one does not open."""
        return self._opened(kind, raw_key, document, self._keyring)

    @staticmethod
    def _opened(
        kind: Kind, raw_key: bytes, document: dict[str, Any], keyring: Keyring | None
    ) -> str | None:
        if kind not in SEALED_KINDS:
            return None
        try:
            unseal_document(kind.value, raw_key, document, keyring)
        except (EncryptionError, ValueError, UnicodeDecodeError) as error:
            return f"a sealed value does not open: {error}"
        return None

    def seal(
        self,
        kind: Kind,
        raw_key: bytes,
        canonical: dict[str, Any],
        res: AnyResource,
        stored: dict[str, Any] | None,
        label: str,
    ) -> None:
        """Seal the values ``res`` carries into ``canonical``, the document to write."""
        try:
            if isinstance(res, Secret):
                seal_secret(raw_key, canonical, res.values(), stored, self._keyring)
            elif isinstance(res, Realm):
                passwords = [entry.password for entry in res.spec.registry_credentials]
                seal_passwords(raw_key, canonical, passwords, stored, self._keyring)
        except SealingError as error:
            raise Invalid(
                f"{label}: {error.field}: {error}", causes=[FieldError(error.field, str(error))]
            ) from None

    def written(
        self,
        kind: Kind,
        raw_key: bytes,
        model: AnyResource,
        data: bytes,
        revision: int,
        **meta: Any,
    ) -> AnyResource:
        """What a write returns: the validated model, or, for a kind with sealed values,
        the stored bytes read back (so the caller holds the values, not "***").

        The model is also kept as the shared version at ``revision``: a watch or list of
        this process meets that version next and is handed it instead of decoding our own
        bytes again (a valid model's canonical document decodes to an equal model, which
        ``as_written`` already relies on). The caller gets its own metadata (labels,
        annotations and finalizers copied), since callers change a result's metadata
        before writing it again; spec and status are shared, as for any shared version.
        """
        if kind in SEALED_KINDS:
            return self.decode(kind, raw_key, data, revision)
        shared = self.as_written(model, revision, **meta)
        self.invalid.valid(raw_key, revision)
        self.share(kind, raw_key, revision, shared)
        metadata = shared.metadata
        own = metadata.model_copy(
            update={
                "labels": dict(metadata.labels),
                "annotations": dict(metadata.annotations),
                "finalizers": list(metadata.finalizers),
            }
        )
        return shared.model_copy(update={"metadata": own})

    def unreadable(
        self, kind: Kind, raw_key: bytes, revision: int, reason: str
    ) -> InvalidStoredDocument:
        key = self._layout.split(kind, raw_key)
        where = raw_key.decode(errors="replace")
        return InvalidStoredDocument(
            f"{label_of(kind, key)}: the document stored at {where} (revision {revision}) is "
            f"invalid: {reason}; lists and watches skip it; delete it or write a valid one",
            kind=kind.value,
            name=key[-1],
            key=where,
            revision=revision,
            reason=reason,
        )

    def stored_document(self, kind: Kind, raw_key: bytes, stored: Stored) -> dict[str, Any]:
        """The stored JSON object to merge a write into (InvalidStoredDocument if none)."""
        loaded = load_document(stored.value)
        if isinstance(loaded, str):
            self.invalid.seen(kind, raw_key, stored.mod_revision, loaded)
            raise self.unreadable(kind, raw_key, stored.mod_revision, loaded)
        return loaded
