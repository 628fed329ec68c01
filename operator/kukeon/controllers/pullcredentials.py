"""A realm's registry credentials as a pull on this node sends them.

A credential without ``serverAddress`` is sent to no registry (it would go to whichever
registry an image names); what a pull says of it comes from ``ignored_credentials``.
"""

from __future__ import annotations

from kukeon.api import Realm, secret_scope
from kukeon.api.realm import has_server_address, unaddressed_credentials
from kukeon.runtime.containerd.types import RegistryCredential
from kukeon.store import Registry

from .cellfiles import read_secret_value


async def registry_credentials(registry: Registry, realm: Realm) -> list[RegistryCredential]:
    """The realm's pull credentials, `passwordSecretRef` read from the realm's Secrets;
    those without `serverAddress` left out: they would go to any registry an image names."""
    credentials: list[RegistryCredential] = []
    for index, entry in enumerate(realm.spec.registry_credentials):
        if not has_server_address(entry):
            continue  # sent to no registry (`unaddressed_credentials` says so)
        password = entry.password or ""
        if entry.password_secret_ref is not None:
            where = (
                f"realm {realm.metadata.name!r} registryCredentials[{index}] "
                f"({entry.username}@{entry.server_address})"
            )
            value = await read_secret_value(
                registry,
                [secret_scope(realm.metadata.name)],
                entry.password_secret_ref,
                where=where,
            )
            password = value.decode(errors="replace")
        credentials.append(
            RegistryCredential(
                server_address=entry.server_address or "",
                username=entry.username or "",
                password=password,
            )
        )
    return credentials


def ignored_credentials(realm: Realm) -> tuple[str, ...]:
    """What a pull in ``realm`` says of each of its credentials sent to no registry."""
    return tuple(
        f"realm {realm.metadata.name}: {why}" for why in unaddressed_credentials(realm.spec)
    )
