"""What a container of a cell is created from: its image, its secrets, its OCI spec and digest.

Before the cell controller can decide anything about a container it needs the spec the
container would be created from now: the space's defaults applied, the image present in
the realm's namespace (imported or pulled), the container's secrets resolved and staged,
the host's device nodes it asks for looked up (off the event loop: `/dev` is walked for a
privileged container), and the OCI runtime spec built and digested. The digest is what
the planner compares with the one the existing container was created from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kukeon.api import (
    ContainerSpec,
    EventReason,
    Realm,
    Space,
    VolumeKind,
    apply_space_defaults_to_container,
)
from kukeon.api.defaults import apply_realm_ephemeral_storage
from kukeon.runtime.bindpins import Pin, binds_directory, pins_of
from kukeon.runtime.containerd.spec import (
    CgroupNesting,
    HostDevice,
    SpecContext,
    build_runtime_spec,
    current_hard_rlimits,
    inspect_host_device,
    list_host_devices,
)
from kukeon.runtime.containerd.specdigest import digest_view
from kukeon.runtime.containerd.ttyinit import SHELL, wrapper_needed
from kukeon.runtime.containerd.types import RegistryCredential
from kukeon.runtime.idranges import IdRange
from kukeon.runtime.network.hosts import write_node_files
from kukeon.runtime.network.resolvconf import HOST_RESOLV_CONF
from kukeon.runtime.network.userns import userns_path
from kukeon.store import Registry

from .cellfiles import (
    CellFiles,
    StagedSecrets,
    own_secret_files,
    resolve_secret_refs,
    stage_secrets,
)
from .cellplan import Note
from .cellstate import containerd_container_id, spec_digest
from .cellusers import host_id
from .images import ImageProvider, InvalidImageReferenceError, ReadyImage

logger = logging.getLogger(__name__)

CellKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class HostFacts:
    """What the spec needs to know about this host, read once at start."""

    hard_rlimits: Mapping[str, int]
    environ: Mapping[str, str]

    @classmethod
    def read(cls) -> HostFacts:
        return cls(hard_rlimits=current_hard_rlimits(), environ=dict(os.environ))


@dataclass(frozen=True)
class CellPlace:
    """Where the cell's containers live on this host (the same for all of them)."""

    key: CellKey
    namespace: str
    files: CellFiles
    cgroup_parent: str
    netns_path: str | None
    credentials: Sequence[RegistryCredential]
    ignored_credentials: tuple[str, ...] = ()
    """What to say, when a pull starts, of the realm's credentials sent to no registry."""
    cgroup_nesting: CgroupNesting | None = None
    """Set for a nestedCgroupRuntime cell: each container's cgroup is delegated to it."""
    id_range: IdRange | None = None
    """Set for a `hostUsers: false` cell: its containers' user namespace maps to this range."""
    ephemeral_storage_bytes: int | None = None
    """The realm's `spec.limits.containerEphemeralStorageBytes`: each container's default
    and ceiling."""
    image_storage_bytes: int | None = None
    """The realm's `spec.quota.imageStorageBytes` (None: unset): bounds the images a pull
    or import for the cell adds to the realm's namespace."""
    bind_roots: tuple[str, ...] = ()
    """The allowed directories whose bind sources kukeond opens itself, no link followed
    below them (`HostSettings.bind_roots`)."""

    def effective(self, space: Space, container: ContainerSpec) -> ContainerSpec:
        """The container's effective spec: its space's defaults, then its realm's ceiling."""
        defaulted = apply_space_defaults_to_container(space, container)
        return apply_realm_ephemeral_storage(defaulted, self.ephemeral_storage_bytes)

    def container_name(self, container: str) -> str:
        """The containerd container id of the cell's container ``container``."""
        _realm, space, stack, cell = self.key
        return containerd_container_id(space=space, stack=stack, cell=cell, container=container)


def container_storage_ceiling(realm: Realm) -> int | None:
    """The realm's `spec.limits.containerEphemeralStorageBytes` (None: unset)."""
    limits = realm.spec.limits
    return limits.container_ephemeral_storage_bytes if limits is not None else None


@dataclass(frozen=True)
class BuiltContainer:
    """A container's effective spec and the OCI spec it is created from."""

    effective: ContainerSpec
    name: str
    """Its containerd container id."""
    image: str
    """The image's name in the realm's namespace."""
    spec: dict[str, Any]
    digest: str
    wrapped: bool
    """It runs under the tty wrapper (its state directory is prepared after creation)."""
    stop_signal: str = ""
    """The image's `StopSignal` (recorded as a label at create, not in the spec: its digest
    stays what it was)."""
    binds: Path | None = None
    """Where its pins lie (`bindpins.binds_directory`); None: it has no directory there."""
    pins: tuple[Pin, ...] = ()
    """Its bind sources kukeond binds itself before each task is created (`bindpins`)."""

    @property
    def user(self) -> tuple[int, int]:
        user = self.spec["process"]["user"]
        return int(user["uid"]), int(user["gid"])

    @property
    def host_user(self) -> tuple[int, int]:
        """`user` as the host sees it: the ids it maps to in a user namespace's range."""
        uid, gid = self.user
        linux = self.spec.get("linux", {})
        return host_id(uid, linux.get("uidMappings")), host_id(gid, linux.get("gidMappings"))


