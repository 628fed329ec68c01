"""While etcd is away, kukeond's API answers 503 at once, not after the retry budget.

Before, every request retried for the whole budget (20 s by default) before its 503, each
holding a handler meanwhile, although kukeond knew etcd was away. Now, once one request
has spent its budget, later ones are refused at once with ``Retry-After`` (nothing was
sent: a write was not applied), until a probe finds etcd back. The budget is shortened
here (``etcd_config``) so the test does not wait 20 s for the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.daemon import app
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd
from tests.fixtures.etcd import running_etcd_server
from tests.fixtures.kukeond import Kukeond, started_kukeond
from tests.integration.daemon.test_unreadable_cells import until

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
RETRY_SECONDS = 3.0
FAST_SECONDS = 1.5


@pytest.fixture
def short_retry_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    original = app.etcd_config

    def shorter(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(original(*args, **kwargs), retry_timeout=RETRY_SECONDS)

    monkeypatch.setattr(app, "etcd_config", shorter)


async def timed(
    http: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any], str | None, float]:
    """Status, JSON body, Retry-After header and seconds taken."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with http.request(method, url, json=body) as response:
        document = await response.json(content_type=None)
        return response.status, document, response.headers.get("Retry-After"), loop.time() - started


def a_space(k: Kukeond, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Space",
        "metadata": {"name": name},
        "spec": {"realmId": k.realm},
    }


async def test_requests_are_refused_at_once_while_etcd_is_away(
    tmp_path: Path,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
    short_retry_budget: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_etcd_server() as etcd:
        async with started_kukeond(
            tmp_path,
            etcd=etcd,
            prefix="/kukeon",
            containerd=containerd_daemon,
            image=containerd_test_image,
        ) as k:
            await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
            spaces = f"{API}/realms/{k.realm}/spaces"
            connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
            async with aiohttp.ClientSession(connector=connector) as http:
                assert (await timed(http, "GET", spaces))[0] == 200
                assert etcd.member.process is not None
                pid = etcd.member.process.pid
                caplog.clear()
                caplog.set_level(logging.INFO)
                os.kill(pid, signal.SIGSTOP)
                try:
                    # The first spends the budget (or finds it spent by a controller's).
                    first, _, _, took = await timed(http, "GET", spaces)
                    assert first == 503
                    assert took < RETRY_SECONDS + 5
                    for method, body in [("GET", None), ("POST", a_space(k, "s9"))] * 3:
                        status, document, retry_after, took = await timed(
                            http, method, spaces, body
                        )
                        assert (status, retry_after) == (503, "1"), document
                        assert took < FAST_SECONDS, f"{method} took {took:.1f}s"
                        assert document["kind"] == "Status"
                        assert document["reason"] == "ServiceUnavailable"
                        assert "etcd is unavailable" in document["message"]
                        assert document["details"]["retryAfterSeconds"] == 1
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)

                async def answers() -> bool:
                    return (await timed(http, "GET", spaces))[0] == 200

                await until(answers, within=10)
                health_lines = [
                    r.getMessage() for r in caplog.records if r.name == "kukeon.store.health"
                ]
                assert len(health_lines) == 2, health_lines  # it began, it ended
                # The refused create was not applied: it is created now, once.
                assert (await timed(http, "POST", spaces, a_space(k, "s9")))[0] == 201
