"""Model bounds: every integer within int64 and what the kernel accepts, text storable as
UTF-8 without NUL, names that become host paths safe, ports parsed, errors short."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kukeon.api import FieldError, InvalidResource, parse_resource
from kukeon.api.container import parse_port
from kukeon.controllers.cellstate import restart_due_at


def cell(container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    main = {"id": "main", "image": "busybox:latest", **(container or {})}
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "web"},
        "spec": {"containers": [main], **spec},
    }


def causes(doc: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(doc)
    return caught.value.causes


def fields(doc: dict[str, Any]) -> list[str]:
    return [cause.field for cause in causes(doc)]


C = "spec.containers[0]"


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"memoryLimitBytes": 10**29}, "memoryLimitBytes"),
        ({"memoryLimitBytes": 1e29}, "memoryLimitBytes"),
        ({"memoryLimitBytes": 4096}, "memoryLimitBytes"),  # below 1 MiB
        ({"memoryLimitBytes": -1}, "memoryLimitBytes"),
        ({"pidsLimit": 2**64 + 1}, "pidsLimit"),
        ({"pidsLimit": 4194305}, "pidsLimit"),
        ({"cpuShares": 2**63}, "cpuShares"),
        ({"cpuShares": 1}, "cpuShares"),
        ({"cpuShares": 262145}, "cpuShares"),
        ({"cpuShares": 3.0}, "cpuShares"),
        ({"cpuShares": True}, "cpuShares"),
        ({"cpuShares": "512"}, "cpuShares"),
        ({"cpuLimitMillicores": 9}, "cpuLimitMillicores"),
        ({"cpuLimitMillicores": 1_000_001}, "cpuLimitMillicores"),
        ({"cpuLimitMillicores": -1}, "cpuLimitMillicores"),
        ({"cpuLimitMillicores": 0.5}, "cpuLimitMillicores"),
        ({"cpuLimitMillicores": "500m"}, "cpuLimitMillicores"),
    ],
)
def test_resource_limits_out_of_range_are_refused(resources: dict[str, Any], field: str) -> None:
    assert fields(cell({"resources": resources})) == [f"{C}.resources.{field}"]


@pytest.mark.parametrize(
    "resources",
    [
        {
            "memoryLimitBytes": 0,
            "cpuShares": 0,
            "pidsLimit": 0,
            "cpuLimitMillicores": 0,
            "ephemeralStorageLimitBytes": 0,
        },
        {
            "memoryLimitBytes": 1 << 20,
            "cpuShares": 2,
            "pidsLimit": 1,
            "cpuLimitMillicores": 10,
            "ephemeralStorageLimitBytes": 1 << 20,
        },
        {
            "memoryLimitBytes": 2**63 - 1,
            "cpuShares": 262144,
            "pidsLimit": 4194304,
            "cpuLimitMillicores": 1_000_000,
            "ephemeralStorageLimitBytes": 2**63 - 1,
        },
    ],
)
def test_resource_limits_in_range_are_kept(resources: dict[str, Any]) -> None:
    parsed = parse_resource(cell({"resources": resources}))
    limits = parsed.spec.containers[0].resources
    assert limits.model_dump(by_alias=True) == resources


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"restartPolicy": "always", "restartBackoffSeconds": 1e20}, "restartBackoffSeconds"),
        ({"restartPolicy": "always", "restartBackoffSeconds": 0}, "restartBackoffSeconds"),
        ({"restartPolicy": "always", "restartBackoffSeconds": 301}, "restartBackoffSeconds"),
        ({"restartPolicy": "on-failure", "restartMaxRetries": 1e20}, "restartMaxRetries"),
        ({"restartPolicy": "on-failure", "restartMaxRetries": 1001}, "restartMaxRetries"),
        ({"restartPolicy": "on-failure", "restartMaxRetries": 2**64}, "restartMaxRetries"),
    ],
)
def test_restart_knobs_are_bounded(knobs: dict[str, Any], field: str) -> None:
    assert fields(cell(knobs)) == [f"{C}.{field}"]


@pytest.mark.parametrize(
    ("given", "loop", "pause"),
    [
        (None, 0, 0),
        (None, 1, 10),
        (None, 10**20, 300),
        (0, 0, 1),
        (1, 0, 1),
        (300, 0, 300),
        (10**20, 10**20, 300),
    ],
)
def test_the_restart_timer_keeps_the_floor_and_the_cap(
    given: int | None, loop: int, pause: int
) -> None:
    finished = datetime(2026, 1, 1, tzinfo=UTC)
    due = restart_due_at(finished_at=finished, backoff_seconds=given, loop_restarts=loop)
    assert due == finished + timedelta(seconds=pause)


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({"command": "/bin/\ud800"}, "command"),
        ({"command": "sh\x00"}, "command"),
        ({"args": ["ok", "a\x00b"]}, "args"),
        ({"env": ["A=\x00"]}, "env"),
        ({"image": "busy\udfffbox"}, "image"),
        ({"workingDir": "/a\x00"}, "workingDir"),
    ],
)
def test_nul_and_lone_surrogates_are_refused(container: dict[str, Any], field: str) -> None:
    found = causes(cell(container))
    assert [c.field for c in found] == [f"{C}.{field}"]
    assert "NUL" in found[0].message or "surrogate" in found[0].message


@pytest.mark.parametrize("text", ["\ud800", "a\x00b"])
@pytest.mark.parametrize(
    "where", [("spec", "containers", 0, "securityOpts"), ("metadata", "labels", "\udfff")]
)
def test_text_deep_in_a_free_form_template_is_refused(text: str, where: tuple[Any, ...]) -> None:
    # A CellSet revision's template is any document: its texts were checked one level down
    # only, and a lone surrogate deeper failed the status write to etcd with a 500.
    template: dict[str, Any] = {"spec": {"containers": [{"id": "main"}]}, "metadata": {}}
    node: Any = template
    for part in where[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    if where[-1] == "\udfff":
        node[where[-1]] = "v"  # the key is the bad text
    else:
        node[where[-1]] = [text]
    doc = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"id": "main", "image": "busybox"}]},
            },
        },
        "status": {"revisions": [{"revision": 1, "templateHash": "h", "template": template}]},
    }
    found = causes(doc)
    assert [c.field for c in found] == ["status.revisions[0].template"]
    assert "NUL" in found[0].message or "surrogate" in found[0].message


@pytest.mark.parametrize("ip", ["..", "10.0.0.256", "x", "10.0.0.1/24"])
def test_a_cell_status_address_must_be_an_ip_address(ip: str) -> None:
    # Its peers' hosts files are made from it (controllers.cellpeers): ".." written to the
    # status subresource was stored, and the peers' listener raised at every change.
    doc = cell()
    doc["status"] = {"network": {"ip": ip, "interfaces": [{"interface": "eth0", "ip": ip}]}}
    assert fields(doc) == ["status.network.ip", "status.network.interfaces[0].ip"]


def test_a_cell_status_address_may_be_any_ip_or_unset() -> None:
    for ip in ("10.88.0.2", "fd00::2", "", None):
        doc = cell()
        doc["status"] = {"network": {"ip": ip, "interfaces": [{"interface": "eth0", "ip": ip}]}}
        parse_resource(doc)


def test_nul_in_labels_is_refused() -> None:
    doc = cell()
    doc["metadata"]["labels"] = {"a": "b\x00"}
    assert fields(doc) == ["metadata.labels"]


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\x00b", "", "x" * 254, "a b"])
def test_secret_names_are_safe_file_names(name: str) -> None:
    secret = {"name": name, "fromEnv": "TOKEN", "mountPath": "/run/secret"}
    assert f"{C}.secrets[0].name" in fields(cell({"secrets": [secret]}))


@pytest.mark.parametrize("name", ["TOKEN", "db-password", "api.key", "a_b"])
def test_ordinary_secret_names_are_accepted(name: str) -> None:
    secret = {"name": name, "fromEnv": "TOKEN"}
    assert parse_resource(cell({"secrets": [secret]}))


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({"volumes": [{"kind": "tmpfs", "target": "/a/../etc"}]}, "volumes[0].target"),
        ({"tmpfs": [{"path": "/.."}]}, "tmpfs[0].path"),
        (
            {"volumes": [{"kind": "tmpfs", "target": "/t", "sizeBytes": 2**63}]},
            "volumes[0].sizeBytes",
        ),
    ],
)
def test_mount_targets_and_sizes(container: dict[str, Any], field: str) -> None:
    assert fields(cell(container)) == [f"{C}.{field}"]


@pytest.mark.parametrize("node", ["/", "x" * 100_000, "Node_1", "a..b", "-a"])
def test_node_name_is_a_dns_name(node: str) -> None:
    found = causes(cell(nodeName=node))
    assert [c.field for c in found] == ["spec.nodeName"]
    assert len(found[0].message) < 400  # a 100 KB name is not echoed back


@pytest.mark.parametrize("node", ["node-1", "host.example.com"])
def test_dns_node_names_are_accepted(node: str) -> None:
    assert parse_resource(cell(nodeName=node)).spec.node_name == node


@pytest.mark.parametrize(
    "port", ["99999:-1/xyz", "0:80", "80/sctp", "::1:80:80", "1.2.3:80:80", "x"]
)
def test_bad_ports_are_refused(port: str) -> None:
    assert fields(cell({"ports": [port]})) == [f"{C}.ports[0]"]


@pytest.mark.parametrize(
    ("port", "parsed"),
    [
        ("80", (None, None, 80, "tcp")),
        ("8080:80", (None, 8080, 80, "tcp")),
        ("127.0.0.1:5353:53/udp", ("127.0.0.1", 5353, 53, "udp")),
        ("[::1]:8443:443", ("::1", 8443, 443, "tcp")),
        ("127.0.0.1::80", ("127.0.0.1", None, 80, "tcp")),
    ],
)
def test_docker_port_syntax(port: str, parsed: tuple[Any, ...]) -> None:
    assert tuple(parse_port(port)) == parsed
    assert parse_resource(cell({"ports": [port]}))


def test_a_megabyte_name_is_not_echoed() -> None:
    doc = cell()
    doc["metadata"]["name"] = "A" * 1_000_000
    with pytest.raises(InvalidResource) as caught:
        parse_resource(doc)
    assert len(str(caught.value)) < 2000


def test_a_huge_integer_in_a_string_field_is_not_echoed() -> None:
    assert len(str(causes(cell({"restartPolicy": 10**5000}))[0].message)) < 2000
