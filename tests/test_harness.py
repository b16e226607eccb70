"""The rules the suite runs under (tests/conftest.py) and the CLI's logging under a test
runner: no wall-clock limit in a property test, no log handler that outlives its stream."""

from __future__ import annotations

import io
import logging
import sys
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earshot.config.logs import setup_logging

from . import conftest, test_hostile


def test_the_property_test_that_missed_its_deadline_under_load_has_none() -> None:
    test = test_hostile.test_any_json_answer_is_parsed_or_rejected_cleanly
    used = test._hypothesis_internal_use_settings
    assert used.deadline is None
    assert used.derandomize
    assert conftest.clock_limits(SimpleNamespace(obj=test)) == []  # type: ignore[arg-type]


def test_a_property_test_with_a_deadline_is_refused_at_collection() -> None:
    @settings(deadline=200)
    @given(st.integers())
    def timed(n: int) -> None:
        pass

    @settings(suppress_health_check=[HealthCheck.filter_too_much])
    @given(st.integers())
    def checked_for_speed(n: int) -> None:
        pass

    items = [
        SimpleNamespace(obj=timed, nodeid="tests/x.py::timed"),
        SimpleNamespace(obj=checked_for_speed, nodeid="tests/x.py::checked_for_speed"),
        SimpleNamespace(obj=lambda: None, nodeid="tests/x.py::plain"),
    ]
    with pytest.raises(pytest.UsageError) as refused:
        conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    message = str(refused.value)
    assert "tests/x.py::timed: deadline=0:00:00.200000" in message
    assert "tests/x.py::checked_for_speed: the too_slow health check" in message
    assert "plain" not in message


def test_cli_logging_writes_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner swaps sys.stderr per test and closes the old one: the handler setup_logging
    installed must not keep writing to the closed stream."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging(level="INFO", fmt="text")
    logging.getLogger("earshot.test").info("into the first")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("earshot.test").warning("into the second")
    written = second.getvalue()
    assert "Logging error" not in written and "closed file" not in written, written
    assert "into the second" in written


def test_logging_is_restored_after_the_cli_set_it_up() -> None:
    """What the autouse fixture does around every test: the handlers and levels that
    ``setup_logging`` changed are put back."""
    root = logging.getLogger()
    before = (root.handlers[:], root.level, logging.getLogger("httpx").level)
    with conftest.logging_restored():
        setup_logging(level="ERROR", fmt="json")
        assert root.level == logging.ERROR and logging.getLogger("httpx").level == logging.ERROR
        assert root.handlers != before[0]
    assert (root.handlers, root.level, logging.getLogger("httpx").level) == before
