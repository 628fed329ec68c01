"""Admission rules: each host power, each security level, path normalisation, the realm's level."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pytest

from kukeon.api import AnyResource, Cell, ContainerSpec, Kind, Realm, Space, parse_resource
from kukeon.api.applying import updated_object
from kukeon.api.realm import SecurityLevel
from kukeon.apiserver import ApiError, ApiSettings, Principal, Role
from kukeon.apiserver.admission import (
    RUNTIME_DEFAULT_CAPABILITIES,
    Admission,
    HostAllowances,
    Violation,
    check_cell,
    check_container,
    check_realm,
    check_space,
    is_under,
    normalize_host_path,
)
from kukeon.daemon.config import ConfigError, load_config
from kukeon.runtime.containerd.spec import DEFAULT_CAPABILITIES
from kukeon.store import NotFound

RESTRICTED, BASELINE, PRIVILEGED = (
    SecurityLevel.RESTRICTED,
    SecurityLevel.BASELINE,
    SecurityLevel.PRIVILEGED,
)
LEVELS = (RESTRICTED, BASELINE, PRIVILEGED)
ALLOW = HostAllowances(
    host_paths=("/srv/kukeon",),
    secret_dirs=("/etc/kukeon/secrets",),
    secret_env=frozenset({"API_TOKEN"}),
)
F = "spec.containers[0]"


def container(**fields: Any) -> ContainerSpec:
    return ContainerSpec.model_validate({"id": "main", "image": "busybox", **fields})


def fields_of(violations: list[Violation]) -> list[str]:
    return [v.field for v in violations]


def refused(level: SecurityLevel, **fields: Any) -> list[str]:
    return fields_of(check_container(container(**fields), field=F, level=level, allowances=ALLOW))


# --- the capability table follows the runtime's ---------------------------------------------


def test_default_capabilities_are_the_runtimes() -> None:
    assert RUNTIME_DEFAULT_CAPABILITIES == DEFAULT_CAPABILITIES


# --- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normalized"),
    [
        ("/srv/kukeon", "/srv/kukeon"),
        ("//srv//kukeon/", "/srv/kukeon"),  # POSIX keeps a leading "//": we do not
        ("/srv/./kukeon/./data", "/srv/kukeon/data"),
        ("/", "/"),
    ],
)
def test_normalize_host_path(written: str, normalized: str) -> None:
    assert normalize_host_path(written) == normalized


@pytest.mark.parametrize("bad", ["srv/kukeon", "/srv/kukeon/../../etc", "/srv/kukeon/..", ""])
def test_relative_and_dotdot_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"not an absolute path|'\.\.' component"):
        normalize_host_path(bad)


def test_is_under_compares_whole_components() -> None:
    assert is_under("/srv/kukeon", "/srv/kukeon")
    assert is_under("/srv/kukeon/a/b", "/srv/kukeon")
    assert not is_under("/srv/kukeon-evil", "/srv/kukeon")
    assert not is_under("/srv", "/srv/kukeon")
    assert is_under("/anything", "/")


# --- one rule per host power ----------------------------------------------------------------

# (fields, the refused path, the least level that allows it)
RULES: list[tuple[dict[str, Any], str, SecurityLevel]] = [
    ({"privileged": True}, f"{F}.privileged", PRIVILEGED),
    ({"hostNetwork": True}, f"{F}.hostNetwork", PRIVILEGED),
    ({"hostPID": True}, f"{F}.hostPID", PRIVILEGED),
    ({"hostCgroup": True}, f"{F}.hostCgroup", BASELINE),
    # A conflist of the cell's own: its plugins run as root and it picks any bridge or host
    # interface, even under an allowed host path (a bind volume may write there).
    ({"cniConfigPath": "/srv/kukeon/x.conflist"}, f"{F}.cniConfigPath", PRIVILEGED),
    ({"cniConfigPath": "/etc/cni/net.d/x.conflist"}, f"{F}.cniConfigPath", PRIVILEGED),
    ({"devices": ["/dev/kvm"]}, f"{F}.devices[0]", PRIVILEGED),
    # A published port is DNAT on the node's addresses, its loopback too (docs/kukectl.md).
    ({"ports": ["8080:80"]}, f"{F}.ports[0]", PRIVILEGED),
    ({"ports": ["127.0.0.1:9999:80/udp"]}, f"{F}.ports[0]", PRIVILEGED),
    ({"devices": ["/dev/fuse:/dev/fuse:rw"]}, f"{F}.devices[0]", PRIVILEGED),
    ({"capabilities": {"add": ["SYS_ADMIN"]}}, f"{F}.capabilities.add[0]", PRIVILEGED),
    ({"capabilities": {"add": ["cap_net_admin"]}}, f"{F}.capabilities.add[0]", PRIVILEGED),
    ({"capabilities": {"add": ["ALL"]}}, f"{F}.capabilities.add[0]", PRIVILEGED),
    ({"capabilities": {"add": ["SYS_PTRACE"]}}, f"{F}.capabilities.add[0]", BASELINE),
    ({"capabilities": {"add": ["CAP_IPC_LOCK"]}}, f"{F}.capabilities.add[0]", BASELINE),
    ({"securityOpts": ["seccomp=unconfined"]}, f"{F}.securityOpts[0]", PRIVILEGED),
    ({"securityOpts": ["seccomp:unconfined"]}, f"{F}.securityOpts[0]", PRIVILEGED),
    ({"securityOpts": ["apparmor=unconfined"]}, f"{F}.securityOpts[0]", PRIVILEGED),
    ({"volumes": [{"source": "/", "target": "/host"}]}, f"{F}.volumes[0].source", PRIVILEGED),
    (
        {"volumes": [{"source": "/srv/kukeon/../../etc", "target": "/x"}]},
        f"{F}.volumes[0].source",
        PRIVILEGED,
    ),
    (
        {"volumes": [{"source": "/srv/kukeon-other", "target": "/x"}]},
        f"{F}.volumes[0].source",
        PRIVILEGED,
    ),
    (
        {"volumes": [{"source": "/etc/kukeon", "target": "/x"}]},  # holds the secret dir
        f"{F}.volumes[0].source",
        PRIVILEGED,
    ),
    (
        {"secrets": [{"name": "T", "fromFile": "/etc/kukeon/tokens.yaml"}]},
        f"{F}.secrets[0].fromFile",
        PRIVILEGED,
    ),
    (
        {"secrets": [{"name": "T", "fromFile": "/etc/kukeon/secrets/../tokens.yaml"}]},
        f"{F}.secrets[0].fromFile",
        PRIVILEGED,
    ),
    (
        {"secrets": [{"name": "T", "fromEnv": "KUKEON_ETCD_PASSWORD"}]},
        f"{F}.secrets[0].fromEnv",
        PRIVILEGED,
    ),
]


@pytest.mark.parametrize(("fields", "path", "least"), RULES)
def test_each_rule_at_each_level(fields: dict[str, Any], path: str, least: SecurityLevel) -> None:
    for level in LEVELS:
        expected = [] if LEVELS.index(level) >= LEVELS.index(least) else [path]
        assert refused(level, **fields) == expected, level


ALLOWED_EVERYWHERE: list[dict[str, Any]] = [
    {},
    {"user": "0:0"},  # root in the container: allowed (as PSS baseline), see docs/kukectl.md
    {"capabilities": {"add": ["CHOWN", "cap_net_bind_service"], "drop": ["ALL"]}},
    {"capabilities": {"drop": ["NET_RAW", "SYS_ADMIN"]}},
    {"securityOpts": ["no-new-privileges", "no-new-privileges:true", "no-new-privileges=false"]},
    {"volumes": [{"source": "/srv/kukeon", "target": "/data"}]},
    {"volumes": [{"source": "//srv/kukeon/./cell-a/", "target": "/data", "readOnly": True}]},
    {"volumes": [{"kind": "tmpfs", "target": "/scratch"}]},
    {"tmpfs": [{"path": "/run"}]},
    {"secrets": [{"name": "T", "fromFile": "/etc/kukeon/secrets/team/token"}]},
    {"secrets": [{"name": "T", "fromEnv": "API_TOKEN", "mountPath": "/run/token"}]},
    {"readOnlyRootFilesystem": True, "resources": {"memoryLimitBytes": 1 << 20}},
]


@pytest.mark.parametrize("fields", ALLOWED_EVERYWHERE)
def test_ordinary_containers_pass_every_level(fields: dict[str, Any]) -> None:
    for level in LEVELS:
        assert refused(level, **fields) == [], level


def test_every_violation_of_a_container_is_reported_with_its_rule() -> None:
    found = check_container(
        container(
            privileged=True,
            hostPID=True,
            capabilities={"add": ["CHOWN", "SYS_ADMIN"]},
            volumes=[{"source": "/", "target": "/host"}],
        ),
        field=F,
        level=RESTRICTED,
        allowances=HostAllowances(),
    )
    assert fields_of(found) == [
        f"{F}.privileged",
        f"{F}.hostPID",
        f"{F}.capabilities.add[1]",
        f"{F}.volumes[0].source",
    ]
    messages = {v.field: v.message for v in found}
    assert "needs security level privileged" in messages[f"{F}.privileged"]
    assert "CAP_SYS_ADMIN" in messages[f"{F}.capabilities.add[1]"]
    assert "kukeond allows no such host path" in messages[f"{F}.volumes[0].source"]


def test_empty_allowances_refuse_every_bind_and_host_secret() -> None:
    found = check_container(
        container(
            volumes=[{"source": "/srv/kukeon", "target": "/data"}],
            secrets=[{"name": "A", "fromFile": "/etc/x"}, {"name": "B", "fromEnv": "HOME"}],
        ),
        field=F,
        level=BASELINE,
        allowances=HostAllowances(),
    )
    assert fields_of(found) == [
        f"{F}.volumes[0].source",
        f"{F}.secrets[0].fromFile",
        f"{F}.secrets[1].fromEnv",
    ]


def test_root_allowance_allows_any_path_but_never_the_secret_dirs() -> None:
    everything = HostAllowances(host_paths=("/",), secret_dirs=("/etc/kukeon/secrets",))
    ok = container(volumes=[{"source": "/var/lib/data", "target": "/d"}])
    assert check_container(ok, field=F, level=RESTRICTED, allowances=everything) == []
    inside = container(volumes=[{"source": "/etc/kukeon/secrets/a", "target": "/d"}])
    above = container(volumes=[{"source": "/", "target": "/d"}])
    for bad in (inside, above):
        (violation,) = check_container(bad, field=F, level=RESTRICTED, allowances=everything)
        assert "secret directory /etc/kukeon/secrets" in violation.message


# --- cells: their own fields and what the space's defaults add ------------------------------


R = TypeVar("R", bound=AnyResource)


def parsed(kind: type[R], name: str, spec: dict[str, Any]) -> R:
    """A document of ``kind`` named ``name``, parsed as the API server parses a write."""
    res = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": kind.__name__,
            "metadata": {"name": name},
            "spec": spec,
        }
    )
    assert isinstance(res, kind)
    return res


def cell(containers: list[dict[str, Any]], **spec: Any) -> Cell:
    boxes = [{"image": "busybox", **c} for c in containers]
    return parsed(Cell, "web", {"realmId": "team", "containers": boxes, **spec})


def space(**spec: Any) -> Space:
    return parsed(Space, "default", {"realmId": "team", **spec})


def test_nested_cgroup_runtime_needs_privileged() -> None:
    nested = cell([{"id": "main"}], nestedCgroupRuntime=True)
    for level in (RESTRICTED, BASELINE):
        found = check_cell(nested, level=level, allowances=ALLOW, space=None)
        assert fields_of(found) == ["spec.nestedCgroupRuntime"]
    assert check_cell(nested, level=PRIVILEGED, allowances=ALLOW, space=None) == []


def test_cell_containers_are_checked_with_the_space_defaults_merged_in() -> None:
    risky = space(
        defaults={
            "container": {
                "capabilities": {"add": ["SYS_ADMIN"]},
                "securityOpts": ["seccomp=unconfined"],
            }
        }
    )
    inherits = cell([{"id": "a"}, {"id": "b", "capabilities": {"drop": ["ALL"]}}])
    found = check_cell(inherits, level=BASELINE, allowances=ALLOW, space=risky)
    assert fields_of(found) == [
        "spec.containers[0].capabilities.add[0]",
        "spec.containers[0].securityOpts[0]",
        "spec.containers[1].securityOpts[0]",  # b sets its own capabilities, not its opts
    ]
    assert all(v.message.endswith("of space 'team/default')") for v in found)
    assert "inherited from spec.defaults.container.capabilities" in found[0].message
    assert "inherited from spec.defaults.container.securityOpts" in found[1].message
    # without the space (or in a privileged realm) nothing is inherited or refused
    assert check_cell(inherits, level=BASELINE, allowances=ALLOW, space=None) == []
    assert check_cell(inherits, level=PRIVILEGED, allowances=ALLOW, space=risky) == []


def test_a_cells_own_violation_is_not_called_inherited() -> None:
    harmless = space(defaults={"container": {"user": "1000", "readOnlyRootFilesystem": True}})
    found = check_cell(
        cell([{"id": "a", "privileged": True}]), level=RESTRICTED, allowances=ALLOW, space=harmless
    )
    assert fields_of(found) == ["spec.containers[0].privileged"]
    assert "inherited" not in found[0].message


# --- spaces ---------------------------------------------------------------------------------


def test_space_defaults_and_cni_config_path() -> None:
    risky = space(
        cniConfigPath="/etc/cron.d",
        defaults={
            "container": {
                "capabilities": {"add": ["NET_BIND_SERVICE", "SYS_PTRACE", "SYS_MODULE"]},
                "securityOpts": ["no-new-privileges", "seccomp=unconfined"],
            }
        },
    )
    assert fields_of(check_space(risky, level=RESTRICTED, allowances=ALLOW)) == [
        "spec.cniConfigPath",
        "spec.defaults.container.capabilities.add[1]",
        "spec.defaults.container.capabilities.add[2]",
        "spec.defaults.container.securityOpts[1]",
    ]
    assert fields_of(check_space(risky, level=BASELINE, allowances=ALLOW)) == [
        "spec.cniConfigPath",
        "spec.defaults.container.capabilities.add[2]",
        "spec.defaults.container.securityOpts[1]",
    ]
    assert check_space(risky, level=PRIVILEGED, allowances=ALLOW) == []
    # Under allowedHostPaths too: kukeond reads the conflist back for each cell and runs
    # its plugins as root, and a container bound to the directory rewrites it (shown
    # against a running kukeond: an editor's host-device conflist took a host interface).
    allowed_dir = space(cniConfigPath="/srv/kukeon/cni")
    for level in (RESTRICTED, BASELINE):
        assert fields_of(check_space(allowed_dir, level=level, allowances=ALLOW)) == [
            "spec.cniConfigPath"
        ]
    assert check_space(allowed_dir, level=PRIVILEGED, allowances=ALLOW) == []
    assert check_space(space(), level=RESTRICTED, allowances=HostAllowances()) == []


# --- realms: the level and the namespace are the admin's ------------------------------------


def realm(name: str = "team", **spec: Any) -> Realm:
    return parsed(Realm, name, spec)


def test_realm_level_defaults_to_restricted() -> None:
    assert realm().spec.level == RESTRICTED
    assert realm(securityLevel="").spec.level == RESTRICTED
    assert realm(securityLevel="baseline").spec.level == BASELINE


def test_non_admins_create_only_restricted_realms_in_their_own_namespace() -> None:
    assert check_realm(realm(), None) == []
    assert check_realm(realm(securityLevel="restricted"), None) == []
    assert check_realm(realm(namespace="team.kukeon.io"), None) == []
    for level in ("baseline", "privileged"):
        assert fields_of(check_realm(realm(securityLevel=level), None)) == ["spec.securityLevel"]
    assert fields_of(check_realm(realm(namespace="k8s.io"), None)) == ["spec.namespace"]


def test_non_admins_never_change_the_level_or_the_namespace() -> None:
    current = realm(securityLevel="baseline")
    assert check_realm(realm(securityLevel="baseline"), current) == []
    for new in (realm(), realm(securityLevel="privileged"), realm(securityLevel="restricted")):
        (violation,) = check_realm(new, current)
        assert violation.field == "spec.securityLevel"
        assert "it is baseline" in violation.message
    # unset and explicit restricted are the same level
    assert check_realm(realm(securityLevel="restricted"), realm()) == []
    (moved,) = check_realm(realm(namespace="other.kukeon.io"), realm())
    assert moved.field == "spec.namespace"


def test_apply_keeps_a_realms_level_the_manifest_leaves_out() -> None:
    stored = realm(securityLevel="privileged")
    stored.metadata.resource_version = "7"
    assert updated_object(realm(), stored) is None


# --- the Admission object, against a registry ----------------------------------------------


class Store:
    """The two reads admission makes."""

    def __init__(self, *objects: AnyResource) -> None:
        self.objects = {(Kind(o.kind), o.metadata.name): o for o in objects}
        self.reads: list[tuple[Kind, tuple[str, ...]]] = []

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        self.reads.append((kind, key))
        try:
            return self.objects[(kind, key[-1])]
        except KeyError:
            raise NotFound(f"{kind.value} {key} not found") from None


EDITOR = Principal(user="eddie", role=Role.EDITOR, realms=frozenset({"team"}))
ADMIN = Principal(user="alice", role=Role.ADMIN)


def admission(*objects: AnyResource) -> tuple[Admission, Store]:
    store = Store(*objects)
    return Admission(registry=store, allowances=ALLOW), store  # type: ignore[arg-type]


async def test_admins_are_never_checked_nor_read_for() -> None:
    checker, store = admission()
    await checker.admit(ADMIN, cell([{"id": "a", "privileged": True}]), None)
    await checker.admit(ADMIN, realm(securityLevel="privileged"), realm())
    assert store.reads == []


async def test_refusal_is_a_403_naming_realm_level_and_every_field() -> None:
    checker, _ = admission(realm(securityLevel="baseline"))
    with pytest.raises(ApiError) as caught:
        await checker.admit(
            EDITOR,
            cell([{"id": "a", "privileged": True, "hostCgroup": True, "hostPID": True}]),
            None,
        )
    error = caught.value
    assert error.code == 403
    assert error.reason == "Forbidden"
    assert error.kind == "Cell"
    assert 'realm "team"' in error.message
    assert "baseline security level" in error.message
    assert "spec.containers[0].privileged" in error.message
    status = error.to_status()
    assert [c["field"] for c in status["details"]["causes"]] == [
        "spec.containers[0].privileged",
        "spec.containers[0].hostPID",
    ]


async def test_a_missing_realm_counts_as_restricted() -> None:
    checker, _ = admission()
    with pytest.raises(ApiError) as caught:
        await checker.admit(EDITOR, cell([{"id": "a", "hostCgroup": True}]), None)
    assert "restricted security level" in caught.value.message


async def test_a_privileged_realm_admits_everything_from_editors() -> None:
    checker, _ = admission(realm(securityLevel="privileged"))
    await checker.admit(
        EDITOR, cell([{"id": "a", "privileged": True}], nestedCgroupRuntime=True), None
    )


async def test_the_cells_space_defaults_are_read_and_applied() -> None:
    risky = space(defaults={"container": {"capabilities": {"add": ["SYS_ADMIN"]}}})
    checker, store = admission(realm(), risky)
    with pytest.raises(ApiError) as caught:
        await checker.admit(EDITOR, cell([{"id": "a"}]), None)
    assert (Kind.SPACE, ("team", "default")) in store.reads
    assert "inherited" in caught.value.message


async def test_a_write_that_leaves_the_spec_alone_is_not_checked() -> None:
    """Labels or annotations on a cell an admin made beyond the level stay writable;
    any spec change is checked in full (ratcheting per field would let an editor swap the
    image of a privileged container)."""
    stored = cell([{"id": "a", "privileged": True}])
    relabelled = stored.model_copy(deep=True)
    relabelled.metadata.labels = {"team": "web"}
    checker, store = admission(realm())
    await checker.admit(EDITOR, relabelled, stored)
    assert store.reads == []
    new_image = stored.model_copy(deep=True)
    new_image.spec.containers[0].image = "evil"
    with pytest.raises(ApiError):
        await checker.admit(EDITOR, new_image, stored)


async def test_realm_writes_by_editors() -> None:
    checker, _ = admission()
    await checker.admit(EDITOR, realm(), None)
    with pytest.raises(ApiError) as caught:
        await checker.admit(EDITOR, realm(securityLevel="baseline"), realm())
    assert caught.value.code == 403
    assert caught.value.causes[0].field == "spec.securityLevel"


# --- configuration --------------------------------------------------------------------------


def test_api_settings_normalise_and_refuse_bad_directories() -> None:
    settings = ApiSettings(
        allowed_host_paths=("//srv/kukeon/",), secret_dirs=[Path("/etc/kukeon/secrets")]
    )
    assert settings.host_allowances == HostAllowances(
        host_paths=("/srv/kukeon",), secret_dirs=("/etc/kukeon/secrets",)
    )
    for bad in ("srv", "/srv/../etc"):
        with pytest.raises(ValueError, match="absolute path without"):
            ApiSettings(allowed_host_paths=(bad,))
    with pytest.raises(ValueError, match="environment variable name"):
        ApiSettings(allowed_secret_env=("A=B",))


def test_daemon_config_reads_the_allowances_from_file_env_and_flags(tmp_path: Path) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("allowedHostPaths: [/srv/a]\nsecretDirs: [/etc/s]\n")
    config = load_config(
        config_file=config_file,
        environ={"KUKEON_ALLOWED_SECRET_ENV": "API_TOKEN, DB_URL"},
        overrides={"secret_dirs": "/etc/s1,/etc/s2//"},
    )
    assert config.allowed_host_paths == (Path("/srv/a"),)
    assert config.secret_dirs == (Path("/etc/s1"), Path("/etc/s2"))
    assert config.allowed_secret_env == ("API_TOKEN", "DB_URL")
    with pytest.raises(ConfigError, match="allowed_host_paths"):
        load_config(environ={}, overrides={"allowed_host_paths": "relative/dir"})


def test_kukeond_hands_the_allowances_to_its_api_server_api_only_too() -> None:
    from kukeon.daemon.app import Daemon
    from kukeon.daemon.endpoints import api_settings

    config = load_config(
        environ={},
        overrides={
            "api_only": True,
            "allowed_host_paths": "/srv/a",
            "secret_dirs": "/etc/s",
            "allowed_secret_env": "API_TOKEN",
        },
    )
    settings = api_settings(Daemon(config))
    assert settings.host_allowances == HostAllowances(
        host_paths=("/srv/a",), secret_dirs=("/etc/s",), secret_env=frozenset({"API_TOKEN"})
    )
