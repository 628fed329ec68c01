"""What a realm write may not ask, whoever writes it (``writerules.check_acted_on``): a
containerd namespace other than the one its nodes made, a registry credential no pull
would use, one naming no registry, limits under which no container could start. Each is
compared with the stored realm, so a realm stored before a rule stays writable as long as
the write leaves that value as it was.
"""

from __future__ import annotations

from kukeon.api import AnyResource, Realm
from kukeon.api.container import MEMORY_LIMIT_START_MIN
from kukeon.api.meta import quote
from kukeon.api.realm import (
    REALM_PIDS_START_MIN,
    UNADDRESSED_CREDENTIAL,
    RegistryCredentials,
    has_server_address,
    shadowed_credentials,
)
from kukeon.apiserver.status import Cause


def realm_causes(realm: Realm, current: AnyResource | None) -> list[Cause]:
    """Every reason to refuse ``realm`` (replacing ``current``, None on create)."""
    causes = _namespace_causes(realm, current) + _credential_causes(realm, current)
    return causes + _limit_causes(realm, current)


def _limit_causes(realm: Realm, current: AnyResource | None) -> list[Cause]:
    """Limits under which no container of the realm starts: runc's init is OOM-killed, or
    cannot fork (a value the stored realm has already is let through)."""
    limits = realm.spec.limits
    if limits is None:
        return []
    stored = current.spec.limits if isinstance(current, Realm) else None
    causes: list[Cause] = []
    memory = limits.memory_bytes
    if (
        memory
        and memory < MEMORY_LIMIT_START_MIN
        and (stored is None or stored.memory_bytes != memory)
    ):
        why = (
            f"at least {MEMORY_LIMIT_START_MIN} bytes (6 MiB), got {memory}: runc's init is "
            "charged about 2.5 MiB to it while it starts each container, so below that no "
            "container of the realm starts (OOM-killed)"
        )
        causes.append(Cause("spec.limits.memoryBytes", why))
    pids = limits.pids
    if pids and pids < REALM_PIDS_START_MIN and (stored is None or stored.pids != pids):
        why = (
            f"at least {REALM_PIDS_START_MIN}, got {pids}: runc's init holds up to 6 processes "
            "and threads while it starts a container, so below that no container of the "
            "realm starts"
        )
        causes.append(Cause("spec.limits.pids", why))
    return causes


def _credential_causes(realm: Realm, current: AnyResource | None) -> list[Cause]:
    """Registry credentials no pull would use (`shadowed_credentials`) and those naming no
    registry (`UNADDRESSED_CREDENTIAL`), each one the stored realm does not have already
    (so a realm stored so stays writable: kukeond sends such a credential nowhere)."""
    known = set(shadowed_credentials(current.spec)) if isinstance(current, Realm) else set()
    causes = [Cause(*pair) for pair in shadowed_credentials(realm.spec) if pair not in known]
    stored = (
        {_identity(c) for c in current.spec.registry_credentials if not has_server_address(c)}
        if isinstance(current, Realm)
        else set()
    )
    return causes + [
        Cause(f"spec.registryCredentials[{index}].serverAddress", UNADDRESSED_CREDENTIAL)
        for index, credential in enumerate(realm.spec.registry_credentials)
        if not has_server_address(credential) and _identity(credential) not in stored
    ]


def _identity(credential: RegistryCredentials) -> tuple[str, str]:
    """A credential as a write names it again: its user and password source (an inline
    password comes back as `***`, so not the password itself)."""
    ref = credential.password_secret_ref
    return credential.username or "", f"{ref.name}/{ref.key}" if ref is not None else "inline"


def _namespace_causes(realm: Realm, current: AnyResource | None) -> list[Cause]:
    """A realm's containerd namespace cannot change: its nodes keep the cells' containers
    and images in the namespace they made, so a new one stranded them (running, no longer
    managed) and failed every cell (its image not in the new namespace)."""
    if not isinstance(current, Realm) or realm.spec.namespace == current.spec.namespace:
        return []
    why = (
        f"is immutable: the realm's containers and images are in {quote(current.spec.namespace)}"
        "; delete the realm and create it again to use another namespace"
    )
    return [Cause("spec.namespace", why)]
