"""Health probes of a container: startup, readiness and liveness, shaped as Kubernetes'.

A user copies a probe from a pod spec and it loads here unchanged, as long as it uses what
kukeond implements: exactly one of ``exec``, ``httpGet`` or ``tcpSocket``, and the timing
fields. Named ports (``port: http``), ``httpGet.host``, ``grpc`` and probe-level
``terminationGracePeriodSeconds`` on a readiness probe are refused by name rather than
accepted and ignored: kukeond probes the cell's own address, never another host.

What the results do (see ``controllers.probing``): liveness and readiness wait until the
startup probe has succeeded; a failed startup or liveness probe stops the container (the
restart policy decides what follows); readiness takes the container, and the cell, out of
Ready without restarting anything.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from kukeon.api.meta import Int, KukeonModel, NullableList, OptionalString, Timestamp
from kukeon.api.observed import tolerant_enum

NonEmptyString = Annotated[str, Field(min_length=1)]

PROBE_PERIOD_DEFAULT = 10
PROBE_TIMEOUT_DEFAULT = 1
PROBE_FAILURE_THRESHOLD_DEFAULT = 3
PROBE_SECONDS_MAX = 3600
"""The longest delay, period, timeout or grace a probe may ask for (one hour)."""
PROBE_THRESHOLD_MAX = 1000
PROBE_OUTPUT_MAX = 1024
"""How much of a probe's output or reply its status message keeps."""


class ProbeKind(StrEnum):
    STARTUP = "startup"
    READINESS = "readiness"
    LIVENESS = "liveness"


class ProbeResult(StrEnum):
    SUCCESS = "Success"
    FAILURE = "Failure"
    UNKNOWN = "Unknown"
    """Not probed yet (its initial delay, or waiting for the startup probe)."""


def _port_number(value: Any) -> Any:
    if isinstance(value, str) and not value.isdigit():
        raise ValueError(
            f"named ports are not supported ({value!r}): give the container's port number"
        )
    if isinstance(value, str):
        return int(value)
    return value


ProbePort = Annotated[Int, BeforeValidator(_port_number), Field(ge=1, le=65535)]


class ExecAction(KukeonModel):
    """Run a command inside the container (as its own process user); exit 0 is success."""

    command: list[NonEmptyString] = Field(min_length=1)
    """The program and its arguments (no shell: write `[sh, -c, "..."]` for one)."""


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class HTTPHeader(KukeonModel):
    name: NonEmptyString
    """An HTTP field name (a token: letters, digits and ``!#$%&'*+.^_`|~-``)."""
    value: str = ""
    """The field's value, on one line."""

    @field_validator("name")
    @classmethod
    def _a_token(cls, name: str) -> str:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not an HTTP header name")
        return name

    @field_validator("value")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(c in value for c in "\r\n\0"):
            raise ValueError("must not contain line breaks or NUL")
        return value


class HTTPGetAction(KukeonModel):
    """GET ``scheme://<cell address>:port/path``; a status in [200, 400) is success.

    The cell's address is its bridge IP, or 127.0.0.1 for a hostNetwork cell. As kubelet,
    a redirect to that address is followed (up to 10; the reply at the end decides), one
    to another host is not (its 3xx is a success). ``https`` does not verify the
    certificate (Kubernetes does not either).
    """

    path: str = "/"
    """The request's path (and query), `/` when unset."""
    port: ProbePort
    """The container's port, a number (named ports are not supported)."""
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    """HTTP or HTTPS (the certificate is not verified)."""
    http_headers: NullableList[HTTPHeader] = Field(default_factory=list)
    """Headers sent with the request."""

    @model_validator(mode="after")
    def _path_is_absolute(self) -> HTTPGetAction:
        if not self.path.startswith("/"):
            self.path = "/" + self.path
        if any(c in self.path for c in "\r\n "):
            raise ValueError("path must not contain spaces or line breaks")
        return self


class TCPSocketAction(KukeonModel):
    """Open a TCP connection to the cell's address on ``port``; connecting is success."""

    port: ProbePort
    """The container's port, a number."""


def _seconds(low: int) -> Any:
    return Field(ge=low, le=PROBE_SECONDS_MAX)


class Probe(KukeonModel):
    """One probe: what to check and how often."""

    exec: ExecAction | None = None
    """Run a command in the container: exit 0 passes (exactly one of exec, httpGet and
    tcpSocket)."""
    http_get: HTTPGetAction | None = None
    """GET a URL of the cell's address: a status in [200, 400) passes."""
    tcp_socket: TCPSocketAction | None = None
    """Connect to a port of the cell's address: connecting passes."""
    initial_delay_seconds: Annotated[Int, _seconds(0)] = 0
    """Seconds after the container started before the first probe."""
    period_seconds: Annotated[Int, _seconds(1)] = PROBE_PERIOD_DEFAULT
    """Seconds between two probes (default 10, at most 3600)."""
    timeout_seconds: Annotated[Int, _seconds(1)] = PROBE_TIMEOUT_DEFAULT
    """Seconds a probe may take before it counts as failed (default 1)."""
    success_threshold: Annotated[Int, Field(ge=1, le=PROBE_THRESHOLD_MAX)] = 1
    """Consecutive successes after a failure to count as passing (1 for liveness/startup)."""
    failure_threshold: Annotated[Int, Field(ge=1, le=PROBE_THRESHOLD_MAX)] = (
        PROBE_FAILURE_THRESHOLD_DEFAULT
    )
    """Consecutive failures that make the probe fail (default 3)."""
    termination_grace_period_seconds: Annotated[Int | None, _seconds(1)] = None
    """The grace between SIGTERM and SIGKILL when this probe stops the container (liveness
    and startup only); 10 seconds when unset."""

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        given = [
            name
            for name, value in (
                ("exec", self.exec),
                ("httpGet", self.http_get),
                ("tcpSocket", self.tcp_socket),
            )
            if value is not None
        ]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"exactly one of exec, httpGet or tcpSocket is required (got {found})")
        return self

    def action(self) -> str:
        """What kind of check this is, in manifest spelling."""
        if self.exec is not None:
            return "exec"
        return "httpGet" if self.http_get is not None else "tcpSocket"


class ProbeStatus(KukeonModel):
    """The last result of one probe of a container, as kukeond last reported it."""

    probe: Annotated[ProbeKind, tolerant_enum(ProbeKind)]
    result: Annotated[ProbeResult, tolerant_enum(ProbeResult)] = ProbeResult.UNKNOWN
    message: OptionalString = None
    """Why it failed (truncated output, the HTTP status, the connection error)."""
    consecutive_failures: Int = Field(default=0, ge=0)
    last_transition_time: Timestamp = None
