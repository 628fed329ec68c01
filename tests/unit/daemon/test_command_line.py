"""kukeond's command line (argparse since issue 18's idle-RSS cut; click before): every flag
reaches the configuration, a flag not given leaves the file's value, and bad values stop the
command with exit status 2 and a message naming the flag."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kukeon.daemon import main
from kukeon.daemon.config import DaemonConfig, load_config

# Every flag kukeond had under click, with the configuration field it sets.
FLAGS = {
    "--config": "config_file",
    "--etcd-endpoints": "etcd_endpoints",
    "--etcd-ca-file": "etcd_ca_file",
    "--etcd-cert-file": "etcd_cert_file",
    "--etcd-key-file": "etcd_key_file",
    "--etcd-allow-insecure": "etcd_allow_insecure",
    "--containerd-address": "containerd_address",
    "--state-dir": "state_dir",
    "--run-dir": "run_dir",
    "--node-name": "node_name",
    "--cgroup-root": "cgroup_root",
    "--cni-bin-dir": "cni_bin_dirs",
    "--cni-conf-dir": "cni_conf_dir",
    "--etcd-prefix": "etcd_prefix",
    "--netns-dir": "netns_dir",
    "--nft-table": "nft_table",
    "--subnet-pool": "subnet_pool",
    "--stop-grace-seconds": "stop_grace_seconds",
    "--parent-wait-seconds": "parent_wait_seconds",
    "--node-label": "node_labels",
    "--node-lost-timeout": "node_lost_timeout",
    "--fence-after-seconds": "fence_after_seconds",
    "--event-ttl-seconds": "event_ttl_seconds",
    "--realm-quota-objects": "realm_quota_objects",
    "--realm-quota-storage-bytes": "realm_quota_storage_bytes",
    "--realm-image-storage-bytes": "realm_image_storage_bytes",
    "--image-storage-max-bytes": "image_storage_max_bytes",
    "--realm-pids-limit": "realm_pids_limit",
    "--host-reserved-pids": "host_reserved_pids",
    "--cell-connections-limit": "cell_connections_limit",
    "--image-import-max-bytes": "image_import_max_bytes",
    "--image-unpacked-max-bytes": "image_unpacked_max_bytes",
    "--image-zstd-window-budget-bytes": "image_zstd_window_budget_bytes",
    "--metrics-address": "metrics_address",
    "--metrics-token-file": "metrics_token_file",
    "--metrics-open": "metrics_open",
    "--api-address": "api_address",
    "--api-max-connections": "api_max_connections",
    "--api-tls-cert-file": "api_tls_cert_file",
    "--api-tls-key-file": "api_tls_key_file",
    "--api-tokens-file": "api_tokens_file",
    "--api-max-requests-inflight": "api_max_requests_inflight",
    "--api-max-long-running": "api_max_long_running",
    "--api-max-long-running-per-user": "api_max_long_running_per_user",
    "--api-socket-group": "api_socket_group",
    "--allowed-host-path": "allowed_host_paths",
    "--secret-dir": "secret_dirs",
    "--allowed-secret-env": "allowed_secret_env",
    "--encryption-key-file": "encryption_key_file",
    "--fleet-token-file": "fleet_token_file",
    "--fleet-ca-file": "fleet_ca_file",
    "--fleet-tls-server-domain": "fleet_tls_server_domain",
    "--insecure-registry": "insecure_registries",
    "--log-level": "log_level",
    "--no-bootstrap": "no_bootstrap",
    "--api-only": "api_only",
}


def parsed(*argv: str) -> dict[str, Any]:
    return vars(main.parser().parse_args(list(argv)))


def configured(*argv: str, config_file: Path | None = None) -> DaemonConfig:
    flags = parsed(*argv)
    flags.pop("config_file")
    if flags.pop("no_bootstrap"):
        flags["bootstrap"] = False
    return load_config(config_file=config_file, environ={}, overrides=flags)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main.parser().parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_the_flags_are_click_s() -> None:
    options = {
        option: action.dest
        for action in main.parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert options == FLAGS
    fields = set(DaemonConfig.model_fields)
    assert {
        dest for dest in FLAGS.values() if dest not in ("config_file", "no_bootstrap")
    } <= fields


def test_a_flag_not_given_is_none() -> None:
    flags = parsed()
    assert flags.pop("no_bootstrap") is False
    assert set(flags.values()) == {None}


def test_flags_reach_the_configuration(tmp_path: Path) -> None:
    config = configured(
        "--etcd-endpoints",
        "https://10.0.0.5:2379,https://10.0.0.6:2379",
        "--state-dir",
        str(tmp_path / "state"),
        "--node-label",
        "zone=a",
        "--node-label",
        "disk=ssd",
        "--stop-grace-seconds",
        "2.5",
        "--event-ttl-seconds",
        "60",
        "--realm-pids-limit",
        "0",
        "--log-level",
        "debug",
        "--no-bootstrap",
        "--api-only",
        "--etcd-allow-insecure",
        "--metrics-open",
    )
    assert config.etcd_endpoints == ("https://10.0.0.5:2379", "https://10.0.0.6:2379")
    assert config.state_dir == tmp_path / "state"
    assert config.node_labels == {"zone": "a", "disk": "ssd"}
    assert config.stop_grace_seconds == 2.5
    assert config.event_ttl_seconds == 60
    assert config.realm_pids_limit == 0
    assert config.log_level == "debug"
    assert config.bootstrap is False
    assert config.api_only is True
    assert config.etcd_allow_insecure is True
    assert config.metrics_open is True


def test_a_flag_not_given_leaves_the_file_s_value(tmp_path: Path) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("nftTable: from-file\nnodeLabels: {zone: b}\napiOnly: true\n")
    os.chmod(config_file, 0o600)
    config = configured("--config", str(config_file), config_file=config_file)
    assert (config.nft_table, config.node_labels, config.api_only) == (
        "from-file",
        {"zone": "b"},
        True,
    )
    assert configured("--nft-table", "flag", config_file=config_file).nft_table == "flag"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--realm-pids-limit", "-1"], "argument --realm-pids-limit: -1 is not in the range x>=0"),
        (
            ["--host-reserved-pids", "many"],
            "argument --host-reserved-pids: 'many' is not an integer",
        ),
        (["--stop-grace-seconds", "soon"], "argument --stop-grace-seconds: invalid float value"),
        (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
        (["--etcd-endpoint", "x"], "unrecognized arguments: --etcd-endpoint x"),
        (["--node"], "unrecognized arguments: --node"),  # no abbreviations, as click
        (["extra"], "unrecognized arguments: extra"),
    ],
)
def test_a_bad_flag_stops_the_command(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in refused(argv, capsys)


def test_a_file_flag_refuses_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for flag in ("--config", "--encryption-key-file"):
        error = refused([flag, str(tmp_path)], capsys)
        assert f"argument {flag}: file {str(tmp_path)!r} is a directory" in error
    # A path that does not exist yet is taken as it is (the key file is generated).
    missing = tmp_path / "keys.yaml"
    assert parsed("--encryption-key-file", str(missing))["encryption_key_file"] == missing


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.command(["--help"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: kukeond [OPTIONS]")
    for flag in FLAGS:
        assert flag in printed
    assert "10% of the host's limit" in " ".join(printed.split())


def test_a_cell_connections_limit_is_a_count_nft_can_hold() -> None:
    assert DaemonConfig().cell_connections_limit == 16384
    assert DaemonConfig.model_validate({"cellConnectionsLimit": 0}).cell_connections_limit == 0
    for wrong in (-1, 2**31):
        with pytest.raises(ValueError, match=r"cell_connections_limit|cellConnectionsLimit"):
            DaemonConfig.model_validate({"cellConnectionsLimit": wrong})
