#!/usr/bin/env bash
# Replays the Dockerfile's build stage without a Docker engine: its ENV, WORKDIR, COPY and RUN
# steps, read from the Dockerfile itself, run in a temporary directory (the image's absolute
# paths, /src and /opt/earshot, are mapped under it) with this machine's python3. Then the
# installed earshot must start: --version, check the example config, migrate a scratch SQLite
# (the revisions must be in the wheel), and answer `healthcheck` with "unhealthy" (exit 1).
#
# A broken install step (a file not copied, a missing dependency or package-data entry)
# fails here, as it would fail `docker build`.
set -euo pipefail
cd "$(dirname "$0")/.."

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

python3 - "$root" <<'PY'
"""Run the build stage of ./Dockerfile under ROOT."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

root = Path(sys.argv[1])
text = Path("Dockerfile").read_text()
# Instructions, with line continuations joined and comments dropped.
lines = re.sub(r"\\\n", " ", "\n".join(
    line for line in text.splitlines() if not line.lstrip().startswith("#")
)).splitlines()
instructions = [line.strip() for line in lines if line.strip()]

stage = []
for instruction in instructions:
    keyword = instruction.split()[0].upper()
    if keyword == "FROM":
        if stage:
            break  # only the first (build) stage
        image = instruction.split()[1]
        wanted = re.search(r"python:(\d+\.\d+)", image)
        have = f"{sys.version_info.major}.{sys.version_info.minor}"
        if wanted and wanted.group(1) != have:
            sys.exit(f"the Dockerfile builds on Python {wanted.group(1)}, this is {have}")
        stage.append(instruction)
        continue
    stage.append(instruction)

env = dict(os.environ)
env.pop("VIRTUAL_ENV", None)
workdir = root
mapped = {}  # image path prefix -> path under root


def host(path: str) -> Path:
    """An image path as a path under ROOT (relative paths are relative to WORKDIR)."""
    if path.startswith("/"):
        return root / path.lstrip("/")
    return workdir / path


def rewrite(command: str) -> str:
    """The RUN command with the image's absolute paths under ROOT."""
    def swap(match: re.Match[str]) -> str:
        return str(host(match.group(0)))

    return re.sub(r"(?<![\w.])/(?:opt|src|usr/local/earshot)\b[^\s;&|]*", swap, command)


ran = 0
for instruction in stage[1:]:
    keyword, _, rest = instruction.partition(" ")
    keyword = keyword.upper()
    if keyword == "ENV":
        for pair in shlex.split(rest):
            name, _, value = pair.partition("=")
            env[name] = value
    elif keyword == "WORKDIR":
        workdir = host(rest.strip())
        workdir.mkdir(parents=True, exist_ok=True)
    elif keyword == "COPY":
        if rest.startswith("--"):
            sys.exit(f"unsupported COPY flags in the build stage: {instruction}")
        *sources, target = shlex.split(rest)
        destination = host(target)
        for source in sources:
            src = Path(source)
            if not src.exists():
                sys.exit(f"COPY {source}: no such file in the build context")
            if src.is_dir():
                shutil.copytree(
                    src, destination, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
                )
            else:
                if target.endswith("/"):
                    destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, destination / src.name if destination.is_dir() else destination)
        print(f"COPY {rest}", flush=True)
    elif keyword == "RUN":
        command = rewrite(rest)
        command = re.sub(r"(^|&&\s*)python\b", rf"\g<1>{shlex.quote(sys.executable)}", command)
        print(f"RUN {command}", flush=True)
        subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=workdir, env=env,
                       check=True)
        ran += 1
    elif keyword in ("ARG", "LABEL", "USER", "EXPOSE", "SHELL"):
        sys.exit(f"{keyword} in the build stage: teach scripts/check-docker-install.sh about it")
if not ran:
    sys.exit("no RUN step found in the Dockerfile's build stage")
PY

venv="$root/opt/earshot"
"$venv/bin/earshot" --version
"$venv/bin/earshot" check --config config/earshot.example.toml >/dev/null
# the example ships in the wheel: `earshot init` writes it without a clone
"$venv/bin/earshot" init - | cmp - config/earshot.example.toml
# no config: every command says how to make one, and run never polls with the example
if "$venv/bin/earshot" run --once --config "$root/none.toml" 2>"$root/err"; then
    echo "earshot run started without a config" >&2
    exit 1
fi
grep -q "earshot init" "$root/err"
"$venv/bin/earshot" init "$root/example.toml" >/dev/null
if "$venv/bin/earshot" run --once --config "$root/example.toml" 2>"$root/err"; then
    echo "earshot run polled with the unchanged example config" >&2
    exit 1
fi
grep -q "example config unchanged" "$root/err"
DATABASE_URL="sqlite:///$root/check.db" "$venv/bin/earshot" db upgrade --config "$root/none.toml"
DATABASE_URL="sqlite:///$root/check.db" "$venv/bin/earshot" db current --config "$root/none.toml" \
    | grep -q "up to date"
if "$venv/bin/earshot" healthcheck --url http://127.0.0.1:9/healthz --timeout 1 2>/dev/null; then
    echo "healthcheck answered healthy with nothing running" >&2
    exit 1
fi
echo "docker install steps: OK"
