#!/usr/bin/env bash
# The proof that the suite holds on a busy machine (issue "Proof matches promise"):
# N runs in a row of `.ci/run` on one clean clone of this checkout's HEAD, beside a
# CPU-heavy neighbour (one busy-looping process at nice 10, which takes whatever CPU the
# suite leaves). Stops at the first failed run. Logs and a one-line summary per run go to
# $OUT (default /tmp/load-proof); the 1-minute load average is sampled every 30 s.
#
#   bash scripts/load-proof.sh [RUNS]        # default 5
set -uo pipefail
RUNS="${1:-5}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/load-proof}"
CLONE="$OUT/clone"
rm -rf "$OUT" && mkdir -p "$OUT"
git clone -q "$ROOT" "$CLONE"
echo "commit $(git -C "$CLONE" rev-parse --short HEAD)" > "$OUT/summary"

nice -n 10 python3 -c 'while True: pass' &
NEIGHBOUR=$!
trap 'kill $NEIGHBOUR $SAMPLER 2>/dev/null' EXIT
( while :; do echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 30; done ) \
    > "$OUT/load.log" &
SAMPLER=$!

for i in $(seq 1 "$RUNS"); do
    start=$(date +%s)
    (cd "$CLONE" && CI=true bash .ci/run) > "$OUT/run$i.log" 2>&1
    rc=$?
    echo "run $i: exit $rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/summary"
    [ "$rc" -eq 0 ] || exit "$rc"
done
