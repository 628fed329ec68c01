"""What the cell controller reports of one container: its status and how its last run ended.

Kept apart from the container's spec (`container`): a container's status is written by
kukeond into its cell's `status.containers`, never by users. The shape follows
Kubernetes' ContainerStatus where kukeon has the same notion: the current run (``state``,
``pid``, ``startTime``), the wait for a restart (``state: Waiting``, reason
``CrashLoopBackOff``), and the run before (``lastState``, Kubernetes'
``lastState.terminated``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from kukeon.api.meta import (
    INT64_MAX,
    INT64_MIN,
    Bool,
    Int,
    KukeonModel,
    NullableList,
    OptionalString,
    Timestamp,
)
from kukeon.api.observed import tolerant_word
from kukeon.api.probes import ProbeStatus
from kukeon.api.states import ContainerState, ContainerStateField

CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
"""The reason of a container waiting out its restart back-off (state ``Waiting``), and of
its cell meanwhile: Kubernetes' word for it, which kubectl users look for."""

IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
"""The reason of a container whose new image (its spec changed in place) cannot be had
while its container of the old one runs on, and of its cell meanwhile (Kubernetes' word
for a container waiting for its image, retried with back-off)."""


class ContainerTerminated(KukeonModel):
    """How a container's last run ended (``lastState``, as Kubernetes'
    ``lastState.terminated``): written when it ended with a restart to follow, kept once it
    is restarted."""

    exit_code: Int = Field(ge=INT64_MIN, le=INT64_MAX)
    signal: OptionalString = None
    reason: OptionalString = None
    """``Completed``, ``Error``, ``OOMKilled`` or ``TaskLost`` (its shim died)."""
    message: OptionalString = None
    """The last line the run wrote, for a failed exit (as Kubernetes'
    ``FallbackToLogsOnError``), or the probe's failure that stopped it."""
    started_at: Timestamp = None
    finished_at: Timestamp = None


class PublishedPort(KukeonModel):
    """One entry of a container's `ports` as published on the node (in its status)."""

    host_ip: str = Field(default="0.0.0.0", alias="hostIP")
    """The host address it is published on; 0.0.0.0 is every IPv4 address of the node."""
    host_port: Int = Field(ge=1, le=65535)
    container_port: Int = Field(ge=1, le=65535)
    protocol: Annotated[Literal["tcp", "udp"], tolerant_word()] = "tcp"


def _zero_as_unset(value: Any) -> Any:
    return None if type(value) is int and value == 0 else value


class ContainerStatus(KukeonModel):
    """What the cell controller last observed of one container (in the cell's status)."""

    id: str
    name: OptionalString = None
    state: ContainerStateField = ContainerState.PENDING
    """``Running`` (its task runs; whether it serves is ``ready``; ``Ready`` in documents
    written before, read as ``Running``), ``Paused``, ``Stopped`` or ``Failed`` (it ended,
    for good or until a start), ``Waiting`` (it ended and waits out its restart back-off:
    reason ``CrashLoopBackOff``, the back-off in ``message``, the run that ended in
    ``lastState``), ``Pending`` (not started yet)."""
    pid: Int | None = Field(default=None, ge=0, le=INT64_MAX)
    """Host PID of the running task."""
    exit_code: Int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    exit_signal: OptionalString = None
    restart_count: Int = Field(default=0, ge=0, le=INT64_MAX)
    backoff_restarts: Annotated[Int | None, BeforeValidator(_zero_as_unset)] = Field(
        default=None, ge=1, le=INT64_MAX
    )
    """Restarts since the container was created or last ran 10 minutes before exiting:
    where the default restart back-off stands (the next exit after a short run waits 10 s
    doubled ``backoffRestarts - 1`` times, at most 300 s; unset (0) it restarts at once).
    Left out at 0, so a kukeond of an earlier version reads the cells that are not in a
    crash loop."""
    image: OptionalString = None
    ephemeral_storage_limit_bytes: Int | None = Field(default=None, ge=0, le=INT64_MAX)
    """The ephemeral-storage limit in force (kukeond stops the container past it): its own
    `resources.ephemeralStorageLimitBytes`, its space's default, or its realm's
    `spec.limits.containerEphemeralStorageBytes` (which also caps the others); unset: none."""
    reason: OptionalString = None
    message: OptionalString = None
    created_at: Timestamp = None
    start_time: Timestamp = None
    finish_time: Timestamp = None
    restart_time: Timestamp = None
    """When the restart a ``Waiting`` container waits for is due (its message says it
    too); unset otherwise: a run's start is ``startTime``."""
    last_state: ContainerTerminated | None = None
    """The end of the run before the current one (or before the wait for a restart)."""
    ports: NullableList[PublishedPort] = Field(default_factory=list)
    """Its `ports` published on the node, all to the cell's address (the cell shares one
    network namespace): empty until they are."""
    started: Bool = False
    """It runs and its startup probe, if any, has succeeded."""
    ready: Bool = False
    """It runs, has started, and its readiness probe, if any, passes."""
    probes: NullableList[ProbeStatus] = Field(default_factory=list)
    """The last result of each of its probes."""
