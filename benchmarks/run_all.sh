#!/usr/bin/env bash
# Run every benchmark; `--quick` is what CI runs (about a minute and a half in all).
# Each prints its figures and ratios; a missed speed target is reported, not a failure.
# Exits non-zero if a benchmark crashed or lost or doubled an alert.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
failed=()
for bench in bench_sentiment bench_language bench_ingest bench_poll bench_scale bench_delivery; do
    echo "== benchmarks/$bench.py $*"
    start=$(date +%s)
    if ! "$PY" "benchmarks/$bench.py" "$@"; then
        failed+=("$bench")
    fi
    echo "== $bench: $(( $(date +%s) - start )) s"
    echo
done
if (( ${#failed[@]} )); then
    echo "benchmarks failed: ${failed[*]}"
    exit 1
fi
echo "benchmarks: all ran"
