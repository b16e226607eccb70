#!/usr/bin/env bash
# Refreshes the lock files from pyproject.toml's ranges (which stay ranges):
#   requirements/test.lock     the package with its [test] extra: the README test command, CI
#   requirements/runtime.lock  the package alone: the Dockerfile
# Every pin carries the sha256 of each of its files on the package index, so
# `pip install --require-hashes -r requirements/....lock` installs exactly what was locked.
# The lock is universal (one file for Linux, macOS and Windows, Python 3.11 and newer), and
# holds the build backend (pyproject's [build-system] requires) too, so earshot itself is
# installed with `--no-deps --no-build-isolation` and nothing unlocked is fetched.
#
#   bash scripts/lock.sh             after a change to pyproject.toml: keeps every pin it can
#   bash scripts/lock.sh --upgrade   every package to its newest release within the ranges
#
# The resolver (uv, at a pinned version) is installed into a temporary virtual environment
# from the package index. The runtime lock is resolved against the test lock, so the two
# pin each shared package alike.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
case "${1:-}" in
    "") upgrade=() ;;
    --upgrade) upgrade=(--upgrade) ;;
    *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac

tool="$(mktemp -d)"
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool"
"$tool/bin/pip" install -q "uv==$UV_VERSION"

build_requires="$(python3 -c 'import tomllib; print("\n".join(
    tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')"

compile() {
    "$tool/bin/uv" pip compile pyproject.toml - --quiet --universal --python-version 3.11 \
        --generate-hashes --custom-compile-command "bash scripts/lock.sh" \
        ${upgrade[@]+"${upgrade[@]}"} "$@" <<<"$build_requires"
}
mkdir -p requirements
compile --extra test -o requirements/test.lock
compile -c requirements/test.lock -o requirements/runtime.lock
echo "requirements/test.lock: $(grep -c '==' requirements/test.lock) pins;" \
    "requirements/runtime.lock: $(grep -c '==' requirements/runtime.lock) pins"
