"""The Helm chart, rendered by Helm's own template engine and checked against Kubernetes.

Rendering goes through helm-python-sdk (Helm's Go SDK in a shared library, no cluster
needed); every rendered manifest is validated with kubernetes-validate against the oldest
and the newest Kubernetes the chart supports. The ServiceMonitor (a Prometheus Operator
CRD that kubernetes-validate has no schema for) is checked by its shape and its wiring to
the Service. The kukeond configuration file and tokens file the chart writes are parsed by
kukeon's own loaders, so a renamed config field breaks this test, not a node at start.
The certificate the chart generates is put through a TLS handshake (in memory) with the
verification kukeond's fleet forwarding uses.
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
from cryptography import x509

from kukeon.apiserver.auth import Role, TokenBook
from kukeon.daemon.config import ConfigError, DaemonConfig, load_config
from kukeon.daemon.forwarding import read_token, server_hostname
from tests.fixtures.services import unavailable
from tests.unit.packaging.healthz import HealthzServer
from tests.unit.packaging.test_dockerfile import image_environment

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


FLEET_TOKEN = "fleet-0123456789abcdef"
FLEET_OWN_CERTIFICATE: dict[str, Any] = {
    "api": {"tls": {"cert": FAKE_CERT, "key": FAKE_KEY, "ca": FAKE_CA}},
    "fleet": {"tlsServerDomain": "", "token": {"value": FLEET_TOKEN}},
}
FLEET_OPERATOR_SECRETS: dict[str, Any] = {
    "api": {"tls": {"existingSecret": "my-api-tls"}, "tokens": {"existingSecret": "my-tokens"}},
    "fleet": {
        "tlsServerDomain": "kukeon.example.internal",
        "token": {"existingSecret": "my-fleet", "key": "fleet-token"},
    },
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


_RENDERED: dict[str, dict[str, str]] = {}
"""Each set of values is rendered once (~0.5 s a render; the defaults were rendered 15
times): the tests that read the same rendering's generated credentials change nothing."""


def render(helm: Any, values: dict[str, Any] | None = None) -> dict[str, str]:
    key = json.dumps(values or {}, sort_keys=True)
    if key not in _RENDERED:
        with helm.Chart.load(str(CHART)) as chart:
            _RENDERED[key] = chart.render(
                values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True
            )
    return dict(_RENDERED[key])


def manifests(helm: Any, values: dict[str, Any] | None = None) -> list[Manifest]:
    documents: list[Manifest] = []
    for path, text in sorted(render(helm, values).items()):
        if path.endswith("NOTES.txt"):
            continue
        # libyaml's safe loader: the pure-Python one took a quarter of this file's time.
        documents.extend(doc for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc)
    return documents


def by_kind(documents: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in documents if doc["kind"] == kind]


