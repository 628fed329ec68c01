"""What every field of every kind does: the registry `test_field_effects` holds the models to.

A field the models accept must have its effect or be refused. Each path a user writes
(`Cell.spec.containers[].restartPolicy`, camelCase as in a manifest; `[]` is an item of a
list, `{}` a value of a map) is listed here with one verdict:

- `Effect(test)`: the field does something, and ``test`` (``path::function``) proves it;
- `Refused(test)`: the models refuse every value but the one kukeon derives itself, and
  ``test`` proves the refusal;
- `StoredOnly(why)`: kept as written and acted on by nobody, on purpose (``why``);
- `Unverified(missing)`: accepted, but no test proves an effect; ``missing`` says what is
  missing. Every such path is also in `KNOWN_GAPS`, so a gap is a visible decision.

A field whose type is a model (or a list or map of models) is not listed itself: its own
fields are. Status fields are written by kukeond, never by users: they are listed by path
in `STATUS_FIELDS` under one verdict, so a new status field must be added here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .probe_effects import PROBE_EFFECTS, PROBE_STATUS_FIELDS


@dataclass(frozen=True)
class Effect:
    """The field has its effect; ``test`` (``tests/...py::test_name``) proves it."""

    test: str


@dataclass(frozen=True)
class Refused:
    """Any value but the derived one is refused; ``test`` proves the refusal."""

    test: str


@dataclass(frozen=True)
class StoredOnly:
    """Kept as written, acted on by nobody, for the reason given."""

    why: str


@dataclass(frozen=True)
class Unverified:
    """Accepted, but no test proves an effect: ``missing`` says what is missing."""

    missing: str


Verdict = Effect | Refused | StoredOnly | Unverified

# --- the tests cited more than once --------------------------------------------------------

_NOT_ACTED_ON = (
    "tests/integration/apiserver/test_resources.py::test_fields_kukeond_would_ignore_are_refused"
)
_VALIDATION = "tests/unit/api/test_validation.py"
_SPEC = "tests/unit/runtime/test_spec.py"
_SPACE_DEFAULTS = "tests/unit/api/test_defaults.py::test_container_beats_space_beats_built_in"
_SPACE_DEFAULTS_LIVE = (
    "tests/integration/controllers/test_space_defaults.py::"
    "test_space_defaults_read_only_root_and_user"
)
_HIERARCHY = (
    "tests/integration/controllers/test_layer_orphans.py::"
    "test_a_space_then_a_realm_deleted_while_down_leave_nothing"
)
_LABEL_SELECTORS = (
    "tests/integration/store/test_registry_crud.py::test_list_scopes_and_label_selectors"
)
_BY_NAME = "tests/integration/apiserver/test_resources.py::test_create_get_list_every_level"
_RESOURCE_VERSION = (
    "tests/integration/apiserver/test_resources.py::test_not_found_already_exists_conflict"
)
_NO_CLIENT_FINALIZERS = (
    "tests/integration/apiserver/test_resources.py::test_clients_cannot_add_finalizers"
)
_FILE_SECRETS = (
    "tests/integration/controllers/test_secrets.py::"
    "test_secrets_reach_the_container_and_stay_out_of_etcd"
)
_REF_SECRETS = (
    "tests/integration/controllers/test_secrets.py::"
    "test_secret_refs_reach_the_container_as_env_and_a_0400_file_of_its_user"
)
_TTY_OPTIONS = (
    "tests/integration/daemon/test_tty_options.py::test_prompt_on_init_stages_and_log_file"
)
_FLEET = (
    "tests/integration/fleet/test_fleet.py::test_cells_spread_pin_by_selector_and_unschedulable"
)
_PULL_CREDENTIALS = (
    "tests/integration/daemon/test_image_routes.py::test_pull_uses_the_realms_registry_credentials"
)
_SPEC_ID = f"{_VALIDATION}::test_spec_id_must_equal_metadata_name"
_CONTAINER_PARENTS = f"{_VALIDATION}::test_container_parent_ids_must_match_the_cell"

_STORE_WRITTEN = (
    "written by the store: the API server drops a client's value on create and the "
    "registry keeps the stored one on update"
)
_NO_ANNOTATIONS_READ = "free-form notes: kukeon reads no annotation of this kind"
_API_VERSION = "envelope: v1beta1 or kukeon.io/v1beta1, written back as kukeon.io/v1beta1"
_KIND = "envelope: names the model; each kind accepts only its own name"

_EGRESS = "tests/unit/controllers/test_egress_policy.py::test_the_translation_keeps_each_rule"
_PROFILE_UNIT = "tests/unit/api/test_cellprofile.py"
_PROFILE_VALUES = f"{_PROFILE_UNIT}::test_parameter_values_defaults_required_and_unknown"
_PROFILE_IDENTITY = f"{_PROFILE_UNIT}::test_the_template_is_a_cell_spec_without_its_identity"
_PROFILE_RUN = (
    "tests/integration/apiserver/test_cellprofiles.py::"
    "test_a_run_makes_a_labelled_cell_whose_container_sees_the_profile"
)
_PROFILE_LOOKUP = (
    "tests/integration/apiserver/test_cellprofiles.py::"
    "test_a_run_looks_in_the_stack_then_the_space_then_the_realm"
)


def _metadata(
    kind: str,
    *,
    name: Verdict,
    labels: Verdict = Effect(_LABEL_SELECTORS),
    annotations: Verdict = StoredOnly(_NO_ANNOTATIONS_READ),
    deletion_grace: Verdict = StoredOnly(
        f"{_STORE_WRITTEN}; a delete gives it to cells only (refused for other kinds)"
    ),
) -> dict[str, Verdict]:
    """The metadata every kind shares; ``name``, ``labels``, ``annotations`` vary by kind."""
    return {
        f"{kind}.apiVersion": StoredOnly(_API_VERSION),
        f"{kind}.kind": StoredOnly(_KIND),
        f"{kind}.metadata.name": name,
        f"{kind}.metadata.labels": labels,
        f"{kind}.metadata.annotations": annotations,
        f"{kind}.metadata.uid": StoredOnly(_STORE_WRITTEN),
        f"{kind}.metadata.generation": StoredOnly(
            f"{_STORE_WRITTEN}; 1 on create, one more at each change of the spec"
        ),
        f"{kind}.metadata.resourceVersion": Effect(_RESOURCE_VERSION),
        f"{kind}.metadata.creationTimestamp": StoredOnly(_STORE_WRITTEN),
        f"{kind}.metadata.deletionTimestamp": StoredOnly(
            f"{_STORE_WRITTEN}; set when a delete waits for finalizers"
        ),
        f"{kind}.metadata.deletionGracePeriodSeconds": deletion_grace,
        f"{kind}.metadata.finalizers": Refused(_NO_CLIENT_FINALIZERS),
    }


FIELDS: dict[str, Verdict] = {
    # --- Realm ------------------------------------------------------------------------------
    **_metadata("Realm", name=Effect(_BY_NAME)),
    "Realm.spec.namespace": Effect(
        "tests/integration/controllers/test_naming_fields.py::test_a_realm_namespace_is_where_its_containers_live"
    ),
    "Realm.spec.registryCredentials[].username": Effect(_PULL_CREDENTIALS),
    "Realm.spec.registryCredentials[].password": Effect(_PULL_CREDENTIALS),
    "Realm.spec.registryCredentials[].passwordSecretRef.name": Effect(
        "tests/integration/store/test_secrets.py::test_password_secret_refs_are_read_from_the_realms_secrets"
    ),
    "Realm.spec.registryCredentials[].passwordSecretRef.key": Effect(
        "tests/integration/store/test_secrets.py::test_password_secret_refs_are_read_from_the_realms_secrets"
    ),
    "Realm.spec.registryCredentials[].serverAddress": Effect(_PULL_CREDENTIALS),
    "Realm.spec.securityLevel": Effect(
        "tests/integration/apiserver/test_admission_matrix.py::test_levels_relax_in_steps"
    ),
    "Realm.spec.quota.objects": Effect(
        "tests/integration/store/test_realm_quotas.py::test_a_realm_holds_no_more_objects_than_its_quota"
    ),
    "Realm.spec.quota.writeBytesPerSecond": Effect(
        "tests/integration/apiserver/test_write_budget_api.py::test_a_realms_own_rate_is_its_budget_and_only_an_admin_sets_it"
    ),
    "Realm.spec.limits.memoryBytes": Effect(
        "tests/integration/controllers/test_realm_limits.py::test_a_realms_limits_hold_its_containers"
    ),
    "Realm.spec.limits.containerEphemeralStorageBytes": Effect(
        "tests/integration/controllers/test_realm_ephemeral_storage.py::test_a_realms_default_ephemeral_storage_limit_holds_its_containers"
    ),
    "Realm.spec.limits.pids": Effect(
        "tests/integration/controllers/test_realm_limits.py::test_a_realms_limits_hold_its_containers"
    ),
    "Realm.spec.quota.imageStorageBytes": Effect(
        "tests/integration/daemon/test_image_storage_limits.py::test_a_realms_image_storage_is_bounded"
    ),
    "Realm.spec.quota.spaces": Effect(
        "tests/integration/apiserver/test_realm_boundaries.py::test_an_editor_creates_no_more_spaces_than_the_admin_allows"
    ),
    "Realm.spec.quota.storageBytes": Effect(
        "tests/integration/store/test_realm_quotas.py::test_bytes_are_counted_and_a_charged_update_that_grows_is_refused"
    ),
    # --- Space ------------------------------------------------------------------------------
    **_metadata("Space", name=Effect(_HIERARCHY)),
    "Space.spec.realmId": Effect(_HIERARCHY),
    "Space.spec.cniConfigPath": Effect(_HIERARCHY),
    "Space.spec.network.egress.default": Effect(_EGRESS),
    "Space.spec.network.egress.allow[].host": Effect(_EGRESS),
    "Space.spec.network.egress.allow[].cidr": Effect(_EGRESS),
    "Space.spec.network.egress.allow[].ports": Effect(_EGRESS),
    "Space.spec.defaults.container.user": Effect(_SPACE_DEFAULTS_LIVE),
    "Space.spec.defaults.container.readOnlyRootFilesystem": Effect(_SPACE_DEFAULTS_LIVE),
    "Space.spec.defaults.container.capabilities.drop": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.capabilities.add": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.securityOpts": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.tmpfs[].path": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.tmpfs[].sizeBytes": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.tmpfs[].options": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.resources.memoryLimitBytes": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.resources.cpuShares": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.resources.pidsLimit": Effect(_SPACE_DEFAULTS),
    "Space.spec.defaults.container.resources.cpuLimitMillicores": Effect(_SPACE_DEFAULTS),
    # the watcher is handed the effective spec (tests/unit/controllers/
    # test_ephemeral_storage.py::test_the_plan_carries_the_effective_spec)
    "Space.spec.defaults.container.resources.ephemeralStorageLimitBytes": Effect(_SPACE_DEFAULTS),
    # --- Stack ------------------------------------------------------------------------------
    **_metadata("Stack", name=Effect(_HIERARCHY)),
    "Stack.spec.id": Refused(_SPEC_ID),
    "Stack.spec.realmId": Effect(_HIERARCHY),
    "Stack.spec.spaceId": Effect(_HIERARCHY),
    # --- Cell -------------------------------------------------------------------------------
    **_metadata(
        "Cell",
        name=Effect(_BY_NAME),
        annotations=Effect(
            "tests/integration/controllers/test_stop_start.py::"
            "test_restarted_at_annotation_restarts_every_container"
        ),
        deletion_grace=Effect(
            "tests/integration/controllers/test_stop_start.py::"
            "test_a_deletes_grace_period_wins_and_a_later_one_cuts_a_stop_short"
        ),
    ),
    "Cell.spec.id": Refused(_SPEC_ID),
    "Cell.spec.realmId": Effect(_HIERARCHY),
    "Cell.spec.spaceId": Effect(_HIERARCHY),
    "Cell.spec.stackId": Effect(_HIERARCHY),
    "Cell.spec.rootContainerId": Effect(f"{_VALIDATION}::test_root_container_id_wins"),
    "Cell.spec.tty.default": Effect(
        "tests/integration/daemon/test_attach.py::test_attach_default_not_running_and_exit"
    ),
    "Cell.spec.autoDelete": Effect(
        "tests/integration/controllers/test_auto_delete.py::"
        "test_auto_delete_removes_document_and_host_resources"
    ),
    # runc inside a nested cell runs a container whose memory limit holds; where the host
    # cannot guard a container's own limits (cgroup v1, cgroup2 without nsdelegate) an
    # unprivileged one is refused (test_nested_cgroups.py, test_cgroup_nesting.py)
    "Cell.spec.nestedCgroupRuntime": Effect(
        "tests/integration/controllers/test_nested_cgroups.py::"
        "test_runc_in_a_nested_cell_enforces_its_memory_limit"
    ),
    # false: the process is the realm's range on the host, the rootfs shifted to it, a
    # secret file unreadable by a host account of the in-container uid; what a user
    # namespace cannot honour is refused (tests/unit/api/test_host_users.py)
    "Cell.spec.hostUsers": Effect(
        "tests/integration/controllers/test_host_users.py::"
        "test_root_inside_is_the_realms_range_outside"
    ),
    "Cell.spec.desiredState": Effect(
        "tests/integration/controllers/test_stop_start.py::test_stop_then_start_a_cell"
    ),
    "Cell.spec.terminationGracePeriodSeconds": Effect(
        "tests/integration/controllers/test_stop_start.py::"
        "test_a_cells_termination_grace_period_is_its_stop_grace"
    ),
    "Cell.spec.nodeName": Effect(_FLEET),
    "Cell.spec.nodeSelector": Effect(_FLEET),
    # --- Cell: containers -------------------------------------------------------------------
    "Cell.spec.containers[].id": Effect(
        "tests/integration/controllers/test_cell_lifecycle.py::test_two_container_cell_becomes_ready"
    ),
    "Cell.spec.containers[].containerdId": Refused(_NOT_ACTED_ON),
    "Cell.spec.containers[].realmId": Refused(_CONTAINER_PARENTS),
    "Cell.spec.containers[].spaceId": Refused(_CONTAINER_PARENTS),
    "Cell.spec.containers[].stackId": Refused(_CONTAINER_PARENTS),
    "Cell.spec.containers[].cellId": Refused(_CONTAINER_PARENTS),
    "Cell.spec.containers[].root": Effect(
        f"{_VALIDATION}::test_root_container_is_the_one_marked_root"
    ),
    "Cell.spec.containers[].image": Effect(
        "tests/integration/controllers/test_cell_lifecycle.py::test_two_container_cell_becomes_ready"
    ),
    "Cell.spec.containers[].command": Effect(f"{_SPEC}::test_process_args_docker_semantics"),
    "Cell.spec.containers[].args": Effect(f"{_SPEC}::test_process_args_docker_semantics"),
    "Cell.spec.containers[].workingDir": Effect(f"{_SPEC}::test_working_dir"),
    "Cell.spec.containers[].env": Effect(f"{_SPEC}::test_env_merge_order_and_kukeon_identity"),
    "Cell.spec.containers[].ports": Effect(
        "tests/integration/controllers/test_ports.py::"
        "test_published_port_reached_refused_to_others_and_released"
    ),
    "Cell.spec.containers[].volumes[].kind": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].volumes[].source": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].volumes[].target": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].volumes[].readOnly": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].volumes[].sizeBytes": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].volumes[].mode": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].networks": Effect(
        "tests/integration/controllers/test_cell_networks.py::test_a_cell_joins_another_spaces_network"
    ),
    "Cell.spec.containers[].networksAliases": Effect(
        "tests/integration/controllers/test_naming_fields.py::test_network_aliases_resolve_to_the_cell_inside_it"
    ),
    "Cell.spec.containers[].privileged": Effect(f"{_SPEC}::test_privileged"),
    "Cell.spec.containers[].hostNetwork": Effect(
        f"{_SPEC}::test_host_network_pid_and_cgroup_omit_namespaces"
    ),
    "Cell.spec.containers[].hostPID": Effect(
        f"{_SPEC}::test_host_network_pid_and_cgroup_omit_namespaces"
    ),
    "Cell.spec.containers[].hostCgroup": Effect(
        f"{_SPEC}::test_host_network_pid_and_cgroup_omit_namespaces"
    ),
    "Cell.spec.containers[].user": Effect(f"{_SPEC}::test_user_resolution"),
    "Cell.spec.containers[].readOnlyRootFilesystem": Effect(f"{_SPEC}::test_read_only_root"),
    "Cell.spec.containers[].capabilities.drop": Effect(
        f"{_SPEC}::test_add_and_drop_with_or_without_prefix_any_case"
    ),
    "Cell.spec.containers[].capabilities.add": Effect(
        f"{_SPEC}::test_add_and_drop_with_or_without_prefix_any_case"
    ),
    "Cell.spec.containers[].securityOpts": Effect(f"{_SPEC}::test_no_new_privileges"),
    "Cell.spec.containers[].devices": Effect(
        f"{_SPEC}::test_devices_become_nodes_and_cgroup_rules"
    ),
    "Cell.spec.containers[].tmpfs[].path": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].tmpfs[].sizeBytes": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].tmpfs[].options": Effect(
        f"{_SPEC}::test_volumes_tmpfs_secrets_and_rendered_files"
    ),
    "Cell.spec.containers[].resources.memoryLimitBytes": Effect(f"{_SPEC}::test_resources"),
    "Cell.spec.containers[].resources.cpuShares": Effect(f"{_SPEC}::test_resources"),
    "Cell.spec.containers[].resources.pidsLimit": Effect(f"{_SPEC}::test_resources"),
    "Cell.spec.containers[].resources.cpuLimitMillicores": Effect(
        "tests/integration/controllers/test_cpu_limit.py::test_a_cpu_limit_caps_a_busy_loop"
    ),
    "Cell.spec.containers[].resources.ephemeralStorageLimitBytes": Effect(
        "tests/integration/controllers/test_ephemeral_storage.py::"
        "test_a_container_writing_past_its_limit_is_evicted"
    ),
    "Cell.spec.containers[].secrets[].name": Effect(_FILE_SECRETS),
    "Cell.spec.containers[].secrets[].fromFile": Effect(_FILE_SECRETS),
    "Cell.spec.containers[].secrets[].secretRef.name": Effect(_REF_SECRETS),
    "Cell.spec.containers[].secrets[].secretRef.key": Effect(_REF_SECRETS),
    "Cell.spec.containers[].secrets[].fromEnv": Effect(_FILE_SECRETS),
    "Cell.spec.containers[].secrets[].mountPath": Effect(_REF_SECRETS),
    "Cell.spec.containers[].cniConfigPath": Effect(
        "tests/integration/controllers/test_cell_networks.py::test_the_root_containers_cni_config_replaces_the_spaces"
    ),
    "Cell.spec.containers[].restartPolicy": Effect(
        "tests/integration/controllers/test_restart.py::test_always_restarts_after_a_clean_exit"
    ),
    "Cell.spec.containers[].restartBackoffSeconds": Effect(
        # three restarts within 20 s: the default back-off (at once, 10 s, 20 s) needs 30 s
        "tests/integration/controllers/test_restart.py::test_always_restarts_after_a_clean_exit"
    ),
    "Cell.spec.containers[].restartMaxRetries": Effect(
        "tests/integration/controllers/test_restart.py::test_on_failure_gives_up_after_max_retries"
    ),
    "Cell.spec.containers[].stopSignal": Effect(
        "tests/integration/controllers/test_stop_start.py::"
        "test_a_container_is_stopped_with_its_images_stop_signal"
    ),
    "Cell.spec.containers[].attachable": Effect(
        "tests/integration/daemon/test_attach.py::test_attach_type_resize_detach_restart_and_logs"
    ),
    "Cell.spec.containers[].tty.prompt": Effect(_TTY_OPTIONS),
    "Cell.spec.containers[].tty.onInit[].script": Effect(_TTY_OPTIONS),
    "Cell.spec.containers[].tty.onInit[].runOn": Effect(_TTY_OPTIONS),
    "Cell.spec.containers[].tty.logFile": Effect(_TTY_OPTIONS),
    "Cell.spec.containers[].tty.logLevel": Effect(
        "tests/unit/runtime/test_ttyinit.py::test_log_levels_filter"
    ),
    # --- Node -------------------------------------------------------------------------------
    **_metadata(
        "Node",
        name=Effect(
            "tests/integration/fleet/test_fleet.py::test_nodes_register_with_capacity_and_heartbeat"
        ),
        labels=Effect(_FLEET),
    ),
    "Node.spec.unschedulable": Effect(_FLEET),
    # --- Secret -----------------------------------------------------------------------------
    **_metadata("Secret", name=Effect(_REF_SECRETS)),
    "Secret.metadata.realm": Effect(_REF_SECRETS),
    "Secret.metadata.space": Effect(_REF_SECRETS),
    "Secret.metadata.stack": Effect(_REF_SECRETS),
    "Secret.spec": StoredOnly(
        "an empty model kept for the envelope's sake (a Secret's body is data/stringData); "
        "never serialised"
    ),
    "Secret.type": StoredOnly(
        "the model accepts only Opaque (Kubernetes' shape), so the value never varies"
    ),
    "Secret.data": Effect(
        "tests/e2e/test_kukectl_secrets.py::"
        "test_a_secret_created_with_kukectl_reaches_the_container_and_nothing_else"
    ),
    "Secret.stringData": Effect(_REF_SECRETS),
    # --- CellProfile (its template's fields: see _TEMPLATE_FIELDS below) ---------------------
    **_metadata("CellProfile", name=Effect(_PROFILE_RUN)),
    "CellProfile.metadata.realm": Effect(_PROFILE_LOOKUP),
    "CellProfile.metadata.space": Effect(_PROFILE_LOOKUP),
    "CellProfile.metadata.stack": Effect(_PROFILE_LOOKUP),
    "CellProfile.spec.prefix": Effect(f"{_PROFILE_UNIT}::test_generated_names"),
    "CellProfile.spec.parameters[].name": Effect(_PROFILE_RUN),
    "CellProfile.spec.parameters[].default": Effect(_PROFILE_VALUES),
    "CellProfile.spec.parameters[].required": Effect(_PROFILE_VALUES),
    "CellProfile.spec.parameters[].description": Effect(_PROFILE_VALUES),
}

FIELDS.update({path: Effect(test) for path, test in PROBE_EFFECTS.items()})

KUKEOND_STATUS = StoredOnly("status: written by kukeond (controllers, registry), never by users")

STATUS_FIELDS: tuple[str, ...] = (
    # Realm: RealmStatus
    "Realm.status.reason",
    "Realm.status.message",
    "Realm.status.cgroupPath",
    "Realm.status.subtreeControllers",
    "Realm.status.cgroupReady",
    "Realm.status.observedGeneration",
    "Realm.status.nodeName",
    "Realm.status.createdAt",
    "Realm.status.updatedAt",
    "Realm.status.readyAt",
    "Realm.status.state",
    "Realm.status.containerdNamespaceReady",
    "Realm.status.nodes{}.state",
    "Realm.status.nodes{}.reason",
    "Realm.status.nodes{}.message",
    "Realm.status.nodes{}.cgroupPath",
    "Realm.status.nodes{}.subtreeControllers",
    "Realm.status.nodes{}.observedGeneration",
    "Realm.status.nodes{}.updatedAt",
    "Realm.status.nodes{}.readyAt",
    # Space: SpaceStatus
    "Space.status.reason",
    "Space.status.message",
    "Space.status.cgroupPath",
    "Space.status.subtreeControllers",
    "Space.status.cgroupReady",
    "Space.status.observedGeneration",
    "Space.status.nodeName",
    "Space.status.createdAt",
    "Space.status.updatedAt",
    "Space.status.readyAt",
    "Space.status.state",
    "Space.status.network.bridgeName",
    "Space.status.network.subnet",
    "Space.status.network.gateway",
    "Space.status.network.cniConfigFile",
    "Space.status.nodes{}.state",
    "Space.status.nodes{}.reason",
    "Space.status.nodes{}.message",
    "Space.status.nodes{}.cgroupPath",
    "Space.status.nodes{}.subtreeControllers",
    "Space.status.nodes{}.observedGeneration",
    "Space.status.nodes{}.updatedAt",
    "Space.status.nodes{}.readyAt",
    "Space.status.nodes{}.bridgeName",
    "Space.status.nodes{}.subnet",
    "Space.status.nodes{}.gateway",
    "Space.status.nodes{}.cniConfigFile",
    # Stack: StackStatus
    "Stack.status.reason",
    "Stack.status.message",
    "Stack.status.cgroupPath",
    "Stack.status.subtreeControllers",
    "Stack.status.cgroupReady",
    "Stack.status.observedGeneration",
    "Stack.status.nodeName",
    "Stack.status.createdAt",
    "Stack.status.updatedAt",
    "Stack.status.readyAt",
    "Stack.status.state",
    "Stack.status.nodes{}.state",
    "Stack.status.nodes{}.reason",
    "Stack.status.nodes{}.message",
    "Stack.status.nodes{}.cgroupPath",
    "Stack.status.nodes{}.subtreeControllers",
    "Stack.status.nodes{}.observedGeneration",
    "Stack.status.nodes{}.updatedAt",
    "Stack.status.nodes{}.readyAt",
    # Cell: CellStatus
    "Cell.status.reason",
    "Cell.status.message",
    "Cell.status.cgroupPath",
    "Cell.status.subtreeControllers",
    "Cell.status.cgroupReady",
    "Cell.status.observedGeneration",
    "Cell.status.nodeName",
    "Cell.status.createdAt",
    "Cell.status.updatedAt",
    "Cell.status.readyAt",
    "Cell.status.state",
    "Cell.status.readyObserved",
    "Cell.status.network.bridgeName",
    "Cell.status.network.ip",
    "Cell.status.network.interfaces[].interface",
    "Cell.status.network.interfaces[].space",
    "Cell.status.network.interfaces[].network",
    "Cell.status.network.interfaces[].ip",
    "Cell.status.containers[].id",
    "Cell.status.containers[].name",
    "Cell.status.containers[].state",
    "Cell.status.containers[].pid",
    "Cell.status.containers[].exitCode",
    "Cell.status.containers[].exitSignal",
    "Cell.status.containers[].restartCount",
    "Cell.status.containers[].backoffRestarts",
    "Cell.status.containers[].image",
    "Cell.status.containers[].ephemeralStorageLimitBytes",
    "Cell.status.containers[].reason",
    "Cell.status.containers[].message",
    "Cell.status.containers[].createdAt",
    "Cell.status.containers[].startTime",
    "Cell.status.containers[].finishTime",
    "Cell.status.containers[].restartTime",
    "Cell.status.containers[].lastState.exitCode",
    "Cell.status.containers[].lastState.signal",
    "Cell.status.containers[].lastState.reason",
    "Cell.status.containers[].lastState.message",
    "Cell.status.containers[].lastState.startedAt",
    "Cell.status.containers[].lastState.finishedAt",
    "Cell.status.containers[].ports[].hostIP",
    "Cell.status.containers[].ports[].hostPort",
    "Cell.status.containers[].ports[].containerPort",
    "Cell.status.containers[].ports[].protocol",
    # Node: NodeStatus
    "Node.status.state",
    "Node.status.reason",
    "Node.status.message",
    "Node.status.addresses[].type",
    "Node.status.addresses[].address",
    "Node.status.apiEndpoint",
    "Node.status.capacity.cpus",
    "Node.status.capacity.memoryBytes",
    "Node.status.capacity.cgroupMode",
    "Node.status.capacity.containerdVersion",
    "Node.status.capacity.runcVersion",
    "Node.status.capacity.cniPlugins",
    "Node.status.allocatable.cpus",
    "Node.status.allocatable.memoryBytes",
    "Node.status.allocatable.cgroupMode",
    "Node.status.allocatable.containerdVersion",
    "Node.status.allocatable.runcVersion",
    "Node.status.allocatable.cniPlugins",
    "Node.status.conditions[].type",
    "Node.status.conditions[].status",
    "Node.status.conditions[].reason",
    "Node.status.conditions[].message",
    "Node.status.conditions[].lastTransitionTime",
    "Node.status.lastHeartbeatTime",
    "Node.status.observedGeneration",
    "Node.status.nodeName",
    "Node.status.updatedAt",
    # Secret: SecretStatus
    "Secret.status.keys[].name",
    "Secret.status.keys[].size",
    "Secret.status.keys[].sha256",
    # CellProfile: an empty status (a template runs nowhere)
    "CellProfile.status",
)

STATUS_FIELDS = (*STATUS_FIELDS, *PROBE_STATUS_FIELDS)

# A profile's template holds a cell's spec: each field has the effect it has in a cell (it is
# copied into the cell a run makes, proven by _PROFILE_RUN), and the cell's identity is refused.
_TEMPLATE_FIELDS: dict[str, Verdict] = {
    "CellProfile.spec.cell." + path.removeprefix("Cell.spec."): verdict
    for path, verdict in FIELDS.items()
    if path.startswith("Cell.spec.")
    and path not in ("Cell.spec.id", "Cell.spec.realmId", "Cell.spec.spaceId", "Cell.spec.stackId")
}
_TEMPLATE_FIELDS.update(
    {
        f"CellProfile.spec.cell.containers[].{field}": Refused(_PROFILE_IDENTITY)
        for field in ("realmId", "spaceId", "stackId", "cellId", "containerdId")
    }
)
FIELDS.update(_TEMPLATE_FIELDS)

REGISTRY: dict[str, Verdict] = {**FIELDS, **dict.fromkeys(STATUS_FIELDS, KUKEOND_STATUS)}
"""Every path the walker finds, with its verdict."""

KNOWN_GAPS: frozenset[str] = frozenset()
"""The fields marked `Unverified`: accepted, with no test proving their effect. Closing a
gap (a test, an implementation, or a refusal) removes its path from here."""
KNOWN_GAPS |= {
    "CellProfile.spec.cell." + path.removeprefix("Cell.spec.")
    for path in KNOWN_GAPS
    if "CellProfile.spec.cell." + path.removeprefix("Cell.spec.") in _TEMPLATE_FIELDS
}
"""A gap of a cell's field is a gap of the same field in a profile's template."""

# --- CellSet --------------------------------------------------------------------------------
_SET_UNIT = "tests/unit/api/test_cellset.py"
_SET_PLAN = "tests/unit/controllers/test_cellsetplan.py"
_SET_RUN = (
    "tests/integration/controllers/test_cellsets.py::test_a_set_comes_up_scales_rolls_and_cascades"
)
_SET_PROFILE_RUN = (
    "tests/integration/apiserver/test_cellset_profiles_api.py::"
    "test_a_set_from_a_profile_makes_ready_cells_with_the_values"
)
_SET_FIELDS: dict[str, Verdict] = {
    **_metadata("CellSet", name=Effect(f"{_SET_UNIT}::test_cells_are_named_and_labelled")),
    "CellSet.spec.realmId": Effect(f"{_SET_UNIT}::test_cells_are_named_and_labelled"),
    "CellSet.spec.spaceId": Effect(f"{_SET_UNIT}::test_cells_are_named_and_labelled"),
    "CellSet.spec.stackId": Effect(f"{_SET_UNIT}::test_cells_are_named_and_labelled"),
    "CellSet.spec.replicas": Effect(_SET_RUN),
    "CellSet.spec.selector.matchLabels": Refused(
        f"{_SET_UNIT}::test_the_selector_must_match_the_template_labels"
    ),
    "CellSet.spec.template.metadata.labels": Effect(
        f"{_SET_UNIT}::test_cells_are_named_and_labelled"
    ),
    "CellSet.spec.template.metadata.annotations": Effect(
        f"{_SET_UNIT}::test_template_annotations_go_to_the_cells_and_roll_them"
    ),
    "CellSet.spec.strategy.type": Effect(f"{_SET_PLAN}::test_recreate_removes_the_old_first"),
    "CellSet.spec.strategy.rollingUpdate.maxSurge": Effect(
        f"{_SET_PLAN}::test_a_rollout_keeps_within_surge_and_unavailability"
    ),
    "CellSet.spec.strategy.rollingUpdate.maxUnavailable": Effect(
        f"{_SET_PLAN}::test_a_rollout_keeps_within_surge_and_unavailability"
    ),
    "CellSet.spec.minReadySeconds": Effect(
        f"{_SET_PLAN}::test_min_ready_seconds_gates_the_removal_of_old_cells"
    ),
    "CellSet.spec.progressDeadlineSeconds": Effect(
        "tests/unit/controllers/test_cellset_progress.py::test_a_stalled_rollout_stops_and_says_so"
    ),
    "CellSet.spec.nodeSelector": Effect(
        f"{_SET_UNIT}::test_the_sets_node_selector_goes_to_every_cell_and_rolls_them"
    ),
    "CellSet.spec.lostNode.replaceAfterSeconds": Effect(
        "tests/unit/controllers/test_cellset_lost.py::"
        "test_the_set_controller_hands_them_back_to_the_scheduler"
    ),
    "CellSet.spec.lostNode.stopOnReturn": Refused(f"{_SET_UNIT}::test_the_lost_node_rules"),
    "CellSet.spec.spread.topologyKey": Effect(
        "tests/unit/api/test_spread.py::test_a_topology_key_bounds_each_value_of_the_label"
    ),
    "CellSet.spec.revisionHistoryLimit": Effect(
        "tests/unit/controllers/test_cellset_revisions.py::test_the_history_limit_keeps_the_latest"
    ),
    "CellSet.spec.profile": Effect(_SET_PROFILE_RUN),
    "CellSet.spec.params": Effect(_SET_PROFILE_RUN),
}
# A set's template holds a cell's spec: each field has the effect it has in a cell (it is
# copied into every cell of the set, proven by _SET_RUN), and the cell's identity is refused.
_SET_FIELDS.update(
    {
        "CellSet.spec.template.spec." + path.removeprefix("CellProfile.spec.cell."): verdict
        for path, verdict in _TEMPLATE_FIELDS.items()
    }
)
_SET_FIELDS.update(
    {
        f"CellSet.spec.template.spec.containers[].{field}": Refused(
            f"{_SET_UNIT}::test_the_template_has_no_identity"
        )
        for field in ("realmId", "spaceId", "stackId", "cellId", "containerdId")
    }
)
FIELDS.update(_SET_FIELDS)
_SET_STATUS = tuple(
    f"CellSet.status.{field}"
    for field in (
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "availableReplicas",
        "observedGeneration",
        "templateHash",
        "conditions[].type",
        "conditions[].status",
        "conditions[].reason",
        "conditions[].message",
        "conditions[].lastTransitionTime",
        "conditions[].lastUpdateTime",
        "revisions[].revision",
        "revisions[].templateHash",
        "revisions[].changeCause",
        "revisions[].template",
    )
)
STATUS_FIELDS = (*STATUS_FIELDS, *_SET_STATUS)
REGISTRY.update(_SET_FIELDS)
REGISTRY.update(dict.fromkeys(_SET_STATUS, KUKEOND_STATUS))
KNOWN_GAPS |= {
    "CellSet.spec.template.spec." + path.removeprefix("CellProfile.spec.cell.")
    for path in KNOWN_GAPS
    if path.startswith("CellProfile.spec.cell.")
}
