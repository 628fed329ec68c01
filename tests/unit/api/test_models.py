"""The resource envelope, kukeon v1beta1 compatibility, and the hierarchy keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kukeon.api import (
    API_VERSION,
    KIND_MODELS,
    Cell,
    CellSpec,
    CellState,
    ContainerSpec,
    ContainerState,
    Kind,
    ObjectMeta,
    Realm,
    RealmState,
    Space,
    SpaceState,
    Stack,
    StackState,
    key_of,
    load_manifests,
    parent_of,
    parse_resource,
    scope_of,
    to_document,
)
from tests.unit.api.samples import cell_doc, container, realm_doc, space_doc, stack_doc

# The examples of kukeon's manifest reference (docs/site/manifests), verbatim in shape.
KUKEON_EXAMPLES = """
apiVersion: v1beta1
kind: Realm
metadata:
  name: main
  labels: {}
spec:
  namespace: kukeon-main
  registryCredentials:
    - username: myuser
      password: mypass
      serverAddress: registry.example.com
status:
  state: Ready
  cgroupPath: /kukeon/main
---
apiVersion: v1beta1
kind: Space
metadata:
  name: agent-sandbox
spec:
  realmId: agents
  defaults:
    container:
      user: "1000:1000"
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
        add: ["NET_BIND_SERVICE"]
      securityOpts: ["no-new-privileges"]
      tmpfs:
        - path: /tmp
          sizeBytes: 268435456   # 256 MiB
      resources:
        memoryLimitBytes: 4294967296   # 4 GiB
        pidsLimit: 512
---
apiVersion: v1beta1
kind: Stack
metadata:
  name: wordpress
  labels: {}
spec:
  id: wordpress
  realmId: main
  spaceId: blog
status:
  state: Ready
  cgroupPath: /kukeon/main/blog/wordpress
---
apiVersion: v1beta1
kind: Cell
metadata:
  name: hello-world
  labels: {}
spec:
  id: hello-world
  realmId: default
  spaceId: default
  stackId: default
  rootContainerId: web
  nestedCgroupRuntime: true
  containers:
    - id: web
      image: docker.io/library/busybox:latest
      command: /bin/sh
      args:
        - -c
        - "exec busybox httpd -f -v -p 8080 -h /www"
    - id: sidecar
      realmId: default
      spaceId: default
      stackId: default
      cellId: hello-world
      image: docker.io/library/nginx:alpine
      env:
        - "NGINX_HOST=example.com"
      ports: []
      volumes:
        - source: /srv/html
          target: /usr/share/nginx/html
          readOnly: true
        - kind: tmpfs
          target: /tmp
          sizeBytes: 268435456 # 256 MiB
          mode: 0755
      networks: []
      networksAliases: []
      privileged: false
      hostCgroup: false
      cniConfigPath: ""
      restartPolicy: ""
      secrets:
        - name: ANTHROPIC_API_KEY
          fromFile: /etc/kukeon/secrets/anthropic.key
        - name: GITHUB_TOKEN
          fromEnv: GITHUB_TOKEN_SCOPED
        - name: tls.crt
          fromFile: /etc/kukeon/secrets/tls.crt
          mountPath: /run/secrets/tls.crt
status:
  state: Ready
  cgroupPath: /kukeon/default/default/default/hello-world
  containers:
    - id: web
      state: Ready
      startTime: "2026-04-21T12:00:00Z"
      finishTime: "0001-01-01T00:00:00Z"
      exitCode: 0
      restartCount: 0
