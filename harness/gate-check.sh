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
alarms=0
for i in $(seq 1 "$runs"); do
    gate "$importer"
    code=$?
    case $code in
        0) ;;
        1) alarms=$((alarms + 1)); echo "FALSE ALARM A/A run $i"; grep -E '^✗ [^ ]' "$out/last.txt" ;;
        *) echo "A/A run $i could not decide (exit $code):"; tail -n 5 "$out/last.txt"; bad=1 ;;
    esac
done
echo "A/A: $alarms false alarm(s) in $runs runs"
[ "$alarms" = 0 ] || bad=1
# The same bytes written two ways (as the linker wrote them, and a copy): how a file was written
# decides how the page cache holds it, so an unstaged comparison called this a 5 % regression.
copy="$out/importer-copy"
cp "$importer" "$copy" && cmp -s "$importer" "$copy" || { echo "cannot copy $importer"; exit 2; }
written=0
for order in "copy linker" "linker copy"; do
    for i in $(seq 1 "$runs"); do
        if [ "$order" = "copy linker" ]; then gate_between "$copy" "$importer"; else gate_between "$importer" "$copy"; fi
        code=$?
        case $code in
            0) ;;
            1) written=$((written + 1)); echo "FALSE ALARM identical bytes ($order) run $i"; grep -E '^✗ [^ ]' "$out/last.txt" ;;
            *) echo "identical bytes ($order) run $i could not decide (exit $code):"; tail -n 5 "$out/last.txt"; bad=1 ;;
        esac
    done
done
echo "identical bytes written two ways, both orders: $written false alarm(s) in $((2 * runs)) runs"
[ "$written" = 0 ] || bad=1
exit $bad
