#!/usr/bin/env bash
# The memory gate's own proof (`make gate-check`): detection and false alarms, measured.
# Usage: gate-check.sh HARNESS IMPORTER HUNGRY_IMPORTER AA_RUNS
# Exit 1 when the gate misses a regression or raises a false alarm.
set -uo pipefail
harness=$(realpath "$1") importer=$(realpath "$2") hungry=$(realpath "$3") runs=$4
cd "$(dirname "$0")/.." || exit 2
out=$(mktemp -d) || exit 2
trap 'rm -rf "$out"' EXIT
gate() { gate_between "$1" "$importer" "${@:2}"; }
gate_between() { "$harness" gate scenarios/ci-gate.yaml --importer "$1" --against "$2" --no-progress --out "$out" "${@:3}" > "$out/last.txt" 2>&1; }
bad=0
for case in "IMPORT_BATCH_SIZE=200" "IMPORT_BATCH_SIZE=400" "hungry build"; do
    if [ "$case" = "hungry build" ]; then gate "$hungry"; else gate "$importer" --candidate-set "$case"; fi
    code=$?
    if [ "$code" = 1 ]; then echo "detected   $case: exit 1"; else echo "MISSED     $case: exit $code"; bad=1; fi
    # The checks in words: what grew, by how much, how significant, and what the run could see.
    grep -E '^(✗|·) [^ ]' "$out/last.txt" | sed 's/^/           /'
done
# Runs the gate $runs times with nothing to find between CANDIDATE and AGAINST; any alarm fails the proof.
no_alarm() {
    local name=$1 candidate=$2 against=$3 alarms=0 i code
    for i in $(seq 1 "$runs"); do
        gate_between "$candidate" "$against"
        code=$?
        case $code in
            0) ;;
            1) alarms=$((alarms + 1)); echo "FALSE ALARM $name run $i"; grep -E '^✗ [^ ]' "$out/last.txt" ;;
            *) echo "$name run $i could not decide (exit $code):"; tail -n 5 "$out/last.txt"; bad=1 ;;
        esac
    done
    echo "$name: $alarms false alarm(s) in $runs runs"
    [ "$alarms" = 0 ] || bad=1
}
no_alarm "A/A" "$importer" "$importer"
# The same bytes written two ways (as the linker wrote them, and a copy): how a file was written
# decides how the page cache holds it, so an unstaged comparison called this a 5 % regression.
copy="$out/importer-copy"
cp "$importer" "$copy" && cmp -s "$importer" "$copy" || { echo "cannot copy $importer"; exit 2; }
no_alarm "identical bytes, copy against linker" "$copy" "$importer"
no_alarm "identical bytes, linker against copy" "$importer" "$copy"
exit $bad
