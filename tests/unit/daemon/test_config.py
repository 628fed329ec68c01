"""kukeond configuration: precedence, parsing and errors that name the field."""

from pathlib import Path

import pytest

from kukeon.daemon.config import ConfigError, load_config


def test_defaults_use_embedded_etcd_and_standard_paths() -> None:
    config = load_config(environ={})
    assert config.uses_embedded_etcd
    assert config.api_socket == Path("/run/kukeon/kukeond.sock")
    assert config.cgroup_root == "/kukeon"
    assert config.bootstrap


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("stateDir: /from/file\nrunDir: /run/file\nnodeName: file-node\n")
    config = load_config(
        config_file=config_file,
        environ={"KUKEON_RUN_DIR": "/run/env", "KUKEON_NODE_NAME": "env-node"},
        overrides={"node_name": "flag-node", "state_dir": None},
    )
    assert config.state_dir == Path("/from/file")
    assert config.run_dir == Path("/run/env")
    assert config.node_name == "flag-node"


def test_comma_separated_endpoints_from_env() -> None:
    endpoints = "https://127.0.0.1:2379, https://127.0.0.1:2380"
    config = load_config(environ={"KUKEON_ETCD_ENDPOINTS": endpoints})
    assert config.etcd_endpoints == ("https://127.0.0.1:2379", "https://127.0.0.1:2380")
    assert not config.uses_embedded_etcd


def test_unknown_field_in_file_is_named(tmp_path: Path) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("etcdEndpoint: 127.0.0.1:2379\n")
    with pytest.raises(ConfigError, match="etcdEndpoint"):
        load_config(config_file=config_file, environ={})


def test_relative_cgroup_root_is_refused() -> None:
    with pytest.raises(ConfigError, match="cgroup_root"):
        load_config(environ={}, overrides={"cgroup_root": "kukeon"})


def test_unrelated_kukeon_env_is_ignored() -> None:
    config = load_config(environ={"KUKEON_SERVER": "unix:///x.sock"})
    assert config.uses_embedded_etcd


@pytest.mark.parametrize(
    ("given", "domain"),
    [("nodes.kukeon", "nodes.kukeon"), (" Fleet.Example.Internal. ", "fleet.example.internal")],
)
def test_fleet_tls_server_domain_from_the_file_and_env(
    tmp_path: Path, given: str, domain: str
) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text(f"fleetTlsServerDomain: {given!r}\n")
    assert load_config(config_file=config_file, environ={}).fleet_tls_server_domain == domain
    from_env = load_config(environ={"KUKEON_FLEET_TLS_SERVER_DOMAIN": given})
    assert from_env.fleet_tls_server_domain == domain
    assert load_config(environ={}).fleet_tls_server_domain is None
    assert (
        load_config(environ={"KUKEON_FLEET_TLS_SERVER_DOMAIN": ""}).fleet_tls_server_domain is None
    )


@pytest.mark.parametrize("domain", ["*.nodes.kukeon", "nodes..kukeon", "-nodes.kukeon", "a" * 190])
def test_a_fleet_tls_server_domain_that_is_no_dns_name_is_refused(domain: str) -> None:
    with pytest.raises(ConfigError, match="fleet_tls_server_domain"):
        load_config(environ={}, overrides={"fleet_tls_server_domain": domain})


def test_the_retry_backoff_reaches_the_operator(tmp_path: Path) -> None:
    from kukeon.daemon.app import operator_settings
    from kukeon.framework import base_delay

    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("retryBackoffInitialSeconds: 2\n")
    config = load_config(
        config_file=config_file, environ={"KUKEON_RETRY_BACKOFF_MAX_SECONDS": "60"}
    )
    settings = operator_settings(config, host_identity="here", lease_ttl=15)
    assert [base_delay(n, settings=settings) for n in range(1, 7)] == [2, 4, 8, 16, 32, 60]
    default = operator_settings(load_config(environ={}), host_identity="here", lease_ttl=15)
    assert (default.backoff_initial, default.backoff_max) == (0.5, 300.0)


def test_a_retry_backoff_cap_below_its_start_is_refused() -> None:
    with pytest.raises(ConfigError, match="retryBackoffMaxSeconds"):
        load_config(
            environ={},
            overrides={"retry_backoff_initial_seconds": 10, "retry_backoff_max_seconds": 5},
        )


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        ("a b=c", "'a b'"),
        ("a/b/c=1", "'a/b/c'"),
        ("zone=x y", "'x y'"),
        ("zone=" + "v" * 64, "vvv"),
    ],
)
def test_a_node_label_no_node_selector_can_name_is_refused(labels: str, shown: str) -> None:
    """The API refuses such a nodeSelector term, so the node could never be chosen by it."""
    with pytest.raises(ConfigError, match="node_labels") as refused:
        load_config(environ={"KUKEON_NODE_LABELS": labels})
    assert shown in str(refused.value)


def test_selectable_node_labels_are_kept(tmp_path: Path) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("nodeLabels: {kukeon.io/zone: eu-1, disk: ''}\n")
    config = load_config(config_file=config_file, environ={})
    assert config.node_labels == {"kukeon.io/zone": "eu-1", "disk": ""}


def test_an_empty_api_socket_group_is_root_only_not_the_default(tmp_path: Path) -> None:
    """KUKEON_API_SOCKET_GROUP="" (the container image's) gives the socket no group, even
    over a file's group; unset keeps the host default, kukeon; a flag beats both."""
    assert load_config(environ={}).api_socket_group == "kukeon"
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("apiSocketGroup: kukeon\n")
    for empty in ("", "  "):
        config = load_config(config_file=config_file, environ={"KUKEON_API_SOCKET_GROUP": empty})
        assert config.api_socket_group == ""
    flagged = load_config(
        environ={"KUKEON_API_SOCKET_GROUP": ""}, overrides={"api_socket_group": "2000"}
    )
    assert flagged.api_socket_group == "2000"
    root_only = load_config(environ={}, overrides={"api_socket_group": ""})
    assert root_only.api_socket_group == ""


@pytest.mark.parametrize("gid", ["4294967295", "99999999999"])
def test_an_api_socket_gid_past_gid_t_is_refused(gid: str) -> None:
    """4294967295 is chown's "keep the group": the socket would keep root's silently."""
    with pytest.raises(ConfigError, match=f"api_socket_group: .*gid {gid} is out of range"):
        load_config(environ={"KUKEON_API_SOCKET_GROUP": gid})
    assert load_config(environ={"KUKEON_API_SOCKET_GROUP": "4294967294"}).api_socket_group
