"""The controller tests' kukeond: the shared fixture with short host timings and a secret env.

Tests here stop many tasks (`sh` and `sleep` as PID 1 ignore SIGTERM), so a 10 s grace
per stop would dominate the run; the daemon's own knobs (`stopGraceSeconds`,
`parentWaitSeconds`) are set short on the running controllers. `SECRET_ENV` is put in the
environment before kukeond starts, because kukeond reads `fromEnv` secrets from its own
environment as it was at start.
"""

from __future__ import annotations

import secrets

import pytest

from tests.fixtures.kukeond import Kukeond, set_host_timings

SECRET_ENV = "KUKEOND_IT_SECRET"
STOP_GRACE_SECONDS = 1.0
PARENT_WAIT_SECONDS = 0.2


@pytest.fixture
def secret_env_value(monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"env-secret-{secrets.token_hex(8)}"
    monkeypatch.setenv(SECRET_ENV, value)
    return value


def speed_up(k: Kukeond) -> None:
    """Short stop grace and parent polling on the running controllers."""
    set_host_timings(
        k.daemon, stop_grace_seconds=STOP_GRACE_SECONDS, parent_wait_seconds=PARENT_WAIT_SECONDS
    )


@pytest.fixture
async def kukeond(secret_env_value: str, kukeond: Kukeond) -> Kukeond:
    speed_up(kukeond)
    return kukeond
