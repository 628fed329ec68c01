"""The rotate-key route: admin only, the key file rewritten, old keys pruned only when unused."""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from kukeon.apiserver import ApiSettings, TokenBook, create_app
from kukeon.daemon import keyroutes
from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.keyroutes import (
    KEY_ROTATION_INTERRUPTED,
    MARKER,
    ROTATE_PATH,
    KeyRotationRoutes,
    rotation_condition,
)
from kukeon.store import Unavailable
from kukeon.store.encryption import Keyring

ADMIN = "admin-token-0123456789"
VIEWER = "viewer-token-0123456789"
EDITOR = "editor-token-0123456789"


class FakeSealedRegistry:
    """What rotation asks of the registry: reseal, then which keys are still in use."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.stale: dict[str, int] = {}
        self.marked_while_sealing: list[bool] = []

    async def reseal(self) -> tuple[int, list[str]]:
        assert self.keyring.path is not None
        self.marked_while_sealing.append((self.keyring.path.parent / MARKER).exists())
        return 3, []

    async def key_ids_in_use(self) -> dict[str, int]:
        return {self.keyring.current: 3, **self.stale}


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.load_or_create(tmp_path / "encryption-keys.yaml")[0]


@pytest.fixture
async def client(keyring: Keyring) -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    book = TokenBook.from_document(
        {
            "tokens": [
                {"token": ADMIN, "user": "alice", "role": "admin"},
                {"token": VIEWER, "user": "victor", "role": "viewer"},
                {"token": EDITOR, "user": "eddie", "role": "editor", "realms": ["team"]},
            ]
        }
    )
    registry = FakeSealedRegistry(keyring)
    app = create_app(registry=None, settings=ApiSettings(socket_path=None), tokens=book)  # type: ignore[arg-type]
    assert keyring.path is not None
    KeyRotationRoutes(
        registry=registry,  # type: ignore[arg-type]
        keyring=keyring,
        state_dir=keyring.path.parent,
    ).add_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, registry


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_only_admin_may_rotate(
    client: tuple[TestClient[Any, Any], Any], keyring: Keyring
) -> None:
    http, _ = client
    before = keyring.current
    for token in (VIEWER, EDITOR):
        response = await http.post(ROTATE_PATH, json={}, headers=_auth(token))
        assert response.status == 403
        assert "only admin" in (await response.json())["message"]
    assert keyring.current == before


async def test_rotation_writes_a_new_current_key_and_prunes_the_old(
    client: tuple[TestClient[Any, Any], Any], keyring: Keyring
) -> None:
    http, registry = client
    old = keyring.current
    response = await http.post(ROTATE_PATH, json={"prune": False}, headers=_auth(ADMIN))
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["previousKeyId"] == old
    assert answer["documentsResealed"] == 3
    assert keyring.path is not None
    on_disk = Keyring.load(keyring.path)
    assert on_disk.current == answer["currentKeyId"] != old
    assert set(on_disk.key_ids) == {old, answer["currentKeyId"]}
    # A value still sealed with an old key keeps that key in the file.
    registry.stale = {old: 1}
    response = await http.post(ROTATE_PATH, json={"prune": True}, headers=_auth(ADMIN))
    assert response.status == 409
    assert old in Keyring.load(keyring.path).key_ids
    registry.stale = {}
    response = await http.post(
        ROTATE_PATH, json={"keyId": keyring.current, "prune": True}, headers=_auth(ADMIN)
    )
    answer = await response.json()
    assert response.status == 200, answer
    assert old in answer["removedKeyIds"]
    assert Keyring.load(keyring.path).key_ids == (keyring.current,)


async def test_an_interrupted_rotation_is_said_at_start_until_one_completes(
    tmp_path: Path, keyring: Keyring, caplog: pytest.LogCaptureFixture
) -> None:
    """A marker left by a rotation cut short (kukeond killed while sealing): the next
    kukeond warns and sets kukeon_key_rotation_interrupted to 1; a rotation that completes
    removes the marker and sets it to 0. While one seals, the marker is there."""
    registry = FakeSealedRegistry(keyring)
    metrics = CollectorRegistry()
    none_left = CollectorRegistry()
    KeyRotationRoutes(
        registry=registry,  # type: ignore[arg-type]
        keyring=keyring,
        state_dir=tmp_path,
        metrics_registry=none_left,
    )
    assert none_left.get_sample_value("kukeon_key_rotation_interrupted") == 0
    marker = tmp_path / MARKER
    marker.write_text(json.dumps({"previousKeyId": "old", "currentKeyId": keyring.current}))
    with caplog.at_level(logging.WARNING, logger=keyroutes.__name__):
        routes = KeyRotationRoutes(
            registry=registry,  # type: ignore[arg-type]
            keyring=keyring,
            state_dir=tmp_path,
            metrics_registry=metrics,
        )
    assert metrics.get_sample_value("kukeon_key_rotation_interrupted") == 1
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "key rotation on this node was interrupted" in said
    assert f"rotate-key --key-id {keyring.current}" in said
    await routes._rotate(keyring.current, False)
    assert registry.marked_while_sealing == [True]
    assert not marker.exists()
    assert metrics.get_sample_value("kukeon_key_rotation_interrupted") == 0


async def test_a_read_only_key_file_needs_the_key_made_current_in_it(
    client: tuple[TestClient[Any, Any], Any], keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, _ = client

    def read_only(path: Path, key_set: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    # A mounted Kubernetes Secret (root may write anywhere else, so the failure is made).
    monkeypatch.setattr(keyroutes, "write_key_file", read_only)
    before = keyring.current
    response = await http.post(ROTATE_PATH, json={}, headers=_auth(ADMIN))
    assert response.status == 409
    assert "edit it there" in (await response.json())["message"]
    assert keyring.current == before
    assert keyring.path is not None
    assert not (keyring.path.parent / MARKER).exists(), "refused, not interrupted"
    # The key that is already current in the file: sealed again, nothing written.
    response = await http.post(ROTATE_PATH, json={"keyId": before}, headers=_auth(ADMIN))
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["documentsResealed"] == 3


async def test_an_unknown_key_id_is_refused(client: tuple[TestClient[Any, Any], Any]) -> None:
    http, _ = client
    response = await http.post(ROTATE_PATH, json={"keyId": "k-nope"}, headers=_auth(ADMIN))
    assert response.status == 400
    assert "k-nope" in (await response.json())["message"]


async def test_a_body_is_read_as_every_writes_body(
    client: tuple[TestClient[Any, Any], Any], keyring: Keyring
) -> None:
    """A malformed body was a 500 (request.json's error escaped), a typo'd `prnue` was
    ignored (the old keys kept) and dryRun=All was ignored (the key rotated for real)."""
    http, _ = client
    before = keyring.current
    json_type = {**_auth(ADMIN), "Content-Type": "application/json"}
    for body, params, field in (
        (b"{", {}, ""),
        (b'{"prnue": true}', {}, "prnue"),
        (b'{"prune": true, "prune": false}', {}, "prune"),
        (b"{}", {"dryRun": "All"}, "dryRun"),
        (b'{"prune": "yes"}', {}, "prune"),
    ):
        response = await http.post(ROTATE_PATH, data=body, params=params, headers=json_type)
        answer = await response.json()
        assert 400 <= response.status < 500, (body, answer)
        assert [c["field"] for c in answer.get("details", {}).get("causes", [])][:1] == (
            [field] if field else []
        ), answer
    assert keyring.current == before  # nothing rotated
    response = await http.post(
        ROTATE_PATH,
        data=b'{"prnue": true}',
        params={"fieldValidation": "Warn"},
        headers=json_type,
    )
    assert response.status == 200, await response.text()
    assert response.headers.getall("Warning") == ['299 - "unknown field \\"prnue\\""']
    assert keyring.current != before


def test_the_key_file_defaults_to_the_state_directory(tmp_path: Path) -> None:
    config = DaemonConfig(state_dir=tmp_path)
    assert config.encryption_keys_path == tmp_path / "encryption-keys.yaml"
    given = DaemonConfig(state_dir=tmp_path, encryption_key_file=tmp_path / "k.yaml")
    assert given.encryption_keys_path == tmp_path / "k.yaml"


class ConditionWhileSealing(FakeSealedRegistry):
    """Reads the node's condition while sealing; ``fail`` makes the reseal raise."""

    def __init__(self, keyring: Keyring, state_dir: Path) -> None:
        super().__init__(keyring)
        self.state_dir = state_dir
        self.seen: list[tuple[str, str | None]] = []
        self.fail = False

    async def reseal(self) -> tuple[int, list[str]]:
        condition = rotation_condition(self.state_dir, datetime.now(UTC))
        self.seen.append((condition.status, condition.reason))
        if self.fail:
            raise Unavailable("etcd is unavailable")
        return await super().reseal()


async def test_the_node_condition_says_a_rotation_cut_short_until_one_completes(
    tmp_path: Path, keyring: Keyring
) -> None:
    """KeyRotationInterrupted, which the heartbeat writes into the Node (so that `kukectl
    describe node` shows it): False with no marker; True with the marker of a rotation cut
    short, naming both keys and the command that finishes it; False while a rotation seals
    (its own marker is no sign of one cut short) and once it completes; True again when a
    reseal fails and leaves the marker."""
    registry = ConditionWhileSealing(keyring, tmp_path)
    routes = KeyRotationRoutes(
        registry=registry,  # type: ignore[arg-type]
        keyring=keyring,
        state_dir=tmp_path,
        metrics_registry=CollectorRegistry(),
    )
    now = datetime.now(UTC)
    clear = rotation_condition(tmp_path, now)
    assert (clear.type, clear.status) == (KEY_ROTATION_INTERRUPTED, "False")
    assert clear.last_transition_time == now

    marker = tmp_path / MARKER
    started = "2026-12-06T07:00:00+00:00"
    body = {"previousKeyId": "k-old", "currentKeyId": keyring.current, "startedAt": started}
    marker.write_text(json.dumps(body))
    cut = rotation_condition(tmp_path, now)
    assert (cut.status, cut.reason) == ("True", "KeyRotationCutShort")
    assert cut.message is not None
    assert f"kukectl secret rotate-key --key-id {keyring.current}` through this node" in (
        cut.message
    )
    assert f"from k-old to {keyring.current}, started {started}" in cut.message
    assert str(marker) in cut.message

    await routes._rotate(keyring.current, False)
    assert registry.seen == [("False", "KeyRotationSealing")]
    assert not marker.exists()
    assert rotation_condition(tmp_path, now).status == "False"

    registry.fail = True
    with pytest.raises(Unavailable):
        await routes._rotate(keyring.current, False)
    assert registry.seen[-1] == ("False", "KeyRotationSealing")
    assert rotation_condition(tmp_path, now).status == "True"  # the marker stays

    marker.write_text("not json")  # a marker of another shape still says it, generically
    garbled = rotation_condition(tmp_path, now)
    assert garbled.status == "True"
    assert "rotate-key --key-id CURRENT" in (garbled.message or "")
    marker.unlink()
    marker.mkdir()  # there but unreadable (EISDIR): said as well
    unreadable = rotation_condition(tmp_path, now)
    assert (unreadable.status, unreadable.reason) == ("True", "KeyRotationCutShort")
