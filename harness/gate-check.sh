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
# Is a site whose line matches $1 among the top 3 of the gate's "where" lines (heaptrack)?
named() { grep -A3 '^where (' "$out/last.txt" | tail -n 3 | grep -q -- "$1"; }
for case in "IMPORT_BATCH_SIZE=200" "IMPORT_BATCH_SIZE=400" "hungry build"; do
    if [ "$case" = "hungry build" ]; then gate "$hungry"; else gate "$importer" --candidate-set "$case"; fi
    code=$?
    if [ "$code" = 1 ]; then echo "detected   $case: exit 1"; else echo "MISSED     $case: exit $code"; bad=1; fi
    # The checks in words: what grew, by how much, how significant, and what the run could see.
    grep -E '^(✗|·) [^ ]' "$out/last.txt" | sed 's/^/           /'
    # Where: the failing anonymous check made the gate profile both sides; the site that holds
    # the injected memory must be named in the top 3. heaptrack names where memory was asked
    # for: the hungry build's copies at pipeline.rs (`kept.push`); a larger batch's buffer is its
    # rows, whose text is made where a game is parsed (pgn/parse.rs, the PGN normalised to LF);
    # the Vec of rows itself is a few KB.
    grep -A3 '^where (' "$out/last.txt" | sed 's/^/           /'
    case $case in
        "hungry build") site="importer/src/pipeline.rs:" ;;
        IMPORT_BATCH_SIZE=*) site="importer/src/pgn/parse.rs:" ;;
        *) site="" ;;
    esac
    if [ -n "$site" ]; then
        if named "$site"; then echo "named      $case: $site in the top 3"; else echo "NOT NAMED  $case: no $site in the top 3"; bad=1; fi
    fi
done
# An A/A gate asked where (--where): no site may grow above the profiler's noise.
gate "$importer" --where
grep -A3 '^where (' "$out/last.txt" | sed 's/^/           /'
if grep -A3 '^where (' "$out/last.txt" | tail -n 3 | grep -v -q 'within noise'; then
    echo "A/A where: a site above the profiler's noise"; bad=1
elif ! grep -q '^where (' "$out/last.txt"; then
    echo "A/A where: not profiled"; bad=1
else
    echo "A/A where: no site above the profiler's noise"
fi
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