def one(documents: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [
        doc for doc in by_kind(documents, kind) if name is None or doc["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


CHART_ETCD_SECRETS = {f"{RELEASE}-kukeon-etcd-member-tls", f"{RELEASE}-kukeon-etcd-client-tls"}
"""The certificates of the chart's own etcd, rendered whenever it is (not credentials of
the API or the fleet)."""


def api_secrets(documents: list[Manifest]) -> list[Manifest]:
    """The Secrets of the chart other than its own etcd's certificates, encryption keys and
    metrics token."""
    return [
        doc
        for doc in by_kind(documents, "Secret")
        if doc["metadata"]["name"] not in CHART_ETCD_SECRETS
        and not doc["metadata"]["name"].endswith(("-encryption", "-metrics-token"))
    ]


def secret_data(secret: Manifest) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def kukeond_config(documents: list[Manifest], tmp_path: Path) -> DaemonConfig:
    configmap = one(documents, "ConfigMap", f"{RELEASE}-kukeon-config")
    path = tmp_path / "kukeond.yaml"
    path.write_text(configmap["data"]["kukeond.yaml"])
    return load_config(config_file=path, environ={})


def kukeond_config_with_env(documents: list[Manifest], tmp_path: Path) -> DaemonConfig:
    """The configuration kukeond reads: the ConfigMap's file, and the DaemonSet's plain env
    over the image's (the Dockerfile's ENV)."""
    configmap = one(documents, "ConfigMap", f"{RELEASE}-kukeon-config")
    path = tmp_path / "kukeond.yaml"
    path.write_text(configmap["data"]["kukeond.yaml"])
    container = daemonset_pod(documents)["containers"][0]
    environ = image_environment()
    environ.update({item["name"]: item["value"] for item in container["env"] if "value" in item})
    return load_config(config_file=path, environ=environ)


def secret_volumes(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {vol["name"]: vol["secret"] for vol in pod["volumes"] if "secret" in vol}


def mounted_from(pod: dict[str, Any], file: Path) -> tuple[str, str]:
    """(Secret name, key) of the Secret file ``file`` in the kukeond container."""
    for mount in pod["containers"][0]["volumeMounts"]:
        if file.parent == Path(mount["mountPath"]):
            secret = secret_volumes(pod)[mount["name"]]
            for item in secret.get("items", []):
                if item["path"] == file.name:
                    return secret["secretName"], item["key"]
            return secret["secretName"], file.name
    raise AssertionError(f"{file} is not in a mounted Secret")


def tls_handshake(cert: str, key: str, ca: str, hostname: str | None, tmp_path: Path) -> None:
    """A TLS handshake in memory: a server with ``cert``, a client trusting ``ca`` and
    checking ``hostname`` as the fleet forwarding does; raises ssl.SSLCertVerificationError."""
    (tmp_path / "tls.crt").write_text(cert)
    (tmp_path / "tls.key").write_text(key)
    (tmp_path / "ca.crt").write_text(ca)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT  # the default from Python 3.13 on
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, from_client, server_hostname=hostname)
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if all(done.values()):
            return
    raise AssertionError("the TLS handshake did not finish")


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
    yield "fleet-own-certificate", FLEET_OWN_CERTIFICATE
    yield "fleet-operator-secrets", FLEET_OPERATOR_SECRETS
    yield "no-fleet", {"fleet": {"enabled": False}}


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
            "Secret",
            "Secret",
            "Secret",
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
        f"https://{RELEASE}-kukeon-etcd-{i}.{RELEASE}-kukeon-etcd-headless.{NAMESPACE}.svc:2379"
        for i in range(3)
    )
    assert config.api_tokens_file == Path("/etc/kukeon/api-tokens/tokens.yaml")
    assert config.etcd_ca_file == Path("/etc/kukeon/etcd-tls/ca.crt")
    assert config.plaintext_etcd_endpoints == ()
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
    # The pinned bind sources (runtime.bindpins) are mounted there for runc, on the host.
    assert mounts["/var/lib/kukeon"]["mountPropagation"] == "Bidirectional"
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


def test_allowed_host_paths_reach_the_config_and_are_mounted(helm: Any, tmp_path: Path) -> None:
    """kukeond opens a bind source under an allowed directory itself (runtime.bindpins), so
    each is mounted at its own path, up to its ``{realm}`` component."""
    values = {"kukeond": {"allowedHostPaths": ["/srv/data/{realm}", "/srv/shared"]}}
    documents = manifests(helm, values)
    config = kukeond_config(documents, tmp_path)
    assert config.allowed_host_paths == (Path("/srv/data/{realm}"), Path("/srv/shared"))
    pod = daemonset_pod(documents)
    mounts = mounts_by_path(pod)
    for path in ("/srv/data", "/srv/shared"):
        assert mounts[path]["mountPropagation"] == "HostToContainer", mounts[path]
    volumes = host_paths(pod)
    assert volumes["allowed-host-path-0"] == {"path": "/srv/data", "type": "Directory"}
    assert volumes["allowed-host-path-1"] == {"path": "/srv/shared", "type": "Directory"}


def test_generated_api_credentials_are_usable(helm: Any) -> None:
    documents = manifests(helm)
    tls = one(documents, "Secret", f"{RELEASE}-kukeon-api-tls")
    assert tls["type"] == "kubernetes.io/tls"
    pair = secret_data(tls)
    ssl.PEM_cert_to_DER_cert(pair["tls.crt"])  # raises on anything but one PEM certificate
    assert "PRIVATE KEY-----" in pair["tls.key"]

    assert "-----BEGIN CERTIFICATE-----" in pair["ca.crt"]
    assert pair["ca.crt"] != pair["tls.crt"]

    tokens = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-api-tokens"))["tokens.yaml"]
    book = TokenBook.from_document(yaml.safe_load(tokens), source="chart tokens")
    assert len(book) == 2
    admin, fleet = yaml.safe_load(tokens)["tokens"]
    assert admin["role"] == "admin"
    assert book.authenticate(admin["token"]) is not None
    assert fleet == {
        "token": secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-fleet-token"))["token"],
        "user": "fleet",
        "role": "node",
    }
    assert len(fleet["token"]) == 40


def test_given_tokens_are_written_as_kukeonds_tokens_file(helm: Any) -> None:
    values = dict(all_value_sets())["everything-on"]
    documents = manifests(helm, values)
    tokens = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-api-tokens"))["tokens.yaml"]
    book = TokenBook.from_document(yaml.safe_load(tokens), source="chart tokens")
    principal = book.authenticate("fedcba98765432100000")
    assert principal is not None
    assert principal.user == "ci"
    assert principal.realms == frozenset({"dev"})
    # The generated fleet token is added to the given entries, with role node.
    fleet_token = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-fleet-token"))["token"]
    assert len(book) == 3
    fleet = book.authenticate(fleet_token)
    assert fleet is not None
    assert fleet.role == Role.NODE


def test_every_node_forwards_with_the_fleet_token_and_checks_the_ca(
    helm: Any, tmp_path: Path
) -> None:
    """Default values: what kukeond reads as fleetTokenFile/fleetCaFile comes from the
    chart's Secrets, the token is role node in the tokens file, and the generated
    certificate passes the check of every node's name under the server domain."""
    documents = manifests(helm)
    config = kukeond_config_with_env(documents, tmp_path)
    assert config.fleet_tls_server_domain == "nodes.kukeon"
    assert config.fleet_token_file is not None
    assert config.fleet_ca_file is not None
    pod = daemonset_pod(documents)
    for file in (config.fleet_token_file, config.fleet_ca_file):
        assert mounts_by_path(pod)[str(file.parent)]["readOnly"] is True

    token_secret, token_key = mounted_from(pod, config.fleet_token_file)
    assert (token_secret, token_key) == (f"{RELEASE}-kukeon-fleet-token", "token")
    token_file = tmp_path / "token"
    token_file.write_text(secret_data(one(documents, "Secret", token_secret))[token_key])
    fleet_token = read_token(token_file)
    tokens = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-api-tokens"))["tokens.yaml"]
    principal = TokenBook.from_document(yaml.safe_load(tokens)).authenticate(fleet_token)
    assert principal is not None
    assert principal.role == Role.NODE

    tls_secret, ca_key = mounted_from(pod, config.fleet_ca_file)
    assert (tls_secret, ca_key) == (f"{RELEASE}-kukeon-api-tls", "ca.crt")
    pair = secret_data(one(documents, "Secret", tls_secret))
    for node in ("n1", "worker-2", "a" * 63):
        name = server_hostname(node, config.fleet_tls_server_domain)
        tls_handshake(pair["tls.crt"], pair["tls.key"], pair[ca_key], name, tmp_path)
    # Not valid for another domain, nor for a node's address.
    for name in ("n1.nodes.example", "n1.sub.nodes.kukeon", "10.0.0.5"):
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_handshake(pair["tls.crt"], pair["tls.key"], pair[ca_key], name, tmp_path)
    # kukectl inside the cluster still reaches the Service by name.
    service = f"{RELEASE}-kukeon.{NAMESPACE}.svc"
    tls_handshake(pair["tls.crt"], pair["tls.key"], pair[ca_key], service, tmp_path)


def test_fleet_with_the_operators_certificate_and_token(helm: Any, tmp_path: Path) -> None:
    documents = manifests(helm, FLEET_OWN_CERTIFICATE)
    pair = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-api-tls"))
    assert pair == {"tls.crt": FAKE_CERT, "tls.key": FAKE_KEY, "ca.crt": FAKE_CA}
    assert secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-fleet-token")) == {
        "token": FLEET_TOKEN
    }
    tokens = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-api-tokens"))["tokens.yaml"]
    entries = yaml.safe_load(tokens)["tokens"]
    assert [entry["role"] for entry in entries] == ["admin", "node"]
    assert entries[1]["token"] == FLEET_TOKEN
    config = kukeond_config_with_env(documents, tmp_path)
    assert config.fleet_tls_server_domain is None  # checked for the node's address
    assert config.fleet_ca_file == Path("/etc/kukeon/api-tls/ca.crt")

    # A fleet token the operator also lists in the items is not listed twice.
    listed = {
        **FLEET_OWN_CERTIFICATE,
        "api": {
            **FLEET_OWN_CERTIFICATE["api"],
            "tokens": {"items": [{"token": FLEET_TOKEN, "user": "fleet", "role": "node"}]},
        },
    }
    secret = one(manifests(helm, listed), "Secret", f"{RELEASE}-kukeon-api-tokens")
    tokens = secret_data(secret)["tokens.yaml"]
    assert yaml.safe_load(tokens)["tokens"] == [
        {"token": FLEET_TOKEN, "user": "fleet", "role": "node"}
    ]


def test_fleet_token_of_the_operator_is_mounted_by_its_key(helm: Any, tmp_path: Path) -> None:
    documents = manifests(helm, FLEET_OPERATOR_SECRETS)
    assert api_secrets(documents) == []
    config = kukeond_config_with_env(documents, tmp_path)
    assert config.fleet_tls_server_domain == "kukeon.example.internal"
    pod = daemonset_pod(documents)
    assert config.fleet_token_file is not None
    assert config.fleet_ca_file is not None
    assert mounted_from(pod, config.fleet_token_file) == ("my-fleet", "fleet-token")
    assert mounted_from(pod, config.fleet_ca_file) == ("my-api-tls", "ca.crt")


def test_without_the_fleet_nothing_is_forwarded(helm: Any, tmp_path: Path) -> None:
    documents = manifests(helm, {"fleet": {"enabled": False}})
    assert [doc["metadata"]["name"] for doc in api_secrets(documents)] == [
        f"{RELEASE}-kukeon-api-tls",
        f"{RELEASE}-kukeon-api-tokens",
    ]
    tokens = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-api-tokens"))["tokens.yaml"]
    assert [entry["role"] for entry in yaml.safe_load(tokens)["tokens"]] == ["admin"]
    config = kukeond_config_with_env(documents, tmp_path)
    assert config.fleet_token_file is None
    assert config.fleet_ca_file is None
    assert config.fleet_tls_server_domain is None
    assert "fleet-token" not in secret_volumes(daemonset_pod(documents))


def test_the_charts_etcd_speaks_mutual_tls_only(helm: Any, tmp_path: Path) -> None:
    documents = manifests(helm)
    command = one(documents, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["command"]
    flags = dict(arg.split("=", 1) if "=" in arg else (arg, "") for arg in command[1:])
    for url in ("--listen-client-urls", "--advertise-client-urls", "--listen-peer-urls"):
        assert flags[url].startswith("https://"), url
    members = flags["--initial-cluster"].split(",")
    assert all(member.split("=", 1)[1].startswith("https://") for member in members)
    assert "--client-cert-auth" in flags
    assert "--peer-client-cert-auth" in flags
    assert flags["--peer-cert-allowed-cn"] == "kukeon-etcd-member"
    assert flags["--listen-metrics-urls"].startswith("http://")  # /health for the probes

    member = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-etcd-member-tls"))
    client = secret_data(one(documents, "Secret", f"{RELEASE}-kukeon-etcd-client-tls"))
    assert member["ca.crt"] == client["ca.crt"]
    member_host = f"{RELEASE}-kukeon-etcd-2.{RELEASE}-kukeon-etcd-headless.{NAMESPACE}.svc"
    tls_handshake(member["tls.crt"], member["tls.key"], member["ca.crt"], member_host, tmp_path)
    ca = x509.load_pem_x509_certificate(client["ca.crt"].encode())
    client_cert = x509.load_pem_x509_certificate(client["tls.crt"].encode())
    client_cert.verify_directly_issued_by(ca)
    names = client_cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    assert names[0].value == "kukeon-etcd-client"  # not the name the peer listener takes

    pod = daemonset_pod(documents)
    assert secret_volumes(pod)["etcd-tls"]["secretName"] == f"{RELEASE}-kukeon-etcd-client-tls"
    etcd_pod = one(documents, "StatefulSet")["spec"]["template"]["spec"]
    assert secret_volumes(etcd_pod)["tls"]["secretName"] == f"{RELEASE}-kukeon-etcd-member-tls"


def test_plaintext_external_etcd_needs_allow_insecure(helm: Any, tmp_path: Path) -> None:
    plain = {"etcd": {"external": {"enabled": True, "endpoints": ["http://etcd.example:2379"]}}}
    with pytest.raises(ConfigError, match="plaintext"):
        kukeond_config(manifests(helm, plain), tmp_path)
    plain["etcd"]["external"]["allowInsecure"] = True
    config = kukeond_config(manifests(helm, plain), tmp_path)
    assert config.etcd_allow_insecure


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
        **FLEET_OPERATOR_SECRETS,
        "encryption": {"existingSecret": "my-encryption-keys"},
        "metrics": {"token": {"existingSecret": "my-metrics-token"}},
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
        "fleet-token": "my-fleet",
        "encryption-keys": "my-encryption-keys",
        "metrics-token": "my-metrics-token",
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
        (
            {"api": {"tls": {"cert": FAKE_CERT, "key": FAKE_KEY}}},
            "api.tls.cert with fleet.enabled needs api.tls.ca",
        ),
        (
            {"fleet": {"token": {"existingSecret": "my-fleet"}}},
            "fleet.token.existingSecret needs api.tokens.existingSecret",
        ),
        (
            {"api": {"tokens": {"existingSecret": "my-tokens"}}},
            "api.tokens.existingSecret with fleet.enabled needs fleet.token.existingSecret",
        ),
    ],
)
def test_incomplete_values_are_refused_with_the_key_to_fix(
    helm: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message.replace(".", r"\.")):
        render(helm, values)


