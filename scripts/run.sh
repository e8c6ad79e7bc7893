#!/usr/bin/env bash
# Run authnode locally: redis, PostgreSQL, FerretDB and an SMTP printer on their default
# ports (state in ./.run; a port that already has a listener is used as it is), then
# `authnode migrate` and `authnode serve --role all` on http://127.0.0.1:8000.
# Emails are printed to .run/smtp.log. Stop the services with `make stop`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/bootstrap.sh

RUN_DIR="$ROOT/.run"
mkdir -p "$RUN_DIR"
.venv/bin/python -m tests.services.run_local start --dir "$RUN_DIR"

if [ ! -s "$RUN_DIR/secret_key" ]; then
    (umask 077 && .venv/bin/authnode secret \
        >"$RUN_DIR/secret_key")
fi

export MONGODB_URI="${MONGODB_URI:-mongodb://127.0.0.1:27017/authnode}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export POSTGRES_URL="${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/authnode}"
export SMTP_URL="${SMTP_URL:-smtp://127.0.0.1:1025}"
export PUBLIC_URL="${PUBLIC_URL:-http://127.0.0.1:8000}"
export BIND="${BIND:-127.0.0.1:8000}"
SECRET_KEY="${SECRET_KEY:-$(cat "$RUN_DIR/secret_key")}"
export SECRET_KEY

echo "[run] emails are printed to $RUN_DIR/smtp.log (tail -f it)"
echo "[run] authnode migrate"
.venv/bin/authnode migrate
echo "[run] authnode serve --role all on http://$BIND"
exec .venv/bin/authnode serve --role all
