"""What a container's spec digest sees of its OCI spec.

The digest (``controllers.cellstate.spec_digest``) is compared at every pass: a different
one re-creates the container. When kukeon changes what it puts in every container's spec,
the digest must still see the spec as the kukeond before built it, or the first pass of an
upgraded kukeond re-creates every running container of the node (docs/install.md: an
upgrade interrupts no workload). A container made before keeps what it was made with until
something else (a change of its own spec) re-creates it.
"""

from __future__ import annotations

from typing import Any

from kukeon.api import ContainerSpec
from kukeon.runtime.containerd.spec import SpecContext


def digest_view(
    spec: dict[str, Any], container: ContainerSpec, context: SpecContext
) -> dict[str, Any]:
    """``spec`` as the container's spec digest sees it: without the ``HOSTNAME`` kukeon
    sets by default (since stop 55), and for a ``hostNetwork`` container without the node's
    host name and files (`_as_before_node_identity`)."""
    view = _without_default_hostname(spec, container, context)
    if container.host_network:
        view = _as_before_node_identity(view, context)
    return view


def _without_default_hostname(
    spec: dict[str, Any], container: ContainerSpec, context: SpecContext
) -> dict[str, Any]:
    """Without the ``HOSTNAME`` kukeon sets by default: one made before runs on without it.
    A ``HOSTNAME`` of the image's, the container's env or a secret's is the container's
    own: in the digest."""
    own = (
        *(entry.partition("=")[0] for entry in context.image_config.env),
        *(entry.partition("=")[0] for entry in container.env),
        *context.secret_env,
    )
    if not context.hostname or "HOSTNAME" in own:
        return spec
    defaulted = f"HOSTNAME={context.hostname}"
    process = dict(spec["process"])
    process["env"] = [entry for entry in process["env"] if entry != defaulted]
    return {**spec, "process": process}


def _as_before_node_identity(spec: dict[str, Any], context: SpecContext) -> dict[str, Any]:
    """A hostNetwork container's spec as kukeond built it before it had the node's identity
    (stop 55): the cell's name as host name, the image's own /etc/hosts and /etc/hostname.
    The node's host name is then in no digest either: renaming the node re-creates nothing
    (docker's and the CRI's containers keep the name they were made with, too)."""
    node_files = {("/etc/hosts", context.hosts_file), ("/etc/hostname", context.hostname_file)}
    mounts = [
        mount
        for mount in spec["mounts"]
        if (mount.get("destination"), mount.get("source")) not in node_files
    ]
    return {**spec, "hostname": context.cell, "mounts": mounts}
