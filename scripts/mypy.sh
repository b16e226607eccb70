#!/usr/bin/env bash
# mypy on listener/, responders/ and config/ as the installed package earshot.*:
# the source folders are mapped under one namespace (pyproject package-dir), which mypy
# cannot follow through the editable-install hook, so we give it a link tree.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/mypy/earshot
mkdir -p "$tree"
for pkg in listener responders config; do ln -sfn "$PWD/$pkg" "$tree/$pkg"; done
MYPYPATH=build/mypy .venv/bin/mypy -p earshot.listener -p earshot.responders -p earshot.config