@dataclass(frozen=True)
class NetworkIdentity:
    """A container's host name and the files mounted at /etc/hosts, /etc/hostname and
    /etc/resolv.conf (None: the image's own, on a node without one)."""

    hostname: str
    hosts_file: str
    hostname_file: str
    resolv_conf_file: str | None


def _node_identity(files: CellFiles) -> NetworkIdentity:
    """On the host's network, the node's (docker's `--network host`, the CRI's hostNetwork
    pod): its host name, a copy of its /etc/hosts and its own resolv.conf, whose loopback
    resolvers answer there (none if it has none). Blocking."""
    node_hostname = socket.gethostname()
    write_node_files(
        hosts=files.node_hosts, hostname=files.node_hostname, node_hostname=node_hostname
    )
    resolv_conf = str(HOST_RESOLV_CONF) if HOST_RESOLV_CONF.exists() else None
    return NetworkIdentity(
        node_hostname, str(files.node_hosts), str(files.node_hostname), resolv_conf
    )


async def _network_identity(place: CellPlace, *, host_network: bool) -> NetworkIdentity:
    """The cell's name and rendered files (`runtime.network.hosts`, `resolvconf`); on the
    host's network, the node's (`_node_identity`, in a thread)."""
    if host_network:
        return await asyncio.to_thread(_node_identity, place.files)
    files = place.files
    return NetworkIdentity(
        place.key[3], str(files.hosts), str(files.hostname), str(files.resolv_conf)
    )


def _userns_path(place: CellPlace) -> str | None:
    """The user namespace owning the cell's network namespace (`hostUsers: false`)."""
    if place.id_range is None or place.netns_path is None:
        return None
    return str(userns_path(Path(place.netns_path)))


def _pinned_sources(
    place: CellPlace, container: ContainerSpec, spec: dict[str, Any]
) -> tuple[Pin, ...]:
    """The container's bind sources under an allowed directory, each in ``spec`` replaced by
    the path kukeond binds it at (so a restart of an existing container never mounts the
    source as written: the digest changes with it, and the container is made again)."""
    sources = [v.source if v.kind == VolumeKind.BIND else None for v in container.volumes]
    directory = binds_directory(place.files.state_dir, place.key, container.id)
    pins = pins_of(sources, place.bind_roots, directory)
    for position, item in pins.items():
        target = posixpath.normpath(container.volumes[position].target)
        for mount in spec.get("mounts", []):
            if mount.get("type") == "bind" and (mount["destination"], mount["source"]) == (
                target,
                item.source,
            ):
                mount["source"] = str(item.staging)
    return tuple(pins.values())


def host_devices(
    paths: Sequence[str], *, privileged: bool
) -> tuple[dict[str, HostDevice], list[HostDevice]]:
    """The device nodes a container names, and every one of /dev for a privileged one
    (blocking: `os.stat`, `os.walk`; run it in a thread)."""
    devices = {path: found for path in paths if (found := inspect_host_device(path))}
    return devices, (list_host_devices() if privileged else [])


