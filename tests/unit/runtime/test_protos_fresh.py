"""The committed stubs in _gen/ must be what hack/gen-protos.sh makes of protos/ today."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
GEN_SCRIPT = REPO_ROOT / "hack" / "gen-protos.sh"
COMMITTED = REPO_ROOT / "operator" / "kukeon" / "runtime" / "containerd" / "_gen"


def _tree(root: Path) -> dict[str, Path]:
    return {
        str(path.relative_to(root)): path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    fresh = tmp_path / "_gen"
    result = subprocess.run(
        ["bash", str(GEN_SCRIPT), str(fresh)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr
    committed, generated = _tree(COMMITTED), _tree(fresh)
    assert sorted(committed) == sorted(generated), "run hack/gen-protos.sh and commit _gen/"
    stale = [
        name
        for name in generated
        if not filecmp.cmp(generated[name], committed[name], shallow=False)
    ]
    assert stale == [], f"stale stubs (run hack/gen-protos.sh): {stale}"


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        ("tasks", "Wait", "/containerd.services.tasks.v1.Tasks/Wait"),
        ("content", "Write", "/containerd.services.content.v1.Content/Write"),
        ("events", "Subscribe", "/containerd.services.events.v1.Events/Subscribe"),
        ("snapshots", "Prepare", "/containerd.services.snapshots.v1.Snapshots/Prepare"),
        ("namespaces", "Create", "/containerd.services.namespaces.v1.Namespaces/Create"),
        ("diff", "Apply", "/containerd.services.diff.v1.Diff/Apply"),
        ("leases", "Create", "/containerd.services.leases.v1.Leases/Create"),
        ("images", "Create", "/containerd.services.images.v1.Images/Create"),
        ("containers", "Create", "/containerd.services.containers.v1.Containers/Create"),
        ("version", "Version", "/containerd.services.version.v1.Version/Version"),
    ],
)
def test_method_paths_are_containerds(service: str, method: str, path: str) -> None:
    """containerd routes by these exact paths: package, service and method names."""
    source = (
        COMMITTED / "services" / service / "v1" / f"{_module(service)}_pb2_grpc.py"
    ).read_text()
    assert f"'{path}'" in source


def _module(service: str) -> str:
    return {"namespaces": "namespace"}.get(service, service)


def test_stubs_import_nothing_named_containerd_types_or_services() -> None:
    for path in COMMITTED.rglob("*.py*"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                module = line.split()[1]
                assert not module.startswith(("containerd", "types", "services")), (path, line)
