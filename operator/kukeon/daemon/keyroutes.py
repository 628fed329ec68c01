"""The admin route that rotates the encryption key of Secrets and registry passwords.

```
POST /apis/kukeon.io/v1beta1/encryption/rotate-key   body: {"keyId": ID?, "prune": bool?}
```

Rotation, without downtime (readers open values sealed under any key of the file):

1. the key file is read again (an operator may have added a key to it, as every node of a
   fleet needs the key before any value is sealed with it), then ``keyId`` (a key of the
   file) or a freshly generated key becomes the current one, and the file is rewritten;
2. every Secret and every Realm with an inline password is sealed again under it,
   document by document, by compare-and-swap (``Registry.reseal``);
3. with ``prune``, once no stored value names another key, the other keys are removed
   from this node's file.

Only ``admin`` may call it (the unix socket is admin); the answer names the old and new
key ids and the counts, never a key or a value.

A rotation cut short (kukeond killed while sealing) leaves every value readable (the file
keeps both keys), but half the documents under each key. So that an admin learns it without
running rotate-key again, a marker (``MARKER`` in the state directory, naming both key ids)
is written after step 1 and removed once step 2 has looked at every document; a kukeond
that starts with the marker there warns in its log and sets the gauge
``kukeon_key_rotation_interrupted`` to 1, both until a rotation on this node completes.
The node's heartbeat says it too, where ``kukectl describe node`` shows it: the Node
condition ``KeyRotationInterrupted`` (``rotation_condition``), True while the marker is
there and no rotation of this process is sealing, with the command that finishes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from kukeon.api import NodeCondition
from kukeon.api.meta import quote
from kukeon.apiserver import queryparams
from kukeon.apiserver.auth import Role
from kukeon.apiserver.bodies import JSON_MEDIA_TYPE
from kukeon.apiserver.fieldvalidation import STRICT, WARN, FieldChecks, warn
from kukeon.apiserver.handlers import principal_of
from kukeon.apiserver.request import read_body
from kukeon.apiserver.status import ApiError, Cause
from kukeon.client.paths import API_ROOT
from kukeon.fileio import write_atomically
from kukeon.store import Registry
from kukeon.store.encryption import EncryptionError, Keyring, KeySet, write_key_file

log = logging.getLogger(__name__)

ROTATE_PATH = f"{API_ROOT}/encryption/rotate-key"

MARKER = "key-rotation-in-progress.json"
"""In the state directory while a rotation seals the documents again."""

KEY_ROTATION_INTERRUPTED = "KeyRotationInterrupted"
"""The Node condition: True while this node's state directory holds the marker of a
rotation that no rotation of the running kukeond is completing."""

_sealing: set[Path] = set()
"""The markers of the rotations this process is sealing now: a marker not in it was left
by a rotation cut short (a kukeond killed, a reseal that failed)."""


_NONE_CUT_SHORT = "no key rotation on this node was cut short"


def rotation_condition(state_dir: Path, now: datetime) -> NodeCondition:
    """The node's ``KeyRotationInterrupted`` condition, as the marker in ``state_dir`` says
    now (blocking: a file read; run in a thread). Written by every heartbeat, so it clears
    at the beat after a rotation completes."""
    marker = state_dir / MARKER
    text: str | None
    try:
        text = marker.read_text()
    except FileNotFoundError:
        text = None
    except OSError as error:  # there, so a rotation left it: said, keys unnamed
        text = f"(marker unreadable: {error.strerror or error})"
    if text is None:
        status, reason, message = "False", "NoRotationCutShort", _NONE_CUT_SHORT
    else:
        status, reason, message = _marked(marker, text)
    return NodeCondition(
        type=KEY_ROTATION_INTERRUPTED,
        status=status,
        reason=reason,
        message=message if status == "False" else f"{message} ({marker})",
        last_transition_time=now,
    )


def _marked(marker: Path, text: str) -> tuple[Literal["True", "False"], str, str]:
    """What a marker that is there says: a rotation sealing now, or one cut short."""
    body = _json_object(text)
    previous = str(body.get("previousKeyId") or "the old key")
    current = str(body.get("currentKeyId") or "CURRENT")
    if marker in _sealing:
        return (
            "False",
            "KeyRotationSealing",
            f"a key rotation is sealing values again under {current}",
        )
    started = f", started {body['startedAt']}" if body.get("startedAt") else ""
    return (
        "True",
        "KeyRotationCutShort",
        f"a key rotation on this node (from {previous} to {current}{started}) was cut "
        f"short: values may still be sealed under {previous}, which the key file keeps "
        f"(all still open); run `kukectl secret rotate-key --key-id {current}` through "
        f"this node's API (with --prune to drop {previous}) to finish it",
    )


def _json_object(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class KeyRotationRoutes:
    def __init__(
        self,
        *,
        registry: Registry,
        keyring: Keyring,
        state_dir: Path,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry
        self.keyring = keyring
        self.marker = state_dir / MARKER
        self._lock = asyncio.Lock()
        self.interrupted = Gauge(
            "kukeon_key_rotation_interrupted",
            "1 when this kukeond started after a key rotation on this node was cut short "
            "(some values may still be sealed under the old key); 0 once a rotation completes",
            registry=metrics_registry,
        )
        self._say_interrupted()

    def _say_interrupted(self) -> None:
        """Warn of a rotation the last kukeond did not finish (its marker is still there)."""
        try:
            text = self.marker.read_text()
        except FileNotFoundError:
            return
        except OSError as error:
            text = f"(marker unreadable: {error})"
        self.interrupted.set(1)
        log.warning(
            "a key rotation on this node was interrupted (%s: %s): values may still be "
            "sealed under the old key, which the key file keeps; run `kukectl secret "
            "rotate-key --key-id %s` (with --prune to drop the old key) to finish it",
            self.marker,
            text.strip(),
            self.keyring.current,
        )

    def _mark(self, previous: str, current: str) -> None:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        body = {"previousKeyId": previous, "currentKeyId": current, "startedAt": started}
        write_atomically(self.marker, json.dumps(body) + "\n", mode=0o600)

    def _unmark(self) -> None:
        self.marker.unlink(missing_ok=True)
        self.interrupted.set(0)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(ROTATE_PATH, self.rotate)

    async def rotate(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if principal.role != Role.ADMIN:
            raise ApiError(
                403,
                f"Forbidden: user {principal.user!r} ({principal.role.value}) may not rotate "
                "the encryption key; only admin may",
            )
        key_id, prune = await _options(request)
        if self._lock.locked():
            raise ApiError(409, "a key rotation is already running on this node")
        async with self._lock:
            return web.json_response(await self._rotate(key_id, prune))

    @staticmethod
    async def _write(path: Path, key_set: KeySet, what: str) -> None:
        try:
            await asyncio.to_thread(write_key_file, path, key_set)
        except OSError as error:
            raise ApiError(
                409,
                f"cannot {what} in the key file {path}: {error.strerror or error}; when the "
                "file is managed outside kukeond (a mounted Secret), edit it there (every "
                "node), then run rotate-key --key-id with its current key",
            ) from None

    async def _rotate(self, key_id: str | None, prune: bool) -> dict[str, Any]:
        keyring = self.keyring
        path = keyring.path
        if path is None:
            raise ApiError(500, "this kukeond's keys come from no file: nothing to rotate")
        await asyncio.to_thread(keyring.reload)
        previous = keyring.current
        try:
            rotated = keyring.rotated(key_id)
        except EncryptionError as error:
            raise ApiError(400, f"{error} ({path})") from None
        if key_id is None or key_id != previous:
            # A file kukeond does not own (a mounted Kubernetes Secret) is read-only: there
            # the operator makes the key current in the file and rotates with --key-id.
            await self._write(path, rotated, f"make {rotated.current} current")
        keyring.replace(rotated)
        # Sealing from before the marker is written to after it is removed: the heartbeat
        # reads a marker while this runs as no rotation cut short.
        _sealing.add(self.marker)
        try:
            # After the file: a crash before this point has sealed nothing under the new key.
            await asyncio.to_thread(self._mark, previous, rotated.current)
            log.info(
                "encryption key %s is now current (was %s); sealing again",
                rotated.current,
                previous,
            )
            rewritten, failed = await self.registry.reseal()
            # Every document looked at: the answer says what is left; the rotation is over.
            await asyncio.to_thread(self._unmark)
        finally:
            _sealing.discard(self.marker)
        for failure in failed:
            log.error("could not seal again: %s", failure)
        in_use = await self.registry.key_ids_in_use()
        removed: list[str] = []
        if prune:
            others = sorted(set(in_use) - {rotated.current})
            if others or failed:
                raise ApiError(
                    409,
                    "the key is rotated but the old keys stay: "
                    + (
                        f"{len(failed)} document(s) could not be sealed again"
                        if failed
                        else f"values are still sealed with {', '.join(others)}"
                    ),
                )
            pruned = keyring.pruned(set())
            removed = sorted(set(keyring.key_ids) - set(pruned.keys))
            if removed:
                await self._write(path, pruned, f"remove {', '.join(removed)}")
            keyring.replace(pruned)
        log.info(
            "key rotation: %d document(s) sealed again, %d failed, keys removed: %s",
            rewritten,
            len(failed),
            ", ".join(removed) or "none",
        )
        return {
            "previousKeyId": previous,
            "currentKeyId": rotated.current,
            "documentsResealed": rewritten,
            "failed": failed,
            "keysInUse": in_use,
            "removedKeyIds": removed,
        }


_OPTIONS = ("keyId", "prune")
_BODY_MAX = 64 * 1024


async def _options(request: web.Request) -> tuple[str | None, bool]:
    """The body's ``keyId`` and ``prune``, read as every write's body (a malformed one is a
    400, it was a 500) at the request's ``fieldValidation`` (another field: refused, warned
    of or ignored; a typo'd ``prnue`` was ignored, the keys kept). ``dryRun`` is refused:
    a rotation has no dry run, and it was ignored (the key rotated for real)."""
    if queryparams.dry_run(request):
        why = "a key rotation has no dry run; leave dryRun out"
        raise ApiError(400, f"dryRun: {why}", causes=[Cause("dryRun", why)])
    if not request.can_read_body:
        return None, False
    checks = FieldChecks(request)
    options: Any = await read_body(request, _BODY_MAX, frozenset({JSON_MEDIA_TYPE}), checks)
    if not isinstance(options, dict):
        raise ApiError(400, "the body must be a JSON object: {keyId?, prune?}")
    if unknown := [name for name in options if name not in _OPTIONS]:
        if checks.level == STRICT:
            causes = [Cause(name, "unknown field (keyId, prune)") for name in unknown]
            shown = ", ".join(quote(name) for name in unknown)
            raise ApiError(400, f"the body has unknown fields: {shown}", causes=causes)
        if checks.level == WARN:
            for name in unknown:
                warn(request, f"unknown field {json.dumps(name)}")
    key_id = options.get("keyId")
    prune = options.get("prune", False)
    if key_id is not None and not isinstance(key_id, str):
        raise ApiError(400, "keyId must be a string", causes=[Cause("keyId", "a string")])
    if not isinstance(prune, bool):
        raise ApiError(400, "prune must be true or false", causes=[Cause("prune", "a boolean")])
    return key_id, prune