def test_without_the_api_no_credentials_are_rendered(helm: Any, tmp_path: Path) -> None:
    documents = manifests(helm, {"api": {"enabled": False}})
    assert api_secrets(documents) == []
    service = one(documents, "Service", f"{RELEASE}-kukeon")
    assert [port["name"] for port in service["spec"]["ports"]] == ["metrics"]
    config = kukeond_config_with_env(documents, tmp_path)
    assert config.api_tokens_file is None
    assert config.api_tls_cert_file is None
    assert config.fleet_token_file is None  # no node has an API to forward to


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


def test_the_api_socket_is_root_s_unless_a_node_gid_is_given(helm: Any, tmp_path: Path) -> None:
    """By default no group may use the socket: the image's kukeon (gid 10001) would be
    whoever holds that gid on the node. The value reaches kukeond through the pod's env,
    which the image's ("", root's only) would otherwise beat."""
    documents = manifests(helm)
    configmap = one(documents, "ConfigMap", f"{RELEASE}-kukeon-config")
    assert "apiSocketGroup" not in yaml.safe_load(configmap["data"]["kukeond.yaml"])
    assert kukeond_config_with_env(documents, tmp_path).api_socket_group == ""
    # A string, and an integer as --set and a values file give it (float64 from YAML).
    for given, expected in (("2000", "2000"), (1000000, "1000000"), (0, "")):
        values = {"kukeond": {"apiSocketGroup": given}}
        config = kukeond_config_with_env(manifests(helm, values), tmp_path)
        assert config.api_socket_group == expected, given
        (notes,) = [text for path, text in render(helm, values).items() if "NOTES" in path]
        assert ("as root or a member of the node's gid " + expected in notes) is bool(expected)
    too_big = {"kukeond": {"apiSocketGroup": "4294967295"}}
    with pytest.raises(ConfigError, match=r"api_socket_group: .*out of range"):
        kukeond_config_with_env(manifests(helm, too_big), tmp_path)
    # Nothing else the chart runs shares the run directory (a kukectl pod would need the
    # configured gid as a supplementary group).
    run_dir = yaml.safe_load((CHART / "values.yaml").read_text())["kukeond"]["hostPaths"]["runDir"]
    for doc in documents:
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        if pod is not None and doc["kind"] != "DaemonSet":
            assert run_dir not in json.dumps(pod.get("volumes", [])), doc["kind"]


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
        ({"fleet": {"tlsServerDomain": "Nodes.Kukeon"}}, "/fleet/tlsServerDomain"),
        ({"fleet": {"token": {"value": "short"}}}, "/fleet/token/value"),
        # A name is looked up in the image (kukeon: gid 10001), not on the node.
        ({"kukeond": {"apiSocketGroup": "kukeon"}}, "/kukeond/apiSocketGroup"),
        ({"kukeond": {"apiSocketGroup": -1}}, "/kukeond/apiSocketGroup"),
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