class ContainerBuilder:
    """Builds each container's runtime spec for the cell controller."""

    def __init__(
        self,
        *,
        registry: Registry,
        images: ImageProvider,
        facts: HostFacts,
        note: Callable[[Note], None],
    ) -> None:
        self.registry = registry
        self.images = images
        self.facts = facts
        self.note = note

    async def _kept_image(
        self, namespace: str, name: str, error: InvalidImageReferenceError
    ) -> ReadyImage:
        """The image container `name` was created from, for a cell whose image no longer
        parses (stored before the API refused such names, resolved by an older node): its
        container keeps running, the problem said in a warning, until the cell names a
        reference. Without such a container (or its image record) the error stands."""
        kept = await self.images.created_from(namespace=namespace, container=name)
        if kept is None:
            raise error
        self.note(
            Note(
                EventReason.FAILED,
                f"InvalidImageReference: {error}; container {name} keeps the image it was "
                f"created from ({kept.name}) until the cell names an image reference",
                warning=True,
            )
        )
        return kept

    async def _image(
        self,
        place: CellPlace,
        image: str,
        name: str,
        on_pull: Callable[[str], Awaitable[None]],
    ) -> ReadyImage:
        """The container's image in the realm's namespace, imported or pulled if needed
        (within the realm's image storage limits)."""
        try:
            return await self.images.ensure(
                namespace=place.namespace,
                image=image,
                credentials=place.credentials,
                on_pull=on_pull,
                realm_limit=place.image_storage_bytes,
                waiter=place.key,
            )
        except InvalidImageReferenceError as error:
            return await self._kept_image(place.namespace, name, error)

    def _note_pull(self, place: CellPlace, image: str) -> None:
        """A pull starts: said, with the realm's credentials it will not send."""
        self.note(Note(EventReason.PULLING, f"pulling image {image}"))
        for why in place.ignored_credentials:
            self.note(Note(EventReason.CREDENTIAL_IGNORED, why, warning=True))

    async def build(
        self,
        place: CellPlace,
        container: ContainerSpec,
        space: Space,
        *,
        on_pull: Callable[[str], Awaitable[None]] | None = None,
    ) -> BuiltContainer:
        effective = place.effective(space, container)
        name = place.container_name(container.id)
        pulled = False

        async def pulling(image: str) -> None:
            nonlocal pulled
            pulled = True
            self._note_pull(place, image)
            if on_pull is not None:
                await on_pull(image)

        image = await self._image(place, effective.image, name, pulling)
        if pulled or image.pulled:
            self.note(Note(EventReason.PULLED, f"pulled image {effective.image}"))
        resolved = await resolve_secret_refs(self.registry, place.key, effective)
        secrets = await stage_secrets(
            effective, files=place.files, environ=self.facts.environ, resolved=resolved
        )
        # tty.onInit/logFile: the command runs under a /bin/sh wrapper the image must have.
        wrapped = effective.attachable and wrapper_needed(effective.tty)
        has_shell = (
            await self.images.has_file(namespace=place.namespace, image=image.name, path=SHELL)
            if wrapped
            else None
        )
        devices, every_device = (
            await asyncio.to_thread(
                host_devices, effective.devices, privileged=effective.privileged
            )
            if effective.devices or effective.privileged
            else ({}, [])
        )
        context = self._context(
            place,
            effective,
            name,
            image,
            secrets,
            wrapped=wrapped,
            devices=(devices, every_device),
            has_shell=has_shell,
            identity=await _network_identity(place, host_network=effective.host_network),
        )
        spec = build_runtime_spec(effective, context=context)
        pins = _pinned_sources(place, effective, spec)
        recorded = digest_view(spec, effective, context)
        if secrets.digest is not None:
            recorded["kukeonSecretFiles"] = secrets.digest
        if effective.stop_signal is not None:  # a label, not the spec: in the digest when set
            recorded["kukeonStopSignal"] = effective.stop_signal
        digest = spec_digest(recorded, image=image.name)
        built = BuiltContainer(
            effective=effective,
            name=name,
            image=image.name,
            spec=spec,
            digest=digest,
            wrapped=wrapped,
            stop_signal=effective.stop_signal or image.config.stop_signal,
            binds=binds_directory(place.files.state_dir, place.key, effective.id),
            pins=pins,
        )
        if secrets.files:
            uid, gid = built.host_user
            await own_secret_files(secrets, uid=uid, gid=gid)
        return built

    def _context(
        self,
        place: CellPlace,
        effective: ContainerSpec,
        name: str,
        image: ReadyImage,
        secrets: StagedSecrets,
        *,
        wrapped: bool,
        devices: tuple[dict[str, HostDevice], list[HostDevice]],
        has_shell: bool | None,
        identity: NetworkIdentity,
    ) -> SpecContext:
        """What the OCI spec is built from."""
        _realm, space_name, stack_name, cell_name = place.key
        return SpecContext(
            image_config=image.config,
            passwd=image.passwd,
            group=image.group,
            container_id=name,
            hostname=identity.hostname,
            cgroups_path=f"{place.cgroup_parent}/{effective.id}",
            realm=place.key[0],
            space=space_name,
            stack=stack_name,
            cell=cell_name,
            cell_cgroup_path=place.cgroup_parent,
            netns_path=None if effective.host_network else place.netns_path,
            hosts_file=identity.hosts_file,
            hostname_file=identity.hostname_file,
            resolv_conf_file=identity.resolv_conf_file,
            secret_files=secrets.files,
            secret_env=secrets.env,
            host_hard_rlimits=self.facts.hard_rlimits,
            devices=devices[0],
            host_devices=devices[1],
            terminal=effective.attachable,
            tty_state_dir=str(place.files.tty_state(effective.id)) if wrapped else None,
            image_has_shell=has_shell,
            cgroup_nesting=place.cgroup_nesting,
            id_range=place.id_range,
            userns_path=_userns_path(place),
        )


def made_elsewhere(place: CellPlace, cgroup: str, netns: str | None) -> CellPlace:
    """Never expected: the cell's cgroup or namespace is not where its root container's spec
    said; built again from the real paths, its digest differs and the plan makes it again."""
    logger.warning(
        "cell %s set up at %s / %s, not the expected %s / %s",
        "/".join(place.key),
        cgroup,
        netns,
        place.cgroup_parent,
        place.netns_path,
    )
    return replace(place, cgroup_parent=cgroup, netns_path=netns)
