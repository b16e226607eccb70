#!/usr/bin/env bash
# Run every benchmark; `--quick` is what CI runs (smaller sizes; bench_scale on SQLite only).
# Each prints its figures and ratios; a missed target is reported, not a failure.
# Exits non-zero only if a benchmark did not run (crashed) or lost or doubled an alert.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
runs=(bench_sentiment bench_language bench_ingest bench_poll)
if [[ " $* " == *" --quick "* ]]; then
    runs+=("bench_scale")
else
    runs+=("bench_scale --db sqlite" "bench_scale --db postgres")  # each under 5 minutes
fi
runs+=(bench_delivery bench_themes)
failed=()
for run in "${runs[@]}"; do
    read -r bench extra <<<"$run"
    echo "== benchmarks/$bench.py ${extra:+$extra }$*"
    start=$(date +%s)
    # shellcheck disable=SC2086 # extra holds separate arguments
    if ! "$PY" "benchmarks/$bench.py" ${extra:-} "$@"; then
        failed+=("$run")
    fi
    echo "== $run: $(( $(date +%s) - start )) s"
    echo
done
if (( ${#failed[@]} )); then
    echo "benchmarks did not run: ${failed[*]}"
    exit 1
fi
echo "benchmarks: all ran"
