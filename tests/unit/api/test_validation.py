"""Every validation rule, each with a document it rejects and one it accepts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kukeon.api import FieldError, InvalidResource, parse_resource
from kukeon.api.validation import in_document_order
from tests.unit.api.samples import (
    cell_doc,
    container,
    egress_space,
    realm_doc,
    space_doc,
    stack_doc,
)


def causes(doc: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(InvalidResource) as info:
        parse_resource(doc)
    return info.value.causes


def fields(doc: dict[str, Any]) -> list[str]:
    return [cause.field for cause in causes(doc)]


def one_cause(doc: dict[str, Any]) -> FieldError:
    found = causes(doc)
    assert len(found) == 1, found
    return found[0]


def test_message_names_the_resource_and_the_field_path() -> None:
    doc = cell_doc(
        containers=[container("a"), container("b", restartPolicy="always", restartMaxRetries=3)]
    )
    with pytest.raises(InvalidResource) as info:
        parse_resource(doc)
    assert str(info.value) == (
        "Cell default/default/default/web: spec.containers[1].restartMaxRetries: "
        "requires restartPolicy on-failure"
    )
    assert info.value.kind == "Cell"
    assert info.value.name == "default/default/default/web"
    assert info.value.causes == [
        FieldError("spec.containers[1].restartMaxRetries", "requires restartPolicy on-failure")
    ]


def test_every_error_of_a_document_is_reported_at_once() -> None:
    doc = cell_doc(
        name="web",
        id="other",
        rootContainerId="missing",
        containers=[
            container("a", env=["NOVALUE"], imagePullPolcy="Always"),
            container("a", volumes=[{"target": "relative"}]),
            container("Bad_Id", restartBackoffSeconds=5),
        ],
    )
    assert set(fields(doc)) == {
        "spec.id",
        "spec.rootContainerId",
        "spec.containers[0].env[0]",
        "spec.containers[0].imagePullPolcy",
        "spec.containers[1].id",
        "spec.containers[1].volumes[0].source",
        "spec.containers[1].volumes[0].target",
        "spec.containers[2].id",
        "spec.containers[2].restartBackoffSeconds",
    }


def test_errors_come_in_the_order_a_reader_meets_their_fields() -> None:
    # A manifest missing both apiVersion and spec.containers said spec.containers first:
    # what the document is comes first (kubectl's order), then its fields as written.
    bare = {"kind": "Cell", "metadata": {"name": "web"}, "spec": {"realmId": "default"}}
    assert fields(bare) == ["apiVersion", "spec.containers"]
    doc = cell_doc(
        containers=[
            container("a", env=["NOVALUE"]),
            container("a", volumes=[{"target": "relative"}]),
        ],
        rootContainerId="missing",
    )
    doc["metadata"]["name"] = "Web"
    doc["spec"] = {"id": "other", **doc["spec"]}
    # pydantic's errors and the rules across fields (spec.id, the duplicate id) interleave;
    # a missing field (volumes[0].source) comes after its present siblings
    assert fields(doc) == [
        "metadata.name",
        "spec.id",
        "spec.containers[0].env[0]",
        "spec.containers[1].id",
        "spec.containers[1].volumes[0].target",
        "spec.containers[1].volumes[0].source",
        "spec.rootContainerId",
    ]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@given(
    doc=st.dictionaries(st.sampled_from(["apiVersion", "metadata", "spec", "x"]), _json_values),
    errors=st.lists(st.builds(FieldError, st.text(alphabet="ab.[]0123x", max_size=12), st.text())),
)
def test_ordering_keeps_every_error_whatever_the_paths(
    doc: dict[str, Any], errors: list[FieldError]
) -> None:
    assert sorted(in_document_order(errors, doc)) == sorted(errors)


# --- names are DNS-1123 labels -------------------------------------------------------------


@pytest.mark.parametrize("name", ["Web", "web_1", "-web", "web-", "", "a" * 64, "web.app", "wéb"])
def test_names_must_be_dns_labels(name: str) -> None:
    assert "metadata.name" in fields(realm_doc(name))


@pytest.mark.parametrize("name", ["a", "web-1", "0web", "a" * 63, "x-y-z"])
def test_dns_label_names_are_accepted(name: str) -> None:
    assert parse_resource(realm_doc(name)).metadata.name == name


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (space_doc(realmId="Main"), "spec.realmId"),
        (stack_doc(spaceId="a_b"), "spec.spaceId"),
        (cell_doc(stackId="-x"), "spec.stackId"),
        (cell_doc(containers=[container("App")]), "spec.containers[0].id"),
        (cell_doc(rootContainerId="A"), "spec.rootContainerId"),
    ],
)
def test_parent_and_container_ids_must_be_dns_labels(doc: dict[str, Any], field: str) -> None:
    assert field in fields(doc)


# --- spec.id and metadata.name ----------------------------------------------------------


@pytest.mark.parametrize("make", [stack_doc, cell_doc])
def test_spec_id_must_equal_metadata_name(make: Any) -> None:
    doc = make("web")
    doc["spec"]["id"] = "other"
    assert one_cause(doc) == FieldError("spec.id", "must equal metadata.name 'web', got 'other'")


@pytest.mark.parametrize("make", [stack_doc, cell_doc])
def test_spec_id_and_name_fill_each_other(make: Any) -> None:
    from_name = parse_resource(make("web"))
    assert from_name.spec.id == "web"
    doc = make("web")
    del doc["metadata"]
    doc["spec"]["id"] = "web"
    from_id = parse_resource(doc)
    assert from_id.metadata.name == "web"
    assert from_id == from_name


def test_a_name_is_required_somewhere() -> None:
    doc = cell_doc()
    doc["metadata"] = {}
    assert "metadata.name" in fields(doc)


# --- containers --------------------------------------------------------------------------


def test_container_ids_are_unique_in_a_cell() -> None:
    doc = cell_doc(containers=[container("a"), container("b"), container("a")])
    assert one_cause(doc) == FieldError(
        "spec.containers[2].id", "duplicate container id 'a' (also spec.containers[0])"
    )
    assert parse_resource(cell_doc(containers=[container("a"), container("b")]))


def test_a_cell_needs_a_container() -> None:
    assert one_cause(cell_doc(containers=[])) == FieldError(
        "spec.containers", "at least one container is required"
    )
    doc = cell_doc()
    del doc["spec"]["containers"]
    assert one_cause(doc) == FieldError("spec.containers", "required")


def test_image_is_required() -> None:
    assert "spec.containers[0].image" in fields(cell_doc(containers=[{"id": "a"}]))
    assert "spec.containers[0].image" in fields(cell_doc(containers=[container(image="")]))


def test_a_command_given_as_a_list_names_the_fix() -> None:
    # kubectl's `command: [sh, -c, ...]`: one string is the program, the rest goes in args.
    cause = one_cause(cell_doc(containers=[container("a", command=["sh", "-c", "echo hi"])]))
    assert cause.field == "spec.containers[0].command"
    assert "args" in cause.message
    assert "one string" in cause.message


@pytest.mark.parametrize(
    ("fields_", "field", "hint"),
    [
        ({"name": "web"}, "spec.containers[0].name", "its `id`"),
        ({"resources": {"limits": {"cpu": "1"}}}, "spec.containers[0].resources.limits", "flat"),
        ({"volumeMounts": []}, "spec.containers[0].volumeMounts", "`volumes`"),
        ({"env": [{"name": "A", "value": "b"}]}, "spec.containers[0].env[0]", "KEY=VALUE"),
        ({"env": {"A": "b"}}, "spec.containers[0].env", "list of KEY=VALUE"),  # compose's
        ({"env": "A=b"}, "spec.containers[0].env", "list of KEY=VALUE"),
        ({"ports": [{"containerPort": 80}]}, "spec.containers[0].ports[0]", "8080:80"),
        ({"tty": True}, "spec.containers[0].tty", "`attachable: true`"),
        ({"tty": 5}, "spec.containers[0].tty", "must be an object of fields, got 5"),
        ({"stdin": True}, "spec.containers[0].stdin", "`attachable: true`"),
    ],
)
def test_kubernetes_spellings_name_kukeons(fields_: dict[str, Any], field: str, hint: str) -> None:
    cause = one_cause(cell_doc(containers=[container("a", **fields_)]))
    assert cause.field == field
    assert hint in cause.message


def test_a_pod_level_restart_policy_names_the_containers() -> None:
    # a pod spec's restartPolicy: Always; kukeon's is each container's
    doc = cell_doc(containers=[container("a")])
    doc["spec"]["restartPolicy"] = "Always"
    cause = one_cause(doc)
    assert cause.field == "spec.restartPolicy"
    assert "containers[N].restartPolicy" in cause.message


def test_pod_volumes_name_the_containers_bind_mounts() -> None:
    doc = cell_doc(containers=[container("a")])
    doc["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    cause = one_cause(doc)
    assert (cause.field, "bind mounts" in cause.message) == ("spec.volumes", True)


def test_env_in_a_spaces_container_defaults_says_what_they_hold() -> None:
    cause = one_cause(space_doc(defaults={"container": {"env": ["TIER=front"]}}))
    assert cause.field == "spec.defaults.container.env"
    assert "isolation ones" in cause.message
    assert "env is each container's" in cause.message


def test_a_namespace_in_metadata_names_the_parents_in_spec() -> None:
    doc = cell_doc(containers=[container("a")])
    doc["metadata"]["namespace"] = "prod"
    cause = one_cause(doc)
    assert (cause.field, "realmId" in cause.message) == ("metadata.namespace", True)


def test_a_command_string_is_the_program() -> None:
    cell = parse_resource(cell_doc(containers=[container("a", command="sh", args=["-c", "x"])]))
    assert cell.spec.containers[0].command == "sh"


def test_container_parent_ids_must_match_the_cell() -> None:
    doc = cell_doc(containers=[container(realmId="other", cellId="web", stackId="default")])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].realmId", "must match the cell's 'default', got 'other'"
    )
    assert parse_resource(cell_doc(containers=[container(realmId="default", cellId="web")]))


# --- the root container ------------------------------------------------------------------


def test_root_container_defaults_to_the_first() -> None:
    cell = parse_resource(cell_doc(containers=[container("a"), container("b")]))
    assert cell.spec.root_container().id == "a"


def test_root_container_is_the_one_marked_root() -> None:
    cell = parse_resource(cell_doc(containers=[container("a"), container("b", root=True)]))
    assert cell.spec.root_container().id == "b"


def test_root_container_id_wins() -> None:
    doc = cell_doc(rootContainerId="b", containers=[container("a"), container("b", root=True)])
    assert parse_resource(doc).spec.root_container().id == "b"


def test_root_container_id_must_name_a_container() -> None:
    doc = cell_doc(rootContainerId="zz", containers=[container("a")])
    assert one_cause(doc) == FieldError("spec.rootContainerId", "no container with id 'zz'")


def test_at_most_one_container_says_root() -> None:
    doc = cell_doc(containers=[container("a", root=True), container("b", root=True)])
    assert one_cause(doc) == FieldError(
        "spec.containers[1].root",
        "only one container may set root: true (spec.containers[0] does)",
    )


def test_root_flag_must_agree_with_root_container_id() -> None:
    doc = cell_doc(rootContainerId="a", containers=[container("a"), container("b", root=True)])
    assert one_cause(doc) == FieldError(
        "spec.containers[1].root", "conflicts with spec.rootContainerId 'a'"
    )


# --- egress ------------------------------------------------------------------------------


def test_egress_rule_needs_exactly_one_destination() -> None:
    neither = egress_space(default="deny", allow=[{"ports": [443]}])
    assert one_cause(neither) == FieldError(
        "spec.network.egress.allow[0].cidr", "exactly one of host or cidr is required"
    )
    both = egress_space(default="deny", allow=[{"host": "example.com", "cidr": "10.0.0.0/8"}])
    assert one_cause(both).field == "spec.network.egress.allow[0].cidr"


@pytest.mark.parametrize("cidr", ["10.0.0.0", "10.0.0.0/33", "not-a-cidr/8", "fd00::/129"])
def test_egress_cidr_must_be_valid(cidr: str) -> None:
    doc = egress_space(default="deny", allow=[{"cidr": cidr}])
    assert one_cause(doc).field == "spec.network.egress.allow[0].cidr"


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_egress_ports_are_1_to_65535(port: int) -> None:
    doc = egress_space(default="deny", allow=[{"host": "example.com", "ports": [80, port]}])
    assert one_cause(doc) == FieldError(
        "spec.network.egress.allow[0].ports[1]",
        f"must be a port between 1 and 65535, got {port}",
    )


def test_egress_host_must_be_a_host_name() -> None:
    doc = egress_space(default="deny", allow=[{"host": "not a host"}])
    assert one_cause(doc).field == "spec.network.egress.allow[0].host"


def test_egress_default_is_required_and_allow_or_deny() -> None:
    assert one_cause(egress_space(allow=[])) == FieldError(
        "spec.network.egress.default", "required"
    )
    assert one_cause(egress_space(default="drop")).field == "spec.network.egress.default"


def test_valid_egress_policy_is_accepted() -> None:
    doc = egress_space(
        default="deny",
        allow=[
            {"host": "api.anthropic.com", "ports": [443]},
            {"host": "10.1.2.3"},
            {"cidr": "10.0.0.0/8", "ports": [1, 65535]},
            {"cidr": "fd00::/8"},
        ],
    )
    space = parse_resource(doc)
    assert space.spec.network.egress.allow[2].ports == [1, 65535]
    assert parse_resource(egress_space(default="allow")).spec.network.egress.allow == []


# --- paths, volumes, tmpfs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields_", "path"),
    [
        ({"workingDir": "app"}, "spec.containers[0].workingDir"),
        (
            {"volumes": [{"source": "/srv", "target": "www"}]},
            "spec.containers[0].volumes[0].target",
        ),
        (
            {"volumes": [{"source": "srv", "target": "/www"}]},
            "spec.containers[0].volumes[0].source",
        ),
        ({"tmpfs": [{"path": "tmp"}]}, "spec.containers[0].tmpfs[0].path"),
        ({"devices": ["dev/kvm"]}, "spec.containers[0].devices[0]"),
        ({"cniConfigPath": "etc/cni"}, "spec.containers[0].cniConfigPath"),
        (
            {"secrets": [{"name": "T", "fromFile": "token"}]},
            "spec.containers[0].secrets[0].fromFile",
        ),
        (
            {"secrets": [{"name": "T", "fromEnv": "T", "mountPath": "run/t"}]},
            "spec.containers[0].secrets[0].mountPath",
        ),
    ],
)
def test_paths_must_be_absolute(fields_: dict[str, Any], path: str) -> None:
    cause = one_cause(cell_doc(containers=[container(**fields_)]))
    assert cause.field == path
    assert "must be an absolute path" in cause.message


def test_absolute_paths_are_accepted() -> None:
    doc = cell_doc(
        containers=[
            container(
                workingDir="/app",
                volumes=[{"source": "/srv", "target": "/www", "readOnly": True}],
                tmpfs=[{"path": "/tmp", "sizeBytes": 1024, "options": ["noexec"]}],
                devices=["/dev/kvm"],
                cniConfigPath="/etc/cni/net.d",
                secrets=[{"name": "t.crt", "fromFile": "/etc/t.crt", "mountPath": "/run/t.crt"}],
            )
        ]
    )
    assert parse_resource(doc).spec.containers[0].volumes[0].read_only is True
    assert parse_resource(space_doc(cniConfigPath="/etc/cni/net.d"))
    assert "spec.cniConfigPath" in fields(space_doc(cniConfigPath="cni"))


def test_tmpfs_volumes_have_no_source() -> None:
    doc = cell_doc(
        containers=[container(volumes=[{"kind": "tmpfs", "source": "/x", "target": "/t"}])]
    )
    assert one_cause(doc) == FieldError(
        "spec.containers[0].volumes[0].source", "must be empty for a tmpfs volume"
    )
    ok = cell_doc(
        containers=[
            container(volumes=[{"kind": "tmpfs", "target": "/t", "sizeBytes": 1, "mode": 0o755}])
        ]
    )
    assert parse_resource(ok).spec.containers[0].volumes[0].mode == 0o755


def test_bind_volumes_need_a_source() -> None:
    doc = cell_doc(containers=[container(volumes=[{"kind": "bind", "target": "/t"}])])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].volumes[0].source", "required for a bind volume"
    )


def test_volume_kind_is_bind_or_tmpfs() -> None:
    doc = cell_doc(
        containers=[container(volumes=[{"kind": "nfs", "source": "/a", "target": "/t"}])]
    )
    assert "spec.containers[0].volumes[0].kind" in fields(doc)


# --- restart policy ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["never", "", None])
def test_restart_backoff_needs_a_restarting_policy(policy: str | None) -> None:
    doc = cell_doc(containers=[container(restartPolicy=policy, restartBackoffSeconds=10)])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].restartBackoffSeconds", "requires restartPolicy always or on-failure"
    )


@pytest.mark.parametrize("backoff", [-1, 0, 301])
def test_restart_backoff_has_a_floor_and_a_cap(backoff: int) -> None:
    doc = cell_doc(containers=[container(restartPolicy="always", restartBackoffSeconds=backoff)])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].restartBackoffSeconds",
        f"must be between 1 and 300 seconds, got {backoff}",
    )


@pytest.mark.parametrize(
    ("policy", "backoff"), [("always", 1), ("on-failure", 30), ("always", 300)]
)
def test_restart_backoff_with_restarting_policy_is_accepted(policy: str, backoff: int) -> None:
    doc = cell_doc(containers=[container(restartPolicy=policy, restartBackoffSeconds=backoff)])
    assert parse_resource(doc).spec.containers[0].restart_backoff_seconds == backoff


@pytest.mark.parametrize("policy", ["always", "never", ""])
def test_restart_max_retries_needs_on_failure(policy: str) -> None:
    doc = cell_doc(containers=[container(restartPolicy=policy, restartMaxRetries=3)])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].restartMaxRetries", "requires restartPolicy on-failure"
    )


def test_restart_max_retries_is_at_least_one() -> None:
    doc = cell_doc(containers=[container(restartPolicy="on-failure", restartMaxRetries=0)])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].restartMaxRetries", "must be between 1 and 1000, got 0"
    )
    ok = cell_doc(containers=[container(restartPolicy="on-failure", restartMaxRetries=1)])
    assert parse_resource(ok).spec.containers[0].restart_max_retries == 1


def test_restart_policy_values() -> None:
    assert "spec.containers[0].restartPolicy" in fields(
        cell_doc(containers=[container(restartPolicy="sometimes")])
    )
    for policy, expected in [("", "never"), ("always", "always"), ("on-failure", "on-failure")]:
        cell = parse_resource(cell_doc(containers=[container(restartPolicy=policy)]))
        assert cell.spec.containers[0].restart_policy == expected


# --- env and secrets ----------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["NOVALUE", "=value", "MY KEY=1"])
def test_env_entries_are_key_value(entry: str) -> None:
    doc = cell_doc(containers=[container(env=["OK=1", entry])])
    assert one_cause(doc).field == "spec.containers[0].env[1]"


def test_env_values_may_be_empty_or_contain_equals() -> None:
    doc = cell_doc(containers=[container(env=["A=", "B=c=d", "PATH=/bin:/usr/bin"])])
    assert parse_resource(doc).spec.containers[0].env == ["A=", "B=c=d", "PATH=/bin:/usr/bin"]


def test_a_secret_sets_exactly_one_source() -> None:
    neither = cell_doc(containers=[container(secrets=[{"name": "TOKEN"}])])
    assert one_cause(neither) == FieldError(
        "spec.containers[0].secrets[0].fromEnv",
        "exactly one of secretRef, fromFile or fromEnv is required",
    )
    both = cell_doc(
        containers=[container(secrets=[{"name": "T", "fromFile": "/t", "fromEnv": "T"}])]
    )
    assert one_cause(both) == FieldError(
        "spec.containers[0].secrets[0].fromEnv",
        "exactly one of secretRef, fromFile or fromEnv, got ['fromFile', 'fromEnv']",
    )
    ref_and_env = cell_doc(
        containers=[
            container(
                secrets=[{"name": "T", "secretRef": {"name": "api", "key": "t"}, "fromEnv": "T"}]
            )
        ]
    )
    assert one_cause(ref_and_env) == FieldError(
        "spec.containers[0].secrets[0].fromEnv",
        "exactly one of secretRef, fromFile or fromEnv, got ['secretRef', 'fromEnv']",
    )
    ref = cell_doc(
        containers=[container(secrets=[{"name": "T", "secretRef": {"name": "api", "key": "t"}}])]
    )
    assert parse_resource(ref).spec.containers[0].secrets[0].secret_ref is not None
    ok = cell_doc(containers=[container(secrets=[{"name": "T", "fromEnv": "GITHUB_TOKEN"}])])
    assert parse_resource(ok).spec.containers[0].secrets[0].from_env == "GITHUB_TOKEN"


# --- tty ---------------------------------------------------------------------------------


def test_container_tty_needs_attachable() -> None:
    doc = cell_doc(containers=[container(tty={"prompt": "$ "})])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].tty",
        "tty.prompt of container 'app' requires attachable: true "
        "(only an attachable container has a TTY)",
    )
    options = {"onInit": [{"script": "x"}], "logFile": "/l", "logLevel": "warn"}
    both = cell_doc(containers=[container(tty=options)])
    assert "tty.onInit, tty.logFile, tty.logLevel of container 'app'" in one_cause(both).message
    # as in kukeon, an empty block is as good as none
    empty = cell_doc(containers=[container(tty={"onInit": [{"runOn": "create"}], "prompt": ""})])
    assert parse_resource(empty).spec.containers[0].tty is not None
    ok = cell_doc(
        containers=[container(attachable=True, tty={"prompt": "$ ", "onInit": [{"script": "x"}]})]
    )
    assert parse_resource(ok).spec.containers[0].tty.on_init[0].script == "x"


def test_tty_log_level_needs_a_log_file() -> None:
    doc = cell_doc(containers=[container(attachable=True, tty={"logLevel": "debug"})])
    assert one_cause(doc) == FieldError(
        "spec.containers[0].tty.logLevel", "requires tty.logFile (it filters that file)"
    )
    bad_level = cell_doc(containers=[container(attachable=True, tty={"logLevel": "loud"})])
    assert one_cause(bad_level).field == "spec.containers[0].tty.logLevel"
    bad_run_on = cell_doc(
        containers=[container(attachable=True, tty={"onInit": [{"script": "x", "runOn": "x"}]})]
    )
    assert one_cause(bad_run_on).field == "spec.containers[0].tty.onInit[0].runOn"


def test_cell_tty_default_names_an_attachable_container() -> None:
    missing = cell_doc(tty={"default": "zz"})
    assert one_cause(missing) == FieldError("spec.tty.default", "no container with id 'zz'")
    not_attachable = cell_doc(tty={"default": "app"})
    assert one_cause(not_attachable) == FieldError(
        "spec.tty.default", "container 'app' is not attachable"
    )
    ok = cell_doc(tty={"default": "app"}, containers=[container(attachable=True)])
    assert parse_resource(ok).spec.tty.default == "app"


# --- unknown fields, kind, apiVersion -----------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({**realm_doc(), "spce": {}}, "spce"),
        ({**realm_doc(), "metadata": {"name": "a", "lables": {}}}, "metadata.lables"),
        (realm_doc(namespce="x"), "spec.namespce"),
        (
            cell_doc(containers=[container(imagePullPolcy="Always")]),
            "spec.containers[0].imagePullPolcy",
        ),
        (
            cell_doc(
                containers=[container(volumes=[{"source": "/a", "target": "/b", "ro": True}])]
            ),
            "spec.containers[0].volumes[0].ro",
        ),
        (space_doc(defaults={"container": {"usr": "1000"}}), "spec.defaults.container.usr"),
        ({**realm_doc(), "status": {"stat": "Ready"}}, "status.stat"),
    ],
)
def test_unknown_fields_are_rejected(doc: dict[str, Any], path: str) -> None:
    assert one_cause(doc) == FieldError(path, "unknown field")


def test_unknown_kind() -> None:
    with pytest.raises(InvalidResource) as info:
        parse_resource({**realm_doc(), "kind": "Pod"})
    assert info.value.causes[0].field == "kind"
    assert "unknown kind 'Pod'" in info.value.causes[0].message
    assert "(kukeon's is Cell)" in info.value.causes[0].message
    with pytest.raises(InvalidResource, match=r"unknown kind 'Deployment' \(kukeon's is CellSet\)"):
        parse_resource({**realm_doc(), "kind": "Deployment"})
    with pytest.raises(
        InvalidResource, match=r"unknown kind 'cell' \(kinds are case-sensitive: Cell\)"
    ):
        parse_resource({**realm_doc(), "kind": "cell"})
    missing = realm_doc()
    del missing["kind"]
    with pytest.raises(InvalidResource, match="kind: required"):
        parse_resource(missing)


def test_api_version_is_required_and_checked() -> None:
    doc = realm_doc()
    del doc["apiVersion"]
    assert one_cause(doc).field == "apiVersion"
    assert one_cause({**realm_doc(), "apiVersion": "v1"}).field == "apiVersion"
    for version in ("v1beta1", "kukeon.io/v1beta1"):
        assert parse_resource({**realm_doc(), "apiVersion": version}).api_version == (
            "kukeon.io/v1beta1"
        )


def test_wrong_types_are_reported_with_the_value() -> None:
    cause = one_cause(cell_doc(containers=[container(privileged="maybe")]))
    assert cause.field == "spec.containers[0].privileged"
    assert "'maybe'" in cause.message


def test_registry_credentials_need_a_username() -> None:
    doc = realm_doc(registryCredentials=[{"password": "p"}])
    assert one_cause(doc) == FieldError("spec.registryCredentials[0].username", "required")
    ok = realm_doc(registryCredentials=[{"username": "u", "password": "p"}])
    assert parse_resource(ok).spec.registry_credentials[0].server_address is None


def test_desired_state_is_running_or_stopped() -> None:
    assert parse_resource(cell_doc()).spec.desired_state == "Running"
    assert parse_resource(cell_doc(desiredState="Stopped")).spec.desired_state == "Stopped"
    assert one_cause(cell_doc(desiredState="Paused")).field == "spec.desiredState"


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidResource, match="must be a mapping"):
        parse_resource(["not", "a", "doc"])  # type: ignore[arg-type]


def test_invalid_resource_pickles() -> None:
    import pickle

    error = InvalidResource("Cell", "a/b/c/d", [FieldError("spec.id", "bad")])
    again = pickle.loads(pickle.dumps(error))
    assert (again.kind, again.name, again.causes) == (error.kind, error.name, error.causes)


@pytest.mark.parametrize("parent", ["realm", "space", "stack", "namespace"])
def test_a_parent_named_in_metadata_names_where_it_goes(parent: str) -> None:
    # Manifests written as for Kubernetes put the place in metadata.
    doc = cell_doc(containers=[container("a")])
    doc["metadata"][parent] = "prod"
    cause = one_cause(doc)
    assert cause.field == f"metadata.{parent}"
    assert "unknown field" in cause.message
    assert "realmId, spaceId, stackId" in cause.message
