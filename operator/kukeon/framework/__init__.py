"""The operator framework: handlers, per-object queues, retries, finalizers, leases.

Inspired by kopf; the transport is the etcd registry (``kukeon.store``), never the host.
Controllers register async handlers on an ``Operator`` (``operator``); the framework
lists and watches each kind (``watching``), keeps one serialized, coalescing slot per
object (``queueing``), runs the handlers and keeps the finalizer bookkeeping
(``processing``), retries failures with backoff (``backoff``), writes status by CAS
(``status``), supervises every long-lived task (``aiotasks``), elects leaders and keeps
node heartbeats with etcd leases (``leases``), writes Events without blocking a handler
(``recorder``), holds every host-changing pass while another process holds this node's
name (``converging``), and reports Prometheus metrics
(``metrics``). ``testing.OperatorRunner`` runs an operator in-process for tests.

This package may import ``kukeon.api`` and ``kukeon.store``, nothing else of the project.
"""

from kukeon.framework.aiotasks import SupervisedTask, Supervisor, TasksDown
from kukeon.framework.backoff import base_delay, retry_delay
from kukeon.framework.converging import ConvergeGate
from kukeon.framework.errors import (
    HandlerError,
    PermanentError,
    Requeue,
    TemporaryError,
    WaitingError,
)
from kukeon.framework.heartbeats import NodeNameTaken, Peer, alive_peers
from kukeon.framework.intents import (
    Cause,
    HandlerContext,
    OperatorContext,
    default_finalizer,
)
from kukeon.framework.leases import LeaderInfo, LeaseSession
from kukeon.framework.metrics import FrameworkMetrics, metrics_for
from kukeon.framework.operator import Operator, OperatorError
from kukeon.framework.protocols import Store
from kukeon.framework.recorder import EventRecorder, EventSink
from kukeon.framework.settings import Settings
from kukeon.framework.status import patch_status
from kukeon.framework.testing import OperatorRunner

__all__ = [
    "Cause",
    "ConvergeGate",
    "EventRecorder",
    "EventSink",
    "FrameworkMetrics",
    "HandlerContext",
    "HandlerError",
    "LeaderInfo",
    "LeaseSession",
    "NodeNameTaken",
    "Operator",
    "OperatorContext",
    "OperatorError",
    "OperatorRunner",
    "Peer",
    "PermanentError",
    "Requeue",
    "Settings",
    "Store",
    "SupervisedTask",
    "Supervisor",
    "TasksDown",
    "TemporaryError",
    "WaitingError",
    "alive_peers",
    "base_delay",
    "default_finalizer",
    "metrics_for",
    "patch_status",
    "retry_delay",
]