"""


def test_kukeon_reference_manifests_load_with_their_meaning() -> None:
    realm, space, stack, cell = load_manifests(KUKEON_EXAMPLES)
    assert isinstance(realm, Realm)
    assert realm.spec.namespace == "kukeon-main"
    assert realm.spec.registry_credentials[0].server_address == "registry.example.com"
    assert realm.status.state is RealmState.READY
    assert isinstance(space, Space)
    assert space.spec.defaults is not None
    defaults = space.spec.defaults.container
    assert defaults is not None
    assert defaults.capabilities is not None
    assert defaults.resources is not None
    assert defaults.user == "1000:1000"
    assert defaults.capabilities.drop == ["ALL"]
    assert defaults.resources.memory_limit_bytes == 4294967296
    assert isinstance(stack, Stack)
    assert (stack.spec.realm_id, stack.spec.space_id, stack.spec.id) == (
        "main",
        "blog",
        "wordpress",
    )
    assert isinstance(cell, Cell)
    assert cell.spec.root_container().id == "web"
    assert cell.spec.nested_cgroup_runtime is True
    sidecar = cell.spec.containers[1]
    assert sidecar.volumes[0].kind == "bind"
    assert sidecar.volumes[0].read_only is True
    assert sidecar.volumes[1].mode == 0o755
    assert sidecar.cni_config_path is None  # "" means unset in kukeon
    assert sidecar.restart_policy == "never"  # "" means never
    assert sidecar.secrets[2].mount_path == "/run/secrets/tls.crt"
    web_status = cell.status.containers[0]
    assert web_status.state is ContainerState.RUNNING
    assert web_status.start_time == datetime(2026, 4, 21, 12, tzinfo=UTC)
    assert web_status.finish_time is None  # Go's zero time


def test_go_nulls_for_empty_slices_and_maps_load() -> None:
    doc = cell_doc(containers=[container(args=None, env=None, volumes=None, ports=None)])
    doc["metadata"]["labels"] = None
    doc["status"] = {"state": "Pending", "containers": None}
    cell = parse_resource(doc)
    assert cell.spec.containers[0].args == []
    assert cell.metadata.labels == {}
    assert cell.status.containers == []


@pytest.mark.parametrize(
    ("doc", "number", "state"),
    [
        (realm_doc(), 2, RealmState.READY),
        (space_doc(), 2, SpaceState.FAILED),
        (stack_doc(), 1, StackState.READY),
        (cell_doc(), 2, CellState.STOPPED),
    ],
)
def test_kukeon_integer_states_load(doc: dict, number: int, state: object) -> None:  # type: ignore[type-arg]
    doc["status"] = {"state": number}
    assert parse_resource(doc).status.state == state


def test_state_names_are_exact() -> None:
    assert [s.value for s in RealmState] == [
        "Pending",
        "Creating",
        "Ready",
        "Deleting",
        "Failed",
        "Unknown",
    ]
    assert [s.value for s in SpaceState] == [s.value for s in RealmState]
    assert [s.value for s in StackState] == ["Pending", "Ready", "Failed", "Unknown"]
    assert [s.value for s in CellState] == [
        "Pending",
        "Ready",
        "Degraded",
        "Stopped",
        "Exited",
        "Error",
        "Failed",
        "Unknown",
    ]
    assert [s.value for s in ContainerState] == [
        "Pending",
        "Running",
        "Stopped",
        "Paused",
        "Pausing",
        "Failed",
        "Unknown",
        "Waiting",
    ]


def test_spec_and_status_are_always_present() -> None:
    doc = realm_doc()
    del doc["spec"]
    realm = parse_resource(doc)
    assert realm.spec.namespace == "main.kukeon.io"
    assert realm.status.state is RealmState.PENDING
    space = parse_resource({"apiVersion": "v1beta1", "kind": "Space", "metadata": {"name": "s"}})
    assert space.spec.realm_id == "default"
    stack = parse_resource({**stack_doc("s"), "spec": None, "status": None})
    assert (stack.spec.realm_id, stack.spec.space_id, stack.spec.id) == ("default", "default", "s")


def test_to_document_is_camel_case_with_the_full_api_version() -> None:
    doc = cell_doc(containers=[container(hostPID=True, readOnlyRootFilesystem=True)])
    document = to_document(parse_resource(doc))
    assert document["apiVersion"] == API_VERSION == "kukeon.io/v1beta1"
    spec = document["spec"]["containers"][0]
    assert spec["hostPID"] is True
    assert spec["readOnlyRootFilesystem"] is True
    assert "command" not in spec  # None is not written
    assert parse_resource(document) == parse_resource(doc)


def test_models_take_python_names_too() -> None:
    cell = Cell(
        metadata=ObjectMeta(name="web"),
        spec=CellSpec(containers=[ContainerSpec(id="app", image="busybox", host_pid=True)]),
    )
    assert cell.spec.id == "web"
    assert cell.status.state is CellState.PENDING
    assert to_document(cell)["spec"]["containers"][0]["hostPID"] is True
    assert cell.model_copy(deep=True) == cell


def test_metadata_fields() -> None:
    doc = realm_doc()
    doc["metadata"] = {
        "name": "main",
        "labels": {"team": "a"},
        "annotations": {"note": "b"},
        "uid": "3f1c",
        "generation": 4,
        "resourceVersion": "1234",
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "deletionTimestamp": None,
        "finalizers": ["kukeon.io/realm"],
    }
    meta = parse_resource(doc).metadata
    assert meta.resource_version == "1234"
    assert meta.creation_timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert meta.finalizers == ["kukeon.io/realm"]


def test_scope_parent_and_key() -> None:
    realm = parse_resource(realm_doc("r"))
    space = parse_resource(space_doc("s", realmId="r"))
    stack = parse_resource(stack_doc("t", realmId="r", spaceId="s"))
    cell = parse_resource(cell_doc("c", realmId="r", spaceId="s", stackId="t"))
    assert [scope_of(x) for x in (realm, space, stack, cell)] == [
        (),
        ("r",),
        ("r", "s"),
        ("r", "s", "t"),
    ]
    assert [key_of(x) for x in (realm, space, stack, cell)] == [
        ("r",),
        ("r", "s"),
        ("r", "s", "t"),
        ("r", "s", "t", "c"),
    ]
    assert parent_of(realm) is None
    assert parent_of(space) == (Kind.REALM, ("r",))
    assert parent_of(stack) == (Kind.SPACE, ("r", "s"))
    assert parent_of(cell) == (Kind.STACK, ("r", "s", "t"))
    assert parent_of(cell)[1] == key_of(stack)  # type: ignore[index]


def test_kind_models() -> None:
    assert {kind: model.__name__ for kind, model in KIND_MODELS.items()} == {
        Kind.REALM: "Realm",
        Kind.SPACE: "Space",
        Kind.STACK: "Stack",
        Kind.CELL: "Cell",
        Kind.NODE: "Node",
        Kind.SECRET: "Secret",
        Kind.CELL_PROFILE: "CellProfile",
        Kind.CELL_SET: "CellSet",
    }


def test_cell_fleet_fields() -> None:
    cell = parse_resource(cell_doc(nodeName="node-a", nodeSelector={"zone": "eu"}))
    assert cell.spec.node_name == "node-a"
    assert cell.spec.node_selector == {"zone": "eu"}
    assert parse_resource(cell_doc()).spec.node_name is None


def test_cell_status_fields() -> None:
    doc = cell_doc()
    doc["status"] = {
        "state": "Degraded",
        "reason": "ContainerExited",
        "message": "app exited 1",
        "cgroupPath": "/kukeon/default/default/default/web",
        "subtreeControllers": ["cpu", "memory"],
        "observedGeneration": 3,
        "readyObserved": True,
        "network": {"bridgeName": "k-1a2b3c4d"},
        "containers": [
            {
                "id": "app",
                "state": "Stopped",
                "pid": 42,
                "exitCode": 1,
                "exitSignal": "",
                "restartCount": 2,
                "restartTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    status = parse_resource(doc).status
    assert status.state is CellState.DEGRADED
    assert status.network.bridge_name == "k-1a2b3c4d"
    assert status.containers[0].exit_code == 1
    assert status.containers[0].exit_signal is None


def test_parsing_does_not_modify_the_input_document() -> None:
    import copy

    doc = cell_doc(containers=[container(args=None)])
    del doc["spec"]["realmId"]
    doc["metadata"] = {}
    doc["spec"]["id"] = "web"
    before = copy.deepcopy(doc)
    parse_resource(doc)
    assert doc == before


def test_root_container_of_an_unvalidated_spec_raises_lookup_error() -> None:
    with pytest.raises(LookupError):
        CellSpec(containers=[]).root_container()
    with pytest.raises(LookupError):
        CellSpec(
            root_container_id="x", containers=[ContainerSpec(id="a", image="b")]
        ).root_container()
