#!/usr/bin/env bash
# The test command of the README: installs everything the suite needs on a fresh Debian 12
# host (root), then runs lint, type checks and the whole test suite. Integration tests start
# their own private etcd/containerd/registry instances from fixtures and stop them at the end.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: hack/test.sh [PYTEST-ARGS...]

Installs host packages and the project (hack/install-deps.sh --with-test-tools), then runs
ruff, mypy --strict and pytest. Without arguments, pytest runs tests/unit on two workers
(pytest-xdist), then every other test on two workers too, a module at a time on each.
Extra arguments go to pytest, which then runs once, one test at a time, on what they
select (add -n 2 --dist loadscope to share it out).
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
# The slowest tests are listed at the end of each run: the suite has a time budget (25
# minutes on 2 cores).
pytest=("$py" -m pytest -p no:cacheprovider --durations=40)
if [[ $# -gt 0 ]]; then
    exec "${pytest[@]}" "$@"
fi
# tests/unit shares nothing between tests but the CPU, and half of its time is waiting
# (timers, subprocesses): two workers take it from ~2 minutes to ~1. Integration and e2e
# tests wait too (daemons starting, cells converging): two workers take them from ~25
# minutes to ~18. Their host objects have names and subnet pools of their own per worker,
# and --dist loadscope gives each worker whole modules (the packaging tests all on one,
# tests/conftest.py), as the host leak check needs (tests/fixtures/hostleaks.py).
# Both runs always run; the first failure's status is the script's.
status=0
"${pytest[@]}" -n 2 tests/unit || status=$?
rc=0
"${pytest[@]}" -n 2 --dist loadscope --ignore=tests/unit || rc=$?
[[ $status -ne 0 ]] || status=$rc
exit "$status"
