"""kukectl and Secrets: values go out in requests only, tables and pages show digests."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.api import Realm, Secret, key_status, parse_resource, to_request_document
from kukeon.api.applying import updated_object
from kukeon.cli.main import cli
from kukeon.cli.manifests import Document, apply_order, parent_chain
from kukeon.cli.output import describe, render
from kukeon.cli.secret import secret_values

MARKER = "cli-marker-55aa"


def _secret(**metadata: str) -> Secret:
    parsed = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Secret",
            "metadata": {"name": "api", "realm": "r", **metadata},
            "stringData": {"token": MARKER},
        }
    )
    assert isinstance(parsed, Secret)
    return parsed


def test_the_request_document_carries_values_the_output_never_does() -> None:
    secret = _secret()
    sent = to_request_document(secret)
    assert sent["data"] == {"token": base64.b64encode(MARKER.encode()).decode()}
    stored = secret.model_copy(update={"status": key_status(secret.values() or {})})
    for fmt in ("table", "wide", "yaml", "json", "name"):
        assert MARKER not in render(stored.kind, [stored], fmt)
    page = describe(stored, now=datetime.now(UTC))
    assert MARKER not in page
    assert hashlib.sha256(MARKER.encode()).hexdigest() in page
    assert "token" in page


def test_describe_of_what_a_viewer_reads_says_the_digest_is_hidden() -> None:
    """A viewer's answers carry no digest (kukeon.apiserver.secretdigests): the page says so
    rather than failing to parse the Secret or showing an empty column."""
    document = to_request_document(_secret())
    document.pop("data")
    document["status"] = {"keys": [{"name": "token", "size": len(MARKER)}]}
    seen = parse_resource(document)
    page = describe(seen, now=datetime.now(UTC))
    assert "(hidden from viewers)" in page
    assert str(len(MARKER)) in page


def test_a_realm_request_carries_the_inline_password() -> None:
    realm = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": "r"},
            "spec": {"registryCredentials": [{"username": "u", "password": MARKER}]},
        }
    )
    assert isinstance(realm, Realm)
    assert to_request_document(realm)["spec"]["registryCredentials"][0]["password"] == MARKER
    assert MARKER not in render(realm.kind, [realm], "yaml")


def test_secret_values_from_literals_and_files(tmp_path: Path) -> None:
    source = tmp_path / "ca.crt"
    source.write_bytes(b"\x00cert")
    values = secret_values(["a=1=2"], [str(source), f"renamed={source}"])
    assert values == {"a": b"1=2", "ca.crt": b"\x00cert", "renamed": b"\x00cert"}


def test_apply_puts_secrets_after_their_parents_and_compares_digests() -> None:
    secret = _secret(space="s")
    assert parent_chain(secret) == [("Realm", ("r",)), ("Space", ("r", "s"))]
    realm = parse_resource({"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": "r"}})
    ordered = apply_order([Document("s", 0, secret), Document("r", 0, realm)])
    assert [d.resource.kind for d in ordered] == ["Realm", "Secret"]
    current = secret.model_copy(
        update={"status": key_status(secret.values() or {}), "string_data": None}
    )
    current.metadata.resource_version = "7"
    assert updated_object(secret, current) is None
    changed = secret.model_copy(update={"string_data": {"token": "other"}})
    update = updated_object(changed, current)
    assert isinstance(update, Secret)
    assert update.metadata.resource_version == "7"
    assert update.value("token") == b"other"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-literal", "novalue"], "must be KEY=VALUE"),
        (["--from-literal", "a=1", "--from-literal", "a=2"], "given twice"),
        (["--from-literal", "../x=1"], "data[../x]"),
    ],
)
def test_create_secret_generic_refuses_bad_input_before_sending(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "--server",
            "unix:///nonexistent.sock",
            "create",
            "secret",
            "generic",
            "api",
            "--realm",
            "r",
            *args,
        ],
    )
    assert result.exit_code != 0
    assert message in result.output


def test_create_secret_generic_client_dry_run() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "create",
            "secret",
            "generic",
            "api",
            "--realm",
            "r",
            "--from-literal",
            f"t={MARKER}",
            "--dry-run",
            "client",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "secret/api created (client dry run)"
