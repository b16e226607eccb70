"""Hostile input: malformed payloads, huge or broken text, secrets near logs."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earshot.config.logs import JsonFormatter, RedactSecrets, secret_values
from earshot.listener.pipeline import MAX_TEXT, clean
from earshot.listener.sources import (
    AppStoreSource,
    HackerNewsSource,
    RedditSource,
    SourceError,
    SourceHttp,
)

from .conftest import load_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def sources() -> list[Any]:
    http = SourceHttp(httpx.Client())
    return [
        HackerNewsSource(http, base_url="https://hn.test"),
        RedditSource(http, base_url="https://reddit.test", subreddits=["a"], listings=["new"]),
        AppStoreSource(http, base_url="https://apple.test", app_id="1"),
    ]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=json_values)
def test_any_json_answer_is_parsed_or_rejected_cleanly(body: Any) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.route().respond(200, json=body)
        for source in sources():
            result = source.poll(None, ["acme"])  # must not raise
            for error in result.errors:
                assert isinstance(error, SourceError)
            for mention in result.mentions:
                assert mention.external_id


@settings(max_examples=150, deadline=None)  # no wall-clock deadlines (house rule)
@given(
    hit=st.dictionaries(
        st.sampled_from(
            ["objectID", "created_at_i", "comment_text", "title", "author", "_tags", "story_text"]
        ),
        json_values,
    )
)
def test_malformed_hits_are_skipped_not_fatal(hit: dict[str, Any]) -> None:
    source = sources()[0]
    with respx.mock(assert_all_called=False) as router:
        router.route().respond(200, json={"hits": [hit], "nbPages": 1, "nbHits": 1})
        result = source.poll(None, ["acme"])
    assert len(result.mentions) + result.skipped == 1 or result.errors


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeply nested JSON
        b'{"hits": [{"objectID": "\xff\xfe invalid utf-8"}]}',
        b"\x00\x01\x02 binary junk",
        b"",
    ],
    ids=["nested", "invalid-utf8", "binary", "empty"],
)
def test_pathological_bodies_are_bad_payloads(content: bytes) -> None:
    source = sources()[0]
    with respx.mock(assert_all_called=False) as router:
        router.route().respond(200, content=content)
        result = source.poll({"terms": {"acme": 1}}, ["acme"])
    assert len(result.errors) == 1 and result.errors[0].retriable
    assert result.cursor == {"terms": {"acme": 1}}


def test_clean_strips_nul_zero_width_and_surrogates_and_caps_size() -> None:
    text = "ac\u200bme\x00 ok \ud800 end" + "x" * (MAX_TEXT + 10)
    cleaned = clean(text, MAX_TEXT)
    assert "\x00" not in cleaned and "\u200b" not in cleaned
    cleaned.encode("utf-8")  # no lone surrogates left
    assert cleaned.startswith("acme ok ") and len(cleaned) == MAX_TEXT


def test_a_1mb_mention_is_stored_cut_and_still_alerted(tmp_path: Any) -> None:
    from earshot.config.settings import Secrets, parse_settings
    from earshot.config.wiring import build
    from earshot.responders.console import ConsoleChannel

    hit = dict(load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"][0])
    hit["story_text"] = "acme crashes, terrible, awful, I want a refund. " * 25_000  # ~1.2 MB
    settings_ = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["acme"]},
            "sources": [
                {"type": "hackernews", "base_url": "https://hn.test", "backfill": "10000d"}
            ],
        }
    )
    out = io.StringIO()
    app = build(
        settings_, Secrets(), channel=ConsoleChannel(out), database=f"sqlite:///{tmp_path / 'e.db'}"
    )
    with respx.mock(assert_all_called=False) as router:
        router.route().respond(200, json={"hits": [hit], "nbPages": 1, "nbHits": 1})
        (report,) = app.pipeline.poll_all(app.sources, force=True)
    app.worker.drain(timeout=5)
    app.close()
    assert report.stored == 1 and report.labels["negative"] == 1
    assert "→ #cx-alerts" in out.getvalue()
    assert len(out.getvalue()) < 20_000  # the console alert is an excerpt, not the megabyte


def test_secret_values_are_redacted_from_log_records() -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-111-222-supersecret",
        "DATABASE_URL": "postgresql://earshot:pg-pass-123@db/earshot",
        "HOME": "/root",
    }
    secrets = secret_values(env)
    assert (
        "xoxb-111-222-supersecret" in secrets
        and "pg-pass-123" in secrets
        and "/root" not in secrets
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(secrets))
    log = logging.getLogger("earshot.test.redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error("slack said invalid_auth for token %s", "xoxb-111-222-supersecret")
        try:
            raise RuntimeError("connect failed: postgresql://earshot:pg-pass-123@db/earshot")
        except RuntimeError:
            log.exception("database down")
    finally:
        log.removeHandler(handler)
    output = stream.getvalue()
    assert "supersecret" not in output and "pg-pass-123" not in output
    assert output.count("***") >= 2
    for line in output.splitlines():
        json.loads(line)
