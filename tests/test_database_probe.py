"""The database probe: a short connect, the schema revision, one line when unreachable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from earshot.config.database import DatabaseUnreachable, probe
from earshot.listener.store import Store


def _closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_postgres_is_one_line_naming_host_port_and_database() -> None:
    port = _closed_port()
    url = f"postgresql://earshot:hunter2pw@127.0.0.1:{port}/earshot"
    with pytest.raises(DatabaseUnreachable) as info:
        probe(url, timeout=2)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"database unreachable: host 127.0.0.1, port {port}, database earshot")
    assert "hunter2pw" not in line and "earshot:***@" in line
    assert line.endswith("Connection refused")


def test_a_missing_sqlite_directory_is_unreachable_and_a_missing_file_is_not(
    tmp_path: Path,
) -> None:
    with pytest.raises(DatabaseUnreachable, match=r"directory .*nope does not exist"):
        probe(f"sqlite:///{tmp_path / 'nope' / 'earshot.db'}")
    assert probe(f"sqlite:///{tmp_path / 'earshot.db'}") is None
    assert not (tmp_path / "earshot.db").exists()  # the probe creates nothing


def test_the_probe_reads_the_schema_revision(empty_url: str) -> None:
    state = probe(empty_url)
    assert state is None or state.current is None
    store = Store.from_url(empty_url)
    from earshot.config.migrations import ensure_schema

    ensure_schema(store.engine)
    store.engine.dispose()
    state = probe(empty_url)
    assert state is not None and state.up_to_date and state.current == state.head
