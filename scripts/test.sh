#!/usr/bin/env bash
# Bootstrap, then lint (ruff, mypy) and run the test suite; arguments go to pytest.
# Every step runs even when an earlier one fails; the exit status is non-zero if any failed.
#
# pytest runs in two phases so that the suite fits its time budget on two cores:
#   1. every test not marked `alone`, spread over AUTHNODE_TEST_WORKERS processes
#      (pytest-xdist; default: the number of cores + 1, since these tests spend much of
#      their time waiting on servers: two workers kept about 1.3 of 2 cores busy; work
#      stealing evens out the end of the run). Each worker starts its own servers
#      on free ports, so workers never share a Redis, PostgreSQL, FerretDB or SMTP server.
#   2. the tests marked `alone` (timing- and load-sensitive: shutdown deadlines, failover,
#      enumeration timing, the bench smoke), one at a time with nothing beside them.
# A phase that selects no test (pytest exit 5, e.g. `make test-fast`) is not a failure.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

scripts/bootstrap.sh || exit $?

failed=()
step() {
    local name="$1"
    shift
    printf '[test] %s\n' "$name"
    "$@"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        failed+=("$name (exit $rc)")
    fi
}

step "ruff check" .venv/bin/ruff check authnode tests
step "mypy" .venv/bin/mypy
WORKERS="${AUTHNODE_TEST_WORKERS:-$(( $(nproc) + 1 ))}"

pytest_phase() {
    .venv/bin/python -m pytest "$@"
    local rc=$?
    [ "$rc" -eq 5 ] && return 0
    return "$rc"
}

if [ "$WORKERS" -gt 1 ]; then
    step "pytest (parallel, $WORKERS workers)" pytest_phase -n "$WORKERS" --dist worksteal --alone=without "$@"
else
    step "pytest" pytest_phase --alone=without "$@"
fi
step "pytest (alone)" pytest_phase --alone=only "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    printf '[test] FAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
