#!/usr/bin/env bash
# Run every fuzz target (fuzz/fuzz_*.py, atheris/libFuzzer) for SECONDS each, in turn.
#
#   fuzz/run.sh 60          # what `make fuzz` and CI run
#   fuzz/run.sh 3600 jid    # one target, longer
#
# Each target starts from its seed corpus fuzz/corpus/<name>/ (read-only here: new inputs go
# to a temporary directory, so a run never changes the committed corpus). A crash, an
# uncaught exception, a failed property, an input slower than 10 s or more than 2 GiB of
# memory is saved as fuzz/crashes/<name>-crash-<sha1> (or -timeout-/-oom-) and makes this
# script exit non-zero. Turn a crasher into a regression case once fixed:
#   cp fuzz/crashes/<name>-crash-<sha1> fuzz/corpus/<name>/
# (tests/reliability/test_fuzz_corpus.py replays every corpus file on every `make test`).
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
only=${2:-}
python=${PYTHON:-.venv/bin/python}
mkdir -p fuzz/crashes

if ! "$python" -c 'import atheris' 2>/dev/null; then
    echo "atheris is not installed: $python -m pip install 'atheris>=2.3'" >&2
    exit 2
fi

max_len() {
    case "$1" in
        stream) echo 16384 ;;   # the 8 KiB pre-auth stanza limit must be reachable
        jid) echo 3200 ;;       # three parts of at most 1023 bytes, with separators
        *) echo 4096 ;;
    esac
}

status=0
summary=()
for target in fuzz/fuzz_*.py; do
    name=$(basename "$target" .py)
    name=${name#fuzz_}
    if [ -n "$only" ] && [ "$only" != "$name" ]; then continue; fi
    mkdir -p "fuzz/corpus/$name"
    work=$(mktemp -d)
    log=$(mktemp)
    echo "=== fuzz target '$name' for ${seconds}s"
    "$python" "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$name")" -print_final_stats=1 \
        -artifact_prefix="fuzz/crashes/$name-" "$work" "fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    grep -E '^(INFO: Seed|#[0-9]+ +DONE|==[0-9]+== ERROR|=== Uncaught|Traceback)' "$log" | tail -n 5
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "--- '$name' FAILED (exit $rc); last lines of the log:"
        tail -n 60 "$log"
        summary+=("$name: FAILED after ${execs:-?} executions; see fuzz/crashes/$name-*")
    else
        summary+=("$name: ${execs:-?} executions in ${seconds}s (${rate:-?}/s), no crash")
    fi
    rm -rf "$work" "$log"
done

echo "=== fuzz summary"
printf '%s\n' "${summary[@]}"
exit $status
