"""Encryption at rest of Secret values and registry passwords: AES-256-GCM with named keys.

The key file (`--encryption-key-file`, `<state-dir>/encryption-keys.yaml` by default) holds
every key kukeond may meet in etcd and names the one new values are sealed with::

    current: k-20261203T064512-3f9a
    keys:
      - id: k-20261203T064512-3f9a
        secret: <base64 of 32 random bytes>

Each sealed value is an envelope ``{"keyId", "nonce", "ciphertext"}``: the key id beside
the ciphertext lets readers accept any key of the file, so a rotation (add a key, make it
current, re-seal everything) never stops a reader; the 96-bit nonce is random per seal.
The associated data is the value's etcd key (plus, for a password, the credential it
belongs to), so a ciphertext copied under another key, or into another credential, fails
authentication instead of decrypting there.

A reader that meets a key id its file does not hold reads the file again once (another
node, or the rotate command, may have added it since), then fails.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kukeon.api import REDACTED_PASSWORD, key_status
from kukeon.api.yamlread import load_yaml
from kukeon.fileio import warn_if_open_to_others, write_atomically

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
ENVELOPE_FIELDS = ("keyId", "nonce", "ciphertext")


class EncryptionError(Exception):
    """A key file cannot be used, or a sealed value cannot be opened (the message says why)."""


def new_key_id() -> str:
    """A key id that sorts by creation time and does not collide between two fast rotations."""
    return f"k-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class KeySet:
    """The keys of one key file and the current one."""

    current: str
    keys: Mapping[str, bytes]

    def to_yaml(self) -> str:
        document = {
            "current": self.current,
            "keys": [
                {"id": key_id, "secret": base64.b64encode(secret).decode()}
                for key_id, secret in self.keys.items()
            ],
        }
        header = (
            "# kukeon encryption keys (AES-256-GCM). Every node of a fleet needs the same\n"
            "# file; keep it as secret as the etcd client key. See docs/fleet.md.\n"
        )
        return header + yaml.safe_dump(document, sort_keys=False)


def parse_key_file(text: str, *, source: str) -> KeySet:
    """The key set in a key file's text; `EncryptionError` naming ``source`` otherwise."""
    try:
        document = load_yaml(text)
    except yaml.YAMLError as error:
        raise EncryptionError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise EncryptionError(f"{source}: must be a mapping with `current` and `keys`")
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise EncryptionError(f"{source}: `keys` must be a non-empty list")
    keys: dict[str, bytes] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise EncryptionError(f"{source}: keys[{index}] needs a string `id`")
        key_id = entry["id"]
        if not key_id or key_id in keys:
            raise EncryptionError(f"{source}: keys[{index}].id {key_id!r} is empty or repeated")
        try:
            secret = base64.b64decode(str(entry.get("secret", "")), validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionError(f"{source}: keys[{index}].secret is not base64") from None
        if len(secret) != KEY_BYTES:
            raise EncryptionError(
                f"{source}: keys[{index}].secret must be {KEY_BYTES} bytes, got {len(secret)}"
            )
        keys[key_id] = secret
    current = document.get("current")
    if not isinstance(current, str) or current not in keys:
        raise EncryptionError(f"{source}: `current` must name one of the keys, got {current!r}")
    return KeySet(current=current, keys=keys)


def write_key_file(path: Path, key_set: KeySet) -> None:
    """Replace ``path`` atomically with ``key_set`` (mode 0600, directory created 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, key_set.to_yaml(), mode=0o600)


def _aead(key: bytes) -> AESGCM:
    """AES-GCM under ``key``. cryptography is imported at the first sealed value, not with
    kukeond: its bindings are ~7 MiB of RSS (issue 18) that a node without Secrets or
    registry passwords never uses."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _warn_if_replaceable(path: Path) -> None:
    warn_if_open_to_others(
        path,
        "encryption key file",
        if_replaced="the Secrets written afterwards are sealed under a key they know",
    )


class Keyring:
    """The keys of one key file: seals with the current key, opens with any of them."""

    def __init__(self, key_set: KeySet, *, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._set = key_set
        self._path = path

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            text = path.read_text()
        except OSError as error:
            raise EncryptionError(f"cannot read the encryption key file {path}: {error}") from None
        return cls(parse_key_file(text, source=str(path)), path=path)

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[Keyring, bool]:
        """The keyring of ``path``, created with one fresh key when the file does not exist.

        Returns the keyring and whether it was created. An existing file readable by others
        is refused: it would let any local user read every Secret. One that others may
        replace (its directory, its owner) is warned about: a key of theirs in its place
        seals every Secret written afterwards under a key they know.
        """
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            key_id = new_key_id()
            write_key_file(path, KeySet(current=key_id, keys={key_id: os.urandom(KEY_BYTES)}))
            _warn_if_replaceable(path)
            return cls.load(path), True
        if mode & 0o077:
            raise EncryptionError(
                f"the encryption key file {path} is readable or writable by others "
                f"(mode {mode & 0o777:o}); chmod 600 it"
            )
        _warn_if_replaceable(path)
        return cls.load(path), False

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def current(self) -> str:
        return self._set.current

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._set.keys)

    def replace(self, key_set: KeySet) -> None:
        with self._lock:
            self._set = key_set

    def reload(self) -> bool:
        """Read the key file again; whether it could be read (a bad file keeps the old keys)."""
        if self._path is None:
            return False
        try:
            fresh = parse_key_file(self._path.read_text(), source=str(self._path))
        except (OSError, EncryptionError):
            return False
        self.replace(fresh)
        return True

    def seal(self, plaintext: bytes, *, aad: bytes) -> dict[str, str]:
        """The envelope of ``plaintext`` under the current key, bound to ``aad``."""
        with self._lock:
            key_id, key = self._set.current, self._set.keys[self._set.current]
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = _aead(key).encrypt(nonce, plaintext, aad)
        return {"keyId": key_id, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}

    def open(self, envelope: Any, *, aad: bytes) -> bytes:
        """The plaintext of ``envelope``; `EncryptionError` if it is malformed, sealed with an
        unknown key, altered, or bound to other associated data."""
        if not isinstance(envelope, dict) or any(
            not isinstance(envelope.get(field), str) for field in ENVELOPE_FIELDS
        ):
            raise EncryptionError(f"not a sealed value (needs {', '.join(ENVELOPE_FIELDS)})")
        key_id = envelope["keyId"]
        key = self._key(key_id)
        try:
            nonce = base64.b64decode(envelope["nonce"], validate=True)
            ciphertext = base64.b64decode(envelope["ciphertext"], validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionError("the sealed value's nonce or ciphertext is not base64") from None
        if len(nonce) != NONCE_BYTES:
            raise EncryptionError(f"the nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
        from cryptography.exceptions import InvalidTag

        try:
            return _aead(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise EncryptionError(
                f"the value sealed with key {key_id!r} does not authenticate: altered, or "
                "moved from another key or credential"
            ) from None

    def _key(self, key_id: str) -> bytes:
        with self._lock:
            key = self._set.keys.get(key_id)
        if key is None and self.reload():
            with self._lock:
                key = self._set.keys.get(key_id)
        if key is None:
            where = f" of {self._path}" if self._path is not None else ""
            raise EncryptionError(
                f"the value is sealed with key {key_id!r}, which is not in the key file{where}"
            )
        return key

    def rotated(self, key_id: str | None = None) -> KeySet:
        """This key set with ``key_id`` (a key of the file) or a new key made current."""
        with self._lock:
            keys = dict(self._set.keys)
        if key_id is None:
            key_id = new_key_id()
            keys[key_id] = os.urandom(KEY_BYTES)
        elif key_id not in keys:
            raise EncryptionError(f"key {key_id!r} is not in the key file")
        return KeySet(current=key_id, keys=keys)

    def pruned(self, keep: set[str]) -> KeySet:
        """This key set without the keys outside ``keep`` (the current one always stays)."""
        with self._lock:
            current, keys = self._set.current, dict(self._set.keys)
        return KeySet(
            current=current, keys={k: v for k, v in keys.items() if k in keep | {current}}
        )


# --- the sealed parts of stored documents ----------------------------------------------
#
# A Secret is stored with `encryptedData` (the envelope of its values, a JSON object of
# base64 strings) and `status.keys`, never `data`/`stringData`. A Realm's inline
# registry password is stored as `encryptedPassword` in its credential, never `password`.
# The functions below turn one form into the other; the registry calls them on every
# read and write of those two kinds.

SECRET_FIELD = "encryptedData"
PASSWORD_FIELD = "encryptedPassword"


def _credentials(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec")
    entries = spec.get("registryCredentials") if isinstance(spec, dict) else None
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, dict)]


def password_aad(raw_key: bytes, credential: Mapping[str, Any]) -> bytes:
    """A password is bound to its realm's key and to the credential's server and username."""
    server = str(credential.get("serverAddress") or "")
    return b"\0".join(
        (raw_key, b"registryCredentials", server.encode(), str(credential["username"]).encode())
    )


def _identity(credential: Mapping[str, Any]) -> tuple[str, str]:
    return str(credential.get("serverAddress") or ""), str(credential.get("username"))


def sealed_envelopes(kind: str, raw_key: bytes, document: dict[str, Any]) -> list[Any]:
    """(envelope, associated data, setter) of every sealed value of a stored document."""
    found: list[Any] = []
    if kind == "Secret" and SECRET_FIELD in document:

        def put_secret(envelope: dict[str, str]) -> None:
            document[SECRET_FIELD] = envelope

        found.append((document[SECRET_FIELD], raw_key, put_secret))
    if kind == "Realm":
        for credential in _credentials(document):
            if PASSWORD_FIELD in credential and "username" in credential:

                def put_password(envelope: dict[str, str], entry: Any = credential) -> None:
                    entry[PASSWORD_FIELD] = envelope

                found.append(
                    (credential[PASSWORD_FIELD], password_aad(raw_key, credential), put_password)
                )
    return found


def unseal_document(
    kind: str, raw_key: bytes, document: dict[str, Any], keyring: Keyring | None
) -> None:
    """Turn a stored document into the form the model parses, in place.

    With a keyring the values come back (`data`, `password`); without one a Secret has no
    `data` and a password reads `***`. `EncryptionError` when a value does not open.
    """
    if kind == "Secret":
        envelope = document.pop(SECRET_FIELD, None)
        if envelope is not None and keyring is not None:
            values = json.loads(keyring.open(envelope, aad=raw_key))
            if not isinstance(values, dict):
                raise EncryptionError("the sealed values are not a mapping")
            document["data"] = values
    elif kind == "Realm":
        for credential in _credentials(document):
            envelope = credential.pop(PASSWORD_FIELD, None)
            if envelope is None:
                continue
            if keyring is None:
                credential["password"] = REDACTED_PASSWORD
            else:
                aad = password_aad(raw_key, credential)
                credential["password"] = keyring.open(envelope, aad=aad).decode()


def validation_copy(kind: str, stored: dict[str, Any]) -> dict[str, Any]:
    """A stored document the model can parse, without opening anything (for status writes)."""
    document = copy.deepcopy(stored)
    document.pop(SECRET_FIELD, None)
    if kind == "Realm":
        for credential in _credentials(document):
            if credential.pop(PASSWORD_FIELD, None) is not None:
                credential["password"] = REDACTED_PASSWORD
    return document


def restore_sealed(kind: str, canonical: dict[str, Any], stored: dict[str, Any]) -> None:
    """Put the stored envelopes back into ``canonical`` (same spec as ``stored``)."""
    if kind == "Secret" and SECRET_FIELD in stored:
        canonical[SECRET_FIELD] = stored[SECRET_FIELD]
    if kind == "Realm":
        for mine, theirs in zip(_credentials(canonical), _credentials(stored), strict=False):
            mine.pop("password", None)
            if PASSWORD_FIELD in theirs:
                mine[PASSWORD_FIELD] = theirs[PASSWORD_FIELD]


class SealingError(ValueError):
    """A document cannot be sealed (no key configured, a `***` password with nothing stored)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _reusable(
    keyring: Keyring, envelope: Any, plaintext: bytes, aad: bytes
) -> dict[str, str] | None:
    """The stored envelope when it holds ``plaintext`` under the current key: rewriting
    an unchanged value must leave the document's bytes unchanged (no write, no event)."""
    if not isinstance(envelope, dict) or envelope.get("keyId") != keyring.current:
        return None
    try:
        same = keyring.open(envelope, aad=aad) == plaintext
    except EncryptionError:
        return None
    return envelope if same else None


def secret_plaintext(values: Mapping[str, bytes]) -> bytes:
    return json.dumps(
        {key: base64.b64encode(value).decode() for key, value in sorted(values.items())},
        separators=(",", ":"),
    ).encode()


def seal_secret(
    raw_key: bytes,
    canonical: dict[str, Any],
    values: Mapping[str, bytes] | None,
    stored: dict[str, Any] | None,
    keyring: Keyring | None,
) -> None:
    """Seal a Secret's ``values`` into ``canonical`` (None: keep the stored ones)."""
    canonical.pop("data", None)
    canonical.pop("stringData", None)
    if values is None and stored is not None:
        restore_sealed("Secret", canonical, stored)
        canonical["status"] = copy.deepcopy(stored.get("status", {}))
        return
    values = values or {}
    if keyring is None:
        raise SealingError("data", "kukeond has no encryption key: Secrets cannot be stored")
    plaintext = secret_plaintext(values)
    previous = stored.get(SECRET_FIELD) if stored is not None else None
    envelope = _reusable(keyring, previous, plaintext, raw_key) or keyring.seal(
        plaintext, aad=raw_key
    )
    canonical[SECRET_FIELD] = envelope
    canonical["status"] = key_status(dict(values)).model_dump(mode="json", by_alias=True)


def seal_passwords(
    raw_key: bytes,
    canonical: dict[str, Any],
    passwords: list[str | None],
    stored: dict[str, Any] | None,
    keyring: Keyring | None,
) -> None:
    """Seal a Realm's inline passwords (in credential order) into ``canonical``.

    A password of `***` keeps the stored one of the same server and username.
    """
    previous = {
        _identity(entry): entry[PASSWORD_FIELD]
        for entry in (_credentials(stored) if stored is not None else [])
        if PASSWORD_FIELD in entry
    }
    for index, (credential, password) in enumerate(
        zip(_credentials(canonical), passwords, strict=True)
    ):
        credential.pop("password", None)
        if password is None:
            continue
        field = f"spec.registryCredentials[{index}].password"
        envelope = previous.get(_identity(credential))
        aad = password_aad(raw_key, credential)
        if password == REDACTED_PASSWORD:
            if envelope is None:
                raise SealingError(
                    field,
                    f"{REDACTED_PASSWORD!r} stands for the stored password, and no password is "
                    "stored for this server and username: give the password or "
                    "passwordSecretRef",
                )
            credential[PASSWORD_FIELD] = envelope
            continue
        if keyring is None:
            raise SealingError(field, "kukeond has no encryption key: passwords cannot be stored")
        credential[PASSWORD_FIELD] = _reusable(
            keyring, envelope, password.encode(), aad
        ) or keyring.seal(password.encode(), aad=aad)


def reseal_document(kind: str, raw_key: bytes, document: dict[str, Any], keyring: Keyring) -> bool:
    """Seal again, under the current key, every value of ``document`` sealed under another.

    Whether anything changed. `EncryptionError` when a value does not open.
    """
    changed = False
    for envelope, aad, put in sealed_envelopes(kind, raw_key, document):
        if isinstance(envelope, dict) and envelope.get("keyId") == keyring.current:
            continue
        put(keyring.seal(keyring.open(envelope, aad=aad), aad=aad))
        changed = True
    return changed


def key_ids_in(kind: str, raw_key: bytes, document: dict[str, Any]) -> set[str]:
    """The key ids the sealed values of ``document`` name."""
    return {
        str(envelope.get("keyId"))
        for envelope, _, _ in sealed_envelopes(kind, raw_key, document)
        if isinstance(envelope, dict)
    }
