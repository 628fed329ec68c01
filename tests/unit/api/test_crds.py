"""crds/ is generated from the models: it must be current and structurally valid."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kukeon.api import Kind
from kukeon.api.schema import crd_files

ROOT = Path(__file__).resolve().parents[3]
GENERATOR = ROOT / "hack" / "gen-crds.py"


def test_crds_directory_is_up_to_date() -> None:
    for name, text in crd_files().items():
        path = ROOT / "crds" / name
        assert path.is_file(), f"{path} missing: run .venv/bin/python hack/gen-crds.py"
        assert path.read_text() == text, f"{path} is stale: run .venv/bin/python hack/gen-crds.py"


def _generator_main() -> Callable[[list[str]], int]:
    """hack/gen-crds.py's ``main``, loaded in this process."""
    spec = importlib.util.spec_from_file_location("gen_crds", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main: Callable[[list[str]], int] = module.main
    return main


def test_check_mode_fails_when_stale_and_passes_after_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The script run as a user runs it once; its main in this process for the rest (each
    # run of the script is an interpreter importing the models: a second, ten under load).
    script = subprocess.run(
        [sys.executable, str(GENERATOR), "--dir", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert script.returncode == 1, script.stderr
    assert "is stale" in script.stderr, script.stderr
    main = _generator_main()
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--dir", str(tmp_path), "--check"]) == 0
    (tmp_path / "kukeon.io_cells.yaml").write_text("stale\n")
    capsys.readouterr()
    assert main(["--dir", str(tmp_path), "--check"]) == 1
    assert "kukeon.io_cells.yaml" in capsys.readouterr().err


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_every_crd_is_a_structural_schema_with_a_status_subresource() -> None:
    files = crd_files()
    assert len(files) == len(Kind)
    for kind in Kind:
        crd = yaml.safe_load(files[f"kukeon.io_{kind.value.lower()}s.yaml"])
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["spec"]["group"] == "kukeon.io"
        assert crd["spec"]["names"]["kind"] == kind.value
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1beta1"
        assert version["subresources"] == {"status": {}}
        schema = version["schema"]["openAPIV3Schema"]
        assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(schema["properties"])
        text = files[f"kukeon.io_{kind.value.lower()}s.yaml"]
        assert "$ref" not in text
        assert "$defs" not in text
        for path, node in walk(schema):
            assert "type" in node or node.get("x-kubernetes-int-or-string"), path
            assert not {"anyOf", "oneOf", "allOf", "const", "title"} & set(node), path
            assert not ("properties" in node and "additionalProperties" in node), path


def test_schema_carries_the_rules_it_can() -> None:
    cell = yaml.safe_load(crd_files()["kukeon.io_cells.yaml"])
    spec = cell["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    container = spec["properties"]["containers"]["items"]
    assert container["properties"]["restartPolicy"]["enum"] == ["always", "on-failure", "never"]
    assert container["properties"]["id"]["maxLength"] == 63
    assert container["properties"]["hostPID"]["type"] == "boolean"
    assert spec["properties"]["desiredState"]["enum"] == ["Running", "Stopped"]
    assert "containers" in spec["required"]


def test_status_enums_are_open_and_spec_enums_closed() -> None:
    """A status enum takes a word a newer kukeond wrote (``api.observed``): its schema is a
    string of that shape with the known values in its description, where the CRDs listed a
    closed ``enum`` that refused what the models keep. Spec enums stay closed."""
    opened: list[str] = []
    for name, text in crd_files().items():
        schema = yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(schema):
            status = path.startswith(".status")
            assert not (status and "enum" in node), f"{name} {path}: a closed status enum"
            if "Known values" in node.get("description", ""):
                assert status, f"{name} {path}: an open enum outside status"
                assert re.fullmatch(node["pattern"].strip("^$"), "Hibernating"), path
                assert not re.fullmatch(node["pattern"].strip("^$"), "two words"), path
                opened.append(f"{name}{path}")
    assert "kukeon.io_cells.yaml.status.state" in opened
    assert "kukeon.io_cells.yaml.status.containers[].state" in opened
    assert "kukeon.io_nodes.yaml.status.conditions[].status" in opened
    cell = yaml.safe_load(crd_files()["kukeon.io_cells.yaml"])
    props = cell["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    state = props["status"]["properties"]["state"]
    assert "`Pending`, `Ready`" in state["description"]
    assert props["spec"]["properties"]["desiredState"]["enum"] == ["Running", "Stopped"]
    # what the schema says, the model does: a newer version's word is kept
    from kukeon.api import Cell

    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "c"},
        "spec": {"realmId": "r", "containers": [{"id": "a", "image": "busybox"}]},
        "status": {"state": "Hibernating"},
    }
    assert Cell.model_validate(document).status.state == "Hibernating"
