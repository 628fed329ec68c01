"""kukectl's --validate, as kubectl's: strict (or true, the default) refuses a manifest's
unknown field (exit 2, nothing sent); warn leaves it out and names it on stderr; ignore (or
false) leaves it out silently; and the server is asked the same (fieldValidation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.params import field_validation

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]
MANIFEST = """\
apiVersion: kukeon.io/v1beta1
kind: Realm
metadata:
  name: shop
  lables: {tier: web}
spec:
  securityLevle: baseline
"""


def _apply(tmp_path: Path, *options: str) -> tuple[int, str, str]:
    path = tmp_path / "typo.yaml"
    path.write_text(MANIFEST)
    result = CliRunner().invoke(
        cli, [*NO_SERVER, "apply", "-f", str(path), "--dry-run=client", *options]
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("options", [(), ("--validate=strict",), ("--validate", "true")])
def test_strict_refuses_unknown_fields(tmp_path: Path, options: tuple[str, ...]) -> None:
    code, _, stderr = _apply(tmp_path, *options)
    assert code == 2
    assert "metadata.lables: unknown field" in stderr
    assert "spec.securityLevle: unknown field" in stderr


def test_warn_names_each_field_left_out(tmp_path: Path) -> None:
    code, stdout, stderr = _apply(tmp_path, "--validate=warn")
    assert code == 0, stderr
    assert stderr.splitlines() == [
        'Warning: typo.yaml: document 0: unknown field "metadata.lables"'.replace(
            "typo.yaml", str(tmp_path / "typo.yaml")
        ),
        'Warning: typo.yaml: document 0: unknown field "spec.securityLevle"'.replace(
            "typo.yaml", str(tmp_path / "typo.yaml")
        ),
    ]
    assert "realm/shop valid (client dry run)" in stdout


@pytest.mark.parametrize("word", ["ignore", "false", "IGNORE"])
def test_ignore_leaves_them_out_silently(tmp_path: Path, word: str) -> None:
    code, stdout, stderr = _apply(tmp_path, f"--validate={word}")
    assert code == 0, stderr
    assert stderr == ""
    assert "realm/shop valid (client dry run)" in stdout


def test_the_level_asked_of_the_server() -> None:
    assert [field_validation(w) for w in ("strict", "true", "warn", "ignore", "false")] == [
        None,
        None,
        "Warn",
        "Ignore",
        "Ignore",
    ]


def test_an_unknown_level_is_a_usage_error(tmp_path: Path) -> None:
    code, _, stderr = _apply(tmp_path, "--validate=loose")
    assert code == 2
    assert "'loose' is not one of" in stderr
