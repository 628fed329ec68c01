"""kukeond refuses plaintext etcd that needs no credential unless told to accept the risk:
off loopback, and on loopback without etcd's own authentication (every local account
reaches loopback: tests/integration/daemon/test_plaintext_etcd_refused.py)."""

from pathlib import Path

import pytest

from kukeon.daemon.config import ConfigError, load_config
from kukeon.daemon.main import command


@pytest.mark.parametrize(
    "endpoints",
    [
        "http://10.0.0.5:2379",
        "10.0.0.5:2379",
        "127.0.0.1:2379,etcd.example.internal:2379",
        # Loopback: every local account reaches it (accepted before, helper-154).
        "127.0.0.1:2379",
        "http://localhost:2379",
        "http://[::1]:2379",
        "127.0.0.2:2379",
        "unix:///run/etcd/client:0",
    ],
)
def test_plaintext_endpoint_without_a_credential_is_refused(endpoints: str) -> None:
    with pytest.raises(ConfigError, match="is plaintext with no credential") as refused:
        load_config(environ={"KUKEON_ETCD_ENDPOINTS": endpoints})
    message = str(refused.value)
    assert "\n" not in message
    assert "on loopback every local user" in message
    assert "--etcd-allow-insecure" in message


@pytest.mark.parametrize(
    "endpoints",
    ["127.0.0.1:2379", "http://localhost:2379", "http://[::1]:2379", "unix:///run/etcd/client:0"],
)
def test_plaintext_on_loopback_with_etcds_authentication_is_accepted(endpoints: str) -> None:
    """A local user who reaches loopback still needs the password (and cannot sniff it)."""
    config = load_config(
        environ={
            "KUKEON_ETCD_ENDPOINTS": endpoints,
            "KUKEON_ETCD_USERNAME": "kukeon",
            "KUKEON_ETCD_PASSWORD": "s3cret",
        }
    )
    assert config.plaintext_etcd_endpoints == ()


def test_etcds_authentication_does_not_make_plaintext_off_loopback_safe() -> None:
    with pytest.raises(ConfigError, match=r"10\.0\.0\.5:2379 is plaintext with no credential"):
        load_config(
            environ={
                "KUKEON_ETCD_ENDPOINTS": "127.0.0.1:2379,http://10.0.0.5:2379",
                "KUKEON_ETCD_USERNAME": "kukeon",
                "KUKEON_ETCD_PASSWORD": "s3cret",
            }
        )


def test_tls_endpoints_are_accepted(tmp_path: Path) -> None:
    assert load_config(environ={"KUKEON_ETCD_ENDPOINTS": "https://10.0.0.5:2379"})
    assert load_config(environ={"KUKEON_ETCD_ENDPOINTS": "unixs:///run/etcd/client:0"})
    # A CA file puts every endpoint on TLS, whatever its scheme (as EtcdConfig does).
    config = load_config(
        environ={"KUKEON_ETCD_ENDPOINTS": "10.0.0.5:2379"},
        overrides={"etcd_ca_file": tmp_path / "ca.crt"},
    )
    assert config.plaintext_etcd_endpoints == ()


def test_allow_insecure_from_env_flag_or_file(tmp_path: Path) -> None:
    env = {"KUKEON_ETCD_ENDPOINTS": "http://10.0.0.5:2379"}
    by_env = load_config(environ={**env, "KUKEON_ETCD_ALLOW_INSECURE": "true"})
    assert by_env.plaintext_etcd_endpoints == ("http://10.0.0.5:2379",)
    assert load_config(environ=env, overrides={"etcd_allow_insecure": True}).etcd_allow_insecure
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("etcdEndpoints: [http://10.0.0.5:2379]\netcdAllowInsecure: true\n")
    assert load_config(config_file=config_file, environ={}).etcd_allow_insecure


def test_file_endpoints_with_the_allowance_in_the_environment(tmp_path: Path) -> None:
    """Each source alone is not checked across fields: the merged configuration is."""
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("etcdEndpoints: [http://10.0.0.5:2379]\n")
    with pytest.raises(ConfigError, match="plaintext"):
        load_config(config_file=config_file, environ={})
    config = load_config(config_file=config_file, environ={"KUKEON_ETCD_ALLOW_INSECURE": "1"})
    assert config.etcd_allow_insecure


def test_kukeond_exits_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        command(["--etcd-endpoints", "http://10.0.0.5:2379"])
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.count("\n") == 1
    assert "http://10.0.0.5:2379 is plaintext with no credential" in printed.err


@pytest.mark.parametrize(
    ("endpoints", "said"),
    [
        ("unixs:///run/etcd/client:0,https://10.0.0.5:2379", "must be the only one"),
        ("unixs://client:0", "unix:///absolute/path"),
        ("ftp://10.0.0.5:2379", "is not host:port"),
    ],
)
def test_endpoints_kukeond_cannot_dial_are_refused(endpoints: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        load_config(environ={"KUKEON_ETCD_ENDPOINTS": endpoints})
