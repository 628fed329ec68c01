"""kukectl refuses an image that is not a reference before it sends anything, with the
message of the API server's 422 (the same parser, ``kukeon.api.imageref``): `run`,
`create cellset`, `set image` and `apply --dry-run=client`."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from kukeon.api.imageref import reference_problem
from kukeon.cli.main import cli

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]
BAD = "Busybox:1"
WHY = reference_problem(BAD)


def _kukectl(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*NO_SERVER, *args])
    return result.exit_code, result.output


def test_run_refuses_it_in_every_mode_naming_the_field() -> None:
    assert WHY is not None
    for dry_run in ("--dry-run=client", "--dry-run=server", "--dry-run=none"):
        code, output = _kukectl("run", "web", "--image", BAD, dry_run)
        assert code == 2, output
        assert f"Cell default/default/default/web: spec.containers[0].image: {WHY}" in output
    code, output = _kukectl("run", "web", "--image", "localhost:5000/x@sha256:" + "a" * 64,
                            "--dry-run=client")  # fmt: skip
    assert (code, output) == (0, "cell/web created (dry run)\n")


def test_create_cellset_refuses_it() -> None:
    code, output = _kukectl("create", "cellset", "web", "--image", BAD, "--dry-run=client")
    assert code == 2, output
    assert f"spec.template.spec.containers[0].image: {WHY}" in output


def test_set_image_refuses_it() -> None:
    code, output = _kukectl("set", "image", "cell/c", f"main={BAD}")
    assert code == 2, output
    assert f"main: {WHY}" in output


def test_apply_client_dry_run_names_it(tmp_path: Path) -> None:
    def cell(name: str, image: str) -> dict[str, object]:
        return {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {"containers": [{"id": "main", "image": image}]},
        }

    manifest = tmp_path / "cells.yaml"
    manifest.write_text(yaml.safe_dump_all([cell("good", "busybox"), cell("bad", BAD)]))
    code, output = _kukectl("apply", "-f", str(manifest), "--dry-run=client")
    assert code == 2, output
    assert "cell/good valid (client dry run)" in output
    assert f"Cell default/default/default/bad: spec.containers[0].image: {WHY}" in output
    assert "cell/bad valid" not in output
