"""Entry point of ``kukeond`` until the daemon lands (issue: controllers and kukeond)."""

import sys


def main() -> None:
    print("kukeond: not yet implemented", file=sys.stderr)
    sys.exit(2)
