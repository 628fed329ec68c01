"""Entry point of ``kukectl`` until the CLI lands (issue: API server and kukectl)."""

import sys


def main() -> None:
    print("kukectl: not yet implemented", file=sys.stderr)
    sys.exit(2)
