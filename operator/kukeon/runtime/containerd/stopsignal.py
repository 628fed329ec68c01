"""The signal that asks a container to stop: its own `stopSignal`, its image's
`StopSignal`, else SIGTERM.

Images say how they want to be stopped (postgres: SIGINT, a fast shutdown that never leaves
a recovery to do; nginx: SIGQUIT, a graceful one), and docker and the CRI runtimes honour it.
The container's create records it as a containerd label, so every stop (a pass, a liveness
probe, the orphan collector, after a kukeond restart) sends the same signal.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from kukeon.api.signals import parse_signal, signal_name
from kukeon.runtime.containerd.errors import ContainerdError

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient

LABEL_STOP_SIGNAL: Final = "kukeon.io/stop-signal"


def parse_stop_signal(text: str) -> int | None:
    """A signal's name (``SIGQUIT``, ``SIGRTMIN+3``) or number, as its number (an image's
    malformed StopSignal falls back to SIGTERM rather than failing the container)."""
    return parse_signal(text)


def stop_signal_label(image_stop_signal: str) -> dict[str, str]:
    """The label recording a container's stop signal (its own ``stopSignal``, else its
    image's; none for SIGTERM or an unknown name)."""
    found = parse_stop_signal(image_stop_signal) if image_stop_signal else None
    if found is None or found == signal.SIGTERM:
        return {}
    return {LABEL_STOP_SIGNAL: signal_name(found)}


def stop_signal_of(labels: Mapping[str, str]) -> int:
    """The signal a container with these labels is stopped with."""
    found = parse_stop_signal(labels.get(LABEL_STOP_SIGNAL, ""))
    return found if found is not None else int(signal.SIGTERM)


async def container_stop_signal(
    containerd: ContainerdClient, namespace: str, container_id: str
) -> int:
    """The stop signal recorded on the container (SIGTERM when it is gone or has none)."""
    try:
        found = await containerd.containers(namespace).get(container_id)
    except ContainerdError:
        return int(signal.SIGTERM)
    return stop_signal_of(found.labels)
