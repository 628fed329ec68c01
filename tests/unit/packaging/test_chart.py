"""The Helm chart, rendered by Helm's own template engine and checked against Kubernetes.

Rendering goes through helm-python-sdk (Helm's Go SDK in a shared library, no cluster
needed); every rendered manifest is validated with kubernetes-validate against the oldest
and the newest Kubernetes the chart supports. The ServiceMonitor (a Prometheus Operator
CRD that kubernetes-validate has no schema for) is checked by its shape and its wiring to
the Service. The kukeond configuration file and tokens file the chart writes are parsed by
kukeon's own loaders, so a renamed config field breaks this test, not a node at start.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kukeon.apiserver.auth import TokenBook
from kukeon.daemon.config import DaemonConfig, load_config
from tests.fixtures.services import unavailable
from tests.unit.packaging.healthz import HealthzServer

CHART = Path(__file__).resolve().parents[3] / "charts" / "kukeon"
DASHBOARD = CHART / "dashboards" / "kukeon.json"
RELEASE = "kk"
NAMESPACE = "kukeon-system"
# kubeVersion in Chart.yaml is >=1.25; validate at both ends of what the schemas cover.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")

Manifest = dict[str, Any]

FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfake-ca\n-----END CERTIFICATE-----\n"
FAKE_CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake-client\n-----END CERTIFICATE-----\n"
FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIBfake-key\n-----END PRIVATE KEY-----\n"
EXTERNAL_ETCD_TLS: dict[str, Any] = {
    "etcd": {
        "external": {
            "enabled": True,
            "endpoints": [
                "https://etcd-a.example.internal:2379",
                "https://etcd-b.example.internal:2379",
            ],
            "tls": {"enabled": True, "ca": FAKE_CA, "cert": FAKE_CERT, "key": FAKE_KEY},
        }
    }
}


@pytest.fixture(scope="module")
def helm() -> Any:
    try:
        import helm_python
    except ImportError:
        unavailable("helm-python-sdk is not installed (pip install helm-python-sdk)")
    return helm_python


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        unavailable("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return kubernetes_validate


def render(helm: Any, values: dict[str, Any] | None = None) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        rendered: dict[str, str] = chart.render(
            values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True
        )
    return rendered


def manifests(helm: Any, values: dict[str, Any] | None = None) -> list[Manifest]:
    documents: list[Manifest] = []
    for path, text in sorted(render(helm, values).items()):
        if path.endswith("NOTES.txt"):
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


def by_kind(documents: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in documents if doc["kind"] == kind]


def one(documents: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [
        doc for doc in by_kind(documents, kind) if name is None or doc["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def secret_data(secret: Manifest) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def kukeond_config(documents: list[Manifest], tmp_path: Path) -> DaemonConfig:
    configmap = one(documents, "ConfigMap", f"{RELEASE}-kukeon-config")
    path = tmp_path / "kukeond.yaml"
    path.write_text(configmap["data"]["kukeond.yaml"])
    return load_config(config_file=path, environ={})


def daemonset_pod(documents: list[Manifest]) -> dict[str, Any]:
    pod: dict[str, Any] = one(documents, "DaemonSet")["spec"]["template"]["spec"]
    return pod


def mounts_by_path(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mount["mountPath"]: mount for mount in pod["containers"][0]["volumeMounts"]}


def host_paths(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {vol["name"]: vol["hostPath"] for vol in pod["volumes"] if "hostPath" in vol}


def all_value_sets() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "defaults", {}
    yield "external-etcd-tls", EXTERNAL_ETCD_TLS
    yield (
        "no-api-ephemeral-etcd",
        {"api": {"enabled": False}, "etcd": {"persistence": {"enabled": False}}},
    )
    yield (
        "everything-on",
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "kukeond": {
                "nodeSelector": {"kukeon.io/node": "true"},
                "nodeLabels": {"zone": "a"},
                "insecureRegistries": ["registry.lan:5000"],
                "tolerations": [{"operator": "Exists"}],
            },
            "api": {
                "tokens": {
                    "items": [
                        {"token": "0123456789abcdef0123", "user": "alice", "role": "admin"},
                        {
                            "token": "fedcba98765432100000",
                            "user": "ci",
                            "role": "editor",
                            "realms": ["dev"],
                        },
                    ]
                }
            },
        },
    )


@pytest.mark.parametrize(
    ("label", "values"), [pytest.param(*case, id=case[0]) for case in all_value_sets()]
)
@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_every_rendered_manifest_validates_against_kubernetes(
    helm: Any, kubernetes_validate: Any, label: str, values: dict[str, Any], kube_version: str
) -> None:
    documents = manifests(helm, values)
    assert documents, label
    for doc in documents:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked by test_service_monitor_scrapes_the_metrics_port
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(
                f"{label}: {doc['kind']}/{doc['metadata']['name']} is not valid for "
                f"Kubernetes {kube_version}: {error.message} at {list(error.path)}"
            ) from error


def test_helm_lint_finds_no_errors(helm: Any) -> None:
    for _label, values in all_value_sets():
        report = helm.lint(str(CHART), values, namespace=NAMESPACE)
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_default_values_run_kukeond_everywhere_with_a_three_member_etcd(
    helm: Any, tmp_path: Path
) -> None:
    documents = manifests(helm)
    assert sorted(doc["kind"] for doc in documents) == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "DaemonSet",
            "PodDisruptionBudget",
            "Secret",
            "Secret",
            "Service",
            "Service",
            "Service",
            "StatefulSet",
        ]
    )

    etcd = one(documents, "StatefulSet")
    assert etcd["spec"]["replicas"] == 3
    assert etcd["spec"]["serviceName"] == f"{RELEASE}-kukeon-etcd-headless"
    command = etcd["spec"]["template"]["spec"]["containers"][0]["command"]
    initial = next(arg for arg in command if arg.startswith("--initial-cluster="))
    members = initial.removeprefix("--initial-cluster=").split(",")
    assert [member.split("=")[0] for member in members] == [
        f"{RELEASE}-kukeon-etcd-{i}" for i in range(3)
    ]
    assert all(
        member.endswith(f".{RELEASE}-kukeon-etcd-headless.{NAMESPACE}.svc:2380")
        for member in members
    )
    headless = one(documents, "Service", f"{RELEASE}-kukeon-etcd-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert one(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 2

    config = kukeond_config(documents, tmp_path)
    assert config.etcd_endpoints == tuple(
        f"http://{RELEASE}-kukeon-etcd-{i}.{RELEASE}-kukeon-etcd-headless.{NAMESPACE}.svc:2379"
        for i in range(3)
    )
    assert config.api_tokens_file == Path("/etc/kukeon/api-tokens/tokens.yaml")
    assert config.etcd_ca_file is None
    # What kukeond uses is what the DaemonSet mounts from the host.
    mounted = set(mounts_by_path(daemonset_pod(documents)))
    assert {
        str(config.containerd_address),
        str(config.state_dir),
        str(config.run_dir),
        str(config.netns_dir),
        str(config.cni_conf_dir),
        *map(str, config.cni_bin_dirs),
    } <= mounted


def test_kukeond_runs_privileged_with_the_host_mounts(helm: Any) -> None:
    pod = daemonset_pod(manifests(helm))
    assert pod["hostPID"] is True
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    container = pod["containers"][0]
    assert container["securityContext"]["privileged"] is True
    assert container["command"] == ["kukeond"]
    assert container["args"][:2] == ["--config", "/etc/kukeon/kukeond.yaml"]

    mounts = mounts_by_path(pod)
    for path in (
        "/run/containerd/containerd.sock",
        "/sys/fs/cgroup",
        "/var/lib/kukeon",
        "/run/kukeon",
        "/run/netns",
        "/opt/cni/bin",
        "/usr/lib/cni",
        "/etc/cni/net.d",
    ):
        assert path in mounts, path
    assert mounts["/run/netns"]["mountPropagation"] == "Bidirectional"
    assert mounts["/usr/lib/cni"]["readOnly"] is True

    volumes = host_paths(pod)
    assert volumes["containerd-socket"] == {
        "path": "/run/containerd/containerd.sock",
        "type": "Socket",
    }
    assert volumes["cgroup"]["path"] == "/sys/fs/cgroup"
    assert volumes["state"] == {"path": "/var/lib/kukeon", "type": "DirectoryOrCreate"}

    env = {item["name"]: item for item in container["env"]}
    assert env["KUKEON_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["KUKEON_METRICS_ADDRESS"]["value"] == "$(HOST_IP):9464"
    assert env["KUKEON_API_ADDRESS"]["value"] == "$(HOST_IP):7443"


def test_generated_api_credentials_are_usable(helm: Any) -> None:
    documents = manifests(helm)
    tls = one(documents, "Secret", f"{RELEASE}-kukeon-api-tls")
    assert tls["type"] == "kubernetes.io/tls"
    pair = secret_data(tls)
    ssl.PEM_cert_to_DER_cert(pair["tls.crt"])  # raises on anything but one PEM certificate
    assert "PRIVATE KEY-----" in pair["tls.key"]

    tokens = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-api-tokens"))["tokens.yaml"]
    book = TokenBook.from_document(yaml.safe_load(tokens), source="chart tokens")
    assert len(book) == 1
    (entry,) = yaml.safe_load(tokens)["tokens"]
    assert entry["role"] == "admin"
    assert book.authenticate(entry["token"]) is not None


def test_given_tokens_are_written_as_kukeonds_tokens_file(helm: Any) -> None:
    values = dict(all_value_sets())["everything-on"]
    documents = manifests(helm, values)
    tokens = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-api-tokens"))["tokens.yaml"]
    book = TokenBook.from_document(yaml.safe_load(tokens), source="chart tokens")
    principal = book.authenticate("fedcba98765432100000")
    assert principal is not None
    assert principal.user == "ci"
    assert principal.realms == frozenset({"dev"})


def test_external_etcd_with_tls_replaces_the_statefulset(helm: Any, tmp_path: Path) -> None:
    documents = manifests(helm, EXTERNAL_ETCD_TLS)
    assert by_kind(documents, "StatefulSet") == []
    assert by_kind(documents, "PodDisruptionBudget") == []
    assert not [doc for doc in by_kind(documents, "Service") if "etcd" in doc["metadata"]["name"]]

    client_tls = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-etcd-client-tls"))
    assert client_tls == {"ca.crt": FAKE_CA, "tls.crt": FAKE_CERT, "tls.key": FAKE_KEY}

    config = kukeond_config(documents, tmp_path)
    assert config.etcd_endpoints == (
        "https://etcd-a.example.internal:2379",
        "https://etcd-b.example.internal:2379",
    )
    assert config.etcd_ca_file == Path("/etc/kukeon/etcd-tls/ca.crt")
    assert config.etcd_cert_file == Path("/etc/kukeon/etcd-tls/tls.crt")
    assert config.etcd_key_file == Path("/etc/kukeon/etcd-tls/tls.key")

    pod = daemonset_pod(documents)
    assert mounts_by_path(pod)["/etc/kukeon/etcd-tls"]["readOnly"] is True
    secrets = {
        vol["name"]: vol["secret"]["secretName"] for vol in pod["volumes"] if "secret" in vol
    }
    assert secrets["etcd-tls"] == f"{RELEASE}-kukeon-etcd-client-tls"


def test_external_etcd_secrets_of_the_operator_are_referenced_not_created(
    helm: Any, tmp_path: Path
) -> None:
    values = {
        "etcd": {
            "external": {
                "enabled": True,
                "endpoints": ["https://etcd.example.internal:2379"],
                "tls": {"enabled": True, "existingSecret": "my-etcd-client"},
                "auth": {"username": "kukeon", "existingSecret": "my-etcd-password"},
            }
        },
        "api": {"tls": {"existingSecret": "my-api-tls"}, "tokens": {"existingSecret": "my-tokens"}},
    }
    documents = manifests(helm, values)
    assert by_kind(documents, "Secret") == []
    pod = daemonset_pod(documents)
    secrets = {
        vol["name"]: vol["secret"]["secretName"] for vol in pod["volumes"] if "secret" in vol
    }
    assert secrets == {
        "etcd-tls": "my-etcd-client",
        "api-tls": "my-api-tls",
        "api-tokens": "my-tokens",
    }
    env = {item["name"]: item for item in pod["containers"][0]["env"]}
    assert env["KUKEON_ETCD_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-etcd-password",
        "key": "password",
    }
    assert kukeond_config(documents, tmp_path).etcd_username == "kukeon"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"etcd": {"external": {"enabled": True}}}, "etcd.external.endpoints is empty"),
        (
            {
                "etcd": {
                    "external": {
                        "enabled": True,
                        "endpoints": ["https://e:2379"],
                        "tls": {"enabled": True},
                    }
                }
            },
            "etcd.external.tls.existingSecret",
        ),
        ({"api": {"tls": {"cert": FAKE_CERT}}}, "api.tls.cert and api.tls.key"),
    ],
)
def test_incomplete_values_are_refused_with_the_key_to_fix(
    helm: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message.replace(".", r"\.")):
        render(helm, values)


def test_without_the_api_no_credentials_are_rendered(helm: Any, tmp_path: Path) -> None:
    documents = manifests(helm, {"api": {"enabled": False}})
    assert by_kind(documents, "Secret") == []
    service = one(documents, "Service", f"{RELEASE}-kukeon")
    assert [port["name"] for port in service["spec"]["ports"]] == ["metrics"]
    config = kukeond_config(documents, tmp_path)
    assert config.api_tokens_file is None
    assert config.api_tls_cert_file is None


def test_service_selects_kukeond_and_names_its_ports(helm: Any) -> None:
    documents = manifests(helm)
    service = one(documents, "Service", f"{RELEASE}-kukeon")
    daemonset = one(documents, "DaemonSet")
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container_ports = {
        port["name"] for port in daemonset["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert (
        {port["targetPort"] for port in service["spec"]["ports"]}
        == container_ports
        == {"api", "metrics"}
    )


def test_service_monitor_scrapes_the_metrics_port(helm: Any) -> None:
    assert by_kind(manifests(helm), "ServiceMonitor") == []
    documents = manifests(
        helm, {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}
    )
    monitor = one(documents, "ServiceMonitor")
    service = one(documents, "Service", f"{RELEASE}-kukeon")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_grafana_dashboard_is_shipped_for_the_sidecar(helm: Any) -> None:
    if not DASHBOARD.exists():
        pytest.fail(f"{DASHBOARD} is missing: the chart's dashboard ConfigMap cannot render")
    documents = manifests(helm, {"grafanaDashboard": {"namespace": "monitoring"}})
    configmap = one(documents, "ConfigMap", f"{RELEASE}-kukeon-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert json.loads(configmap["data"]["kukeon.json"]) == json.loads(DASHBOARD.read_text())
    assert by_kind(manifests(helm, {"grafanaDashboard": {"enabled": False}}), "ConfigMap") == [
        one(documents, "ConfigMap", f"{RELEASE}-kukeon-config")
    ]


def test_node_selection_and_labels_reach_the_daemonset_and_kukeond(
    helm: Any, tmp_path: Path
) -> None:
    values = dict(all_value_sets())["everything-on"]
    documents = manifests(helm, values)
    pod = daemonset_pod(documents)
    assert pod["nodeSelector"] == {"kukeon.io/node": "true"}
    assert pod["tolerations"] == [{"operator": "Exists"}]
    config = kukeond_config(documents, tmp_path)
    assert config.node_labels == {"zone": "a"}
    assert config.insecure_registries == ("registry.lan:5000",)


def test_image_tag_defaults_to_the_app_version(helm: Any) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pod = daemonset_pod(manifests(helm))
    assert pod["containers"][0]["image"] == f"ghcr.io/eminwux/kukeon:{chart['appVersion']}"
    pod = daemonset_pod(
        manifests(helm, {"image": {"repository": "registry.lan/kukeon", "tag": "dev"}})
    )
    assert pod["containers"][0]["image"] == "registry.lan/kukeon:dev"


def test_chart_app_version_is_the_package_version() -> None:
    pyproject = (CHART.parents[1] / "pyproject.toml").read_text()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert f'version = "{chart["appVersion"]}"' in pyproject


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"etcd": {"extrnal": {"enabled": True}}}, "/etcd': additional properties 'extrnal'"),
        ({"etcd": {"replicas": 0}}, "/etcd/replicas': minimum"),
        (
            {"api": {"tokens": {"items": [{"token": "short", "user": "a", "role": "root"}]}}},
            "/api/tokens/items/0/role",
        ),
        ({"kukeond": {"hostPaths": {"stateDir": "var/lib/kukeon"}}}, "/kukeond/hostPaths/stateDir"),
        ({"etcd": {"external": {"endpoints": ["etcd:2379"]}}}, "/etcd/external/endpoints/0"),
    ],
)
def test_values_schema_names_a_mistyped_or_malformed_value(
    helm: Any, values: dict[str, Any], where: str
) -> None:
    with pytest.raises(helm.HelmValuesError) as raised:
        render(helm, values)
    assert where in str(raised.value)


def test_values_schema_knows_every_default_value() -> None:
    """values.yaml and values.schema.json describe the same keys."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], where: str) -> None:
        if not isinstance(value, dict) or node.get("additionalProperties") is not False:
            return
        properties = node["properties"]
        assert set(value) <= set(properties), f"{where}: {set(value) - set(properties)}"
        for key, child in value.items():
            walk(child, properties[key], f"{where}.{key}")

    walk(values, schema, "values")


def test_liveness_probe_asks_healthz_on_the_api_socket(helm: Any) -> None:
    """The DaemonSet's probe, run here against a server on a socket in a scratch runDir."""
    with tempfile.TemporaryDirectory(prefix="kk-probe-") as directory:
        run_dir = Path(directory)
        values = {"kukeond": {"hostPaths": {"runDir": str(run_dir)}}}
        probe = daemonset_pod(manifests(helm, values))["containers"][0]["livenessProbe"]
        command = probe["exec"]["command"]
        assert command[0] == "/opt/kukeon/bin/python"

        def run() -> int:
            return subprocess.run(
                [sys.executable, *command[1:]], capture_output=True, timeout=20, check=False
            ).returncode

        assert run() != 0  # nothing listens yet
        server = HealthzServer(run_dir / "kukeond.sock", 200)
        try:
            assert run() == 0
            assert server.requests[0].startswith(b"GET /healthz HTTP/1.0\r\n")
        finally:
            server.close()
