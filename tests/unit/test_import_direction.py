"""The packages of kukeon import each other only in the directions docs/architecture.md
draws ("Packages and the direction of imports"), and that drawing says what the code does."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "kukeon"
ORDER = [
    "api", "store", "framework", "controllers", "runtime", "client", "apiserver", "metrics", "ui",
    "cli", "daemon", "cancelling", "concurrently", "fileio", "httpexpect", "leanpackage",
    "processes", "retrying",
]  # fmt: skip
EVERYWHERE = {  # "for every layer"
    "cancelling", "concurrently", "fileio", "httpexpect", "leanpackage", "processes", "retrying",
}  # fmt: skip


def _documented() -> dict[str, set[str]]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Packages and the direction of imports", 1)[1]
    block = section.split("```", 2)[1]
    allowed: dict[str, set[str]] = {}
    for line in block.splitlines():
        match = re.match(r"^\s+(\w+)(?:/|\.py)\s.*\(([^()]*(?:\([^()]*\))?[^()]*)\)\s*$", line)
        if not match:
            continue
        name, deps = match.group(1), match.group(2)
        if "nothing of kukeon" in deps:
            allowed[name] = set()
        elif "everything above" in deps:
            allowed[name] = {p for p in ORDER if p != name}
        else:
            allowed[name] = {p for p in ORDER if re.search(rf"\b{p}\b", deps)}
    return allowed


def _imports() -> dict[str, dict[str, list[str]]]:
    """For each package, the other packages it imports, with the files that do."""
    found: dict[str, dict[str, list[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if "_gen" in relative.parts:
            continue
        package = relative.parts[0].removesuffix(".py")
        module = ["kukeon", *relative.with_suffix("").parts]
        parent = module[:-1]  # the package a relative import starts from
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parent[: len(parent) - node.level + 1]
                    targets = [".".join([*base, *([node.module] if node.module else [])])]
                else:
                    targets = [node.module or ""]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                if parts[0] == "kukeon" and len(parts) > 1 and parts[1] != package:
                    found.setdefault(package, {}).setdefault(parts[1], []).append(str(relative))
    return found


def test_the_drawing_names_every_package() -> None:
    assert set(_documented()) == set(ORDER)


def test_imports_go_only_where_the_drawing_says() -> None:
    allowed = _documented()
    wrong = [
        f"{package} imports {dependency} ({', '.join(sorted(set(files))[:3])})"
        for package, dependencies in _imports().items()
        for dependency, files in dependencies.items()
        if dependency not in allowed[package] | EVERYWHERE
    ]
    assert not wrong, "\n".join(wrong)
