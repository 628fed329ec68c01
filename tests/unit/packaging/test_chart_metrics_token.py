"""The chart's /metrics token: a Secret mounted into kukeond as ``metrics_token_file``, and
the ServiceMonitor scraping with it (rendered by Helm's own engine, as ``test_chart``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kukeon.daemon.metricstoken import read_metrics_token
from tests.unit.packaging.test_chart import (
    RELEASE,
    daemonset_pod,
    helm,  # noqa: F401 - the fixture
    kukeond_config_with_env,
    manifests,
    mounted_from,
    one,
    render,
    secret_data,
    secret_volumes,
)

MONITORED = {"serviceMonitor": {"enabled": True}}
GIVEN_TOKEN = "metrics-0123456789abcdef"


def _monitor_credentials(documents: list[dict[str, Any]]) -> tuple[str, str]:
    (endpoint,) = one(documents, "ServiceMonitor")["spec"]["endpoints"]
    authorization = endpoint["authorization"]
    assert authorization["type"] == "Bearer"
    return authorization["credentials"]["name"], authorization["credentials"]["key"]


def test_kukeond_asks_for_a_generated_token_the_service_monitor_sends(
    helm: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    documents = manifests(helm, MONITORED)
    config = kukeond_config_with_env(documents, tmp_path)
    assert config.metrics_token_file == Path("/etc/kukeon/metrics/token")
    pod = daemonset_pod(documents)
    secret_name, key = mounted_from(pod, config.metrics_token_file)
    assert (secret_name, key) == (f"{RELEASE}-kukeon-metrics-token", "token")
    # Only root reads it in the pod: kukeond refuses a token file others may read.
    assert secret_volumes(pod)["metrics-token"]["defaultMode"] == 0o400
    assert _monitor_credentials(documents) == (secret_name, key)
    token = secret_data(one(documents, "Secret", secret_name))["token"]
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o400)
    assert read_metrics_token(token_file) == token


def test_a_given_token_is_written_and_an_operators_secret_referenced(
    helm: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    documents = manifests(helm, {**MONITORED, "metrics": {"token": {"value": GIVEN_TOKEN}}})
    secret = one(documents, "Secret", f"{RELEASE}-kukeon-metrics-token")
    assert secret_data(secret) == {"token": GIVEN_TOKEN}

    values = {**MONITORED, "metrics": {"token": {"existingSecret": "my-metrics", "key": "t"}}}
    documents = manifests(helm, values)
    assert not [
        doc for doc in documents if doc["metadata"]["name"] == f"{RELEASE}-kukeon-metrics-token"
    ]
    config = kukeond_config_with_env(documents, tmp_path)
    assert config.metrics_token_file is not None
    assert mounted_from(daemonset_pod(documents), config.metrics_token_file) == ("my-metrics", "t")
    assert _monitor_credentials(documents) == ("my-metrics", "t")


@pytest.mark.parametrize("token", ["short", "a token with spaces in it"])
def test_a_token_kukeond_would_refuse_is_refused_by_the_schema(
    helm: Any,  # noqa: F811 - the fixture imported above
    token: str,
) -> None:
    with pytest.raises(helm.HelmError, match="metrics"):
        render(helm, {"metrics": {"token": {"value": token}}})
