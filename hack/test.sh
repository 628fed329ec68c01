#!/usr/bin/env bash
# The test command of the README: installs everything the suite needs on a fresh Debian 12
# host (root), then runs lint, type checks and the whole test suite. Integration tests start
# their own private etcd/containerd/registry instances from fixtures and stop them at the end.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: hack/test.sh [PYTEST-ARGS...]

Installs host packages and the project (hack/install-deps.sh --with-test-tools), then runs
ruff, mypy --strict and pytest. Extra arguments go to pytest.
USAGE
}
if [[ ${1:-} == "-h" || ${1:-} == "--help" ]]; then usage; exit 0; fi

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

bash hack/install-deps.sh --with-test-tools
py=.venv/bin/python

echo "== ruff"
"$py" -m ruff check operator tests hack bench
"$py" -m ruff format --check operator tests hack bench
echo "== mypy --strict"
"$py" -m mypy
echo "== shellcheck"
shellcheck hack/*.sh .ci/run
echo "== pytest"
# The slowest tests are listed at the end: the suite has a time budget (25 minutes).
"$py" -m pytest -p no:cacheprovider --durations=40 "$@"
