"""The lock files (requirements/*.lock, made by scripts/lock.sh) agree with pyproject.toml:
every dependency and the build backend pinned within its range, with hashes, and the two
locks pin alike."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent
PYPROJECT = ROOT / "pyproject.toml"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
TEST_LOCK = ROOT / "requirements" / "test.lock"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:;\s*(.+?))?\s*\\?$")


def read_lock(text: str) -> dict[str, tuple[str, int]]:
    """``{name: (version, hash count)}`` for the pins that apply to this interpreter and
    platform (a universal lock pins some packages per Python version or platform)."""
    pins: dict[str, tuple[str, int]] = {}
    name = None
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            package, version, marker = match.groups()
            name = canonicalize_name(package) if not marker or Marker(marker).evaluate() else None
            if name is not None:
                pins[name] = (version, 0)
        elif name is not None and line.strip().startswith("--hash=sha256:"):
            pins[name] = (pins[name][0], pins[name][1] + 1)
    return pins


def lock_problems(pyproject: str, lock: str, extras: tuple[str, ...] = ()) -> list[str]:
    """What the lock misses of ``pyproject``'s dependencies (and those of ``extras``) and
    of its build backend."""
    data = tomllib.loads(pyproject)
    project = data["project"]
    wanted = [*data["build-system"]["requires"], *project["dependencies"]]
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    pins = read_lock(lock)
    problems = []
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(Version(pins[name][0]), prereleases=True):
            problems.append(f"{requirement.name}=={pins[name][0]} is outside {line!r}")
    problems += [f"{name}=={version} has no hash" for name, (version, n) in pins.items() if not n]
    return problems


def test_the_locks_pin_every_dependency_within_its_range_with_hashes() -> None:
    pyproject = PYPROJECT.read_text("utf-8")
    refresh = "; refresh the locks: bash scripts/lock.sh"
    assert lock_problems(pyproject, RUNTIME_LOCK.read_text("utf-8")) == [], refresh
    assert lock_problems(pyproject, TEST_LOCK.read_text("utf-8"), ("test",)) == [], refresh


def test_the_runtime_lock_pins_as_the_test_lock_does() -> None:
    runtime = read_lock(RUNTIME_LOCK.read_text("utf-8"))
    tested = read_lock(TEST_LOCK.read_text("utf-8"))
    assert "pytest" not in runtime and "pytest" in tested
    differ = {n: (v, tested.get(n, ("-", 0))[0]) for n, (v, _) in runtime.items()}
    assert {n: pair for n, pair in differ.items() if pair[0] != pair[1]} == {}


def test_a_stale_lock_is_caught() -> None:
    lock = 'httpx==0.28.1 ; python_full_version >= "3.0" \\\n    --hash=sha256:aa\n' + (
        "numpy==2.0.0 \\\n    --hash=sha256:bb\n    # via earshot\nrich==13.0.0\n"
    )
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=69"]\n'
        '[project]\ndependencies = ["httpx>=0.27,<1", "numpy>=2.1", "typer", "rich",'
        " \"pywin32; sys_platform == 'never'\"]\n"
        '[project.optional-dependencies]\ntest = ["pytest>=8"]\n'
    )
    assert lock_problems(pyproject, lock, ("test",)) == [
        "setuptools is not pinned",
        "numpy==2.0.0 is outside 'numpy>=2.1'",
        "typer is not pinned",
        "pytest is not pinned",
        "rich==13.0.0 has no hash",
    ]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    (command,) = [
        line
        for line in readme.splitlines()
        if line.startswith("python3 -m venv") and "pytest" in line
    ]
    assert "--require-hashes -r requirements/test.lock" in command
    assert command in ci.splitlines()


def test_ci_sets_no_earshot_variable_that_earshot_would_refuse() -> None:
    """earshot reads every ``EARSHOT_*`` variable as a setting and refuses unknown ones, so a
    CI-only switch named that way makes every CLI test fail in CI (and only there)."""
    import re

    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert not re.findall(r"^\s*(?:export\s+)?EARSHOT_\w+=", ci, flags=re.MULTILINE)
