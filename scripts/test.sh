#!/usr/bin/env bash
# Bootstrap, then lint (ruff, mypy) and run the test suite; arguments go to pytest.
# Every step runs even when an earlier one fails; the exit status is non-zero if any failed.
# pytest runs last so that its summary line closes the output.
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
step "pytest" .venv/bin/python -m pytest "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    printf '[test] FAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
