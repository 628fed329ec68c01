#!/usr/bin/env python3
"""Write crds/ from the pydantic models of kukeon.api, or check that it is up to date.

    .venv/bin/python hack/gen-crds.py          # regenerate crds/
    .venv/bin/python hack/gen-crds.py --check  # exit 1 when crds/ differs from the models

The schemas come from kukeon.api.schema, so the models stay the one source of truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))  # runnable from a checkout without installing

from kukeon.api.schema import GENERATED_HEADER, crd_files  # noqa: E402


def stale_files(crds_dir: Path) -> list[str]:
    """Names of files in crds_dir that are missing, different, or no longer generated."""
    wanted = crd_files()
    stale = [
        name
        for name, text in wanted.items()
        if not (crds_dir / name).is_file() or (crds_dir / name).read_text() != text
    ]
    for path in sorted(crds_dir.glob("*.yaml")):
        if path.name not in wanted and path.read_text().startswith(GENERATED_HEADER):
            stale.append(path.name)
    return stale


def write(crds_dir: Path) -> list[str]:
    crds_dir.mkdir(parents=True, exist_ok=True)
    changed = stale_files(crds_dir)
    wanted = crd_files()
    for name in changed:
        if name in wanted:
            (crds_dir / name).write_text(wanted[name])
        else:
            (crds_dir / name).unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
    parser.add_argument("--dir", type=Path, default=ROOT / "crds", help="output directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        if stale:
            print(
                f"{args.dir} is stale ({', '.join(stale)}): run .venv/bin/python hack/gen-crds.py",
                file=sys.stderr,
            )
            return 1
        return 0
    for name in write(args.dir):
        print(f"updated {args.dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