def test_every_node_mounts_one_encryption_key_file_kukeond_can_load(
    helm: Any, tmp_path: Path
) -> None:
    from kukeon.store.encryption import Keyring, parse_key_file

    documents = manifests(helm)
    (secret,) = [
        doc
        for doc in documents
        if doc["kind"] == "Secret" and doc["metadata"]["name"].endswith("-encryption")
    ]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    text = base64.b64decode(secret["data"]["encryption-keys.yaml"]).decode()
    key_set = parse_key_file(text, source="chart")
    assert len(key_set.keys[key_set.current]) == 32
    path = tmp_path / "encryption-keys.yaml"
    path.write_text(text)
    path.chmod(0o400)
    assert Keyring.load_or_create(path)[0].current == key_set.current
    (daemonset,) = [doc for doc in documents if doc["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "encryption-keys"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["defaultMode"] == 0o400
    mounts = pod["containers"][0]["volumeMounts"]
    assert {
        "name": "encryption-keys",
        "mountPath": "/etc/kukeon/encryption",
        "readOnly": True,
    } in mounts
    (configmap,) = [
        doc for doc in documents if doc["kind"] == "ConfigMap" and "kukeond.yaml" in doc["data"]
    ]
    config = yaml.safe_load(configmap["data"]["kukeond.yaml"])
    assert config["encryptionKeyFile"] == "/etc/kukeon/encryption/encryption-keys.yaml"
    # An operator's Secret replaces the generated one.
    own = manifests(helm, {"encryption": {"existingSecret": "my-keys", "key": "keys.yaml"}})
    assert not [d for d in own if d["metadata"]["name"].endswith("-encryption")]
    (daemonset,) = [doc for doc in own if doc["kind"] == "DaemonSet"]
    (volume,) = [
        v
        for v in daemonset["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "encryption-keys"
    ]
    assert volume["secret"]["secretName"] == "my-keys"
    assert volume["secret"]["items"] == [{"key": "keys.yaml", "path": "encryption-keys.yaml"}]
