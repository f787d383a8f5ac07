#!/usr/bin/env bash
# The API contract check: schemathesis against the real importer binary on a fresh SQLite file,
# with the harness's mocks as lichess and chess.com, on loopback only. Bounded: a fixed seed, a
# number of examples per operation and a time budget. Exit 1 on any failed check.
# Usage: importer/contract/run.sh IMPORTER HARNESS ST   (the Makefile's `contract` target)
set -euo pipefail
importer=$1 harness=$2 st=$3
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
    wait 2> /dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Every server binds port 0 and says which port it got: no port is chosen here and bound later.
"$harness" mock --lichess-port 0 --chesscom-port 0 > "$work/mocks.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    grep -q '^chess.com mock:' "$work/mocks.log" && break
    sleep 0.1
done
lichess_url=$(sed -n 's/^lichess mock: *//p' "$work/mocks.log")
chesscom_url=$(sed -n 's/^chess.com mock: *//p' "$work/mocks.log")
[ -n "$lichess_url" ] && [ -n "$chesscom_url" ] || {
    echo "contract: the mocks did not come up; their log:" >&2
    cat "$work/mocks.log" >&2
    exit 1
}
LICHESS_BASE_URL="$lichess_url" CHESSCOM_BASE_URL="$chesscom_url" \
    DATABASE_URL="sqlite://$work/contract.db" BIND_ADDR="127.0.0.1:0" LISTEN_ADDR_FILE="$work/addr" \
    UPSTREAM_USER_AGENT="importer-contract-check (+http://127.0.0.1/; local mocks only)" \
    MAX_CONCURRENT_IMPORTS=2 IMPORT_QUEUE_CAPACITY=5 \
    "$importer" > "$work/importer.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
    [ -s "$work/addr" ] && curl -fsS "http://$(cat "$work/addr")/healthz" > /dev/null 2>&1 && break
    sleep 0.1
done
api=$(cat "$work/addr" 2> /dev/null || true)
[ -n "$api" ] && curl -fsS "http://$api/healthz" > /dev/null || {
    echo "contract: the importer did not come up; its log:" >&2
    cat "$work/importer.log" >&2
    exit 1
}

status=0
"$st" run "http://$api/api/v1/openapi.json" \
    --checks "${CONTRACT_CHECKS:-all}" \
    --phases examples,coverage,fuzzing \
    --max-examples "${CONTRACT_EXAMPLES:-100}" --max-time "${CONTRACT_SECS:-45}" \
    --seed 20261130 --generation-database none --workers 1 --request-timeout 10 --no-color \
    --report junit --report-dir target/contract-report || status=$?
if [ "$status" -ne 0 ]; then
    echo "contract: failed; the importer's log is in target/contract-report/importer.log" >&2
    mkdir -p target/contract-report
    cp "$work/importer.log" target/contract-report/importer.log
fi
exit "$status"
