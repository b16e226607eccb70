"""RSS/Atom feeds, on the real Google Alerts feed, faked at the HTTP layer with respx."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from earshot.listener.sources.base import BadPayloadError, FatalError, SourceHttp
from earshot.listener.sources.rss import RssSource, unwrap_link

FEED = "https://www.google.com/alerts/feeds/04175468913983673025/4428013283581841004"
OTHER = "https://blog.test/feed.xml"
ALERT = (Path(__file__).parent / "fixtures/real/google_alerts/google_alert_slack.xml").read_bytes()
ATOM = {"content-type": "application/atom+xml; charset=utf-8"}
#: The feed's newest entry, 2019-07-10T11:53:37Z.
NEWEST = datetime(2019, 7, 10, 11, 53, 37, tzinfo=UTC).timestamp()


def rss(feeds: list[str] | None = None, **kwargs: Any) -> RssSource:
    kwargs.setdefault("backfill_seconds", 10**10)
    return RssSource(SourceHttp(httpx.Client()), feeds=feeds or [FEED], clock=lambda: NOW, **kwargs)


NOW = NEWEST + 3600


def test_unwraps_google_redirect_links_only() -> None:
    link = "https://www.google.com/url?rct=j&sa=t&url=https://example.com/a?b%3D1&ct=ga&usg=X"
    assert unwrap_link(link) == "https://example.com/a?b=1"
    assert unwrap_link("https://example.com/url?url=https://evil.test/") == (
        "https://example.com/url?url=https://evil.test/"
    )
    assert unwrap_link("https://www.google.com/url?url=javascript:alert(1)").startswith(
        "https://www.google.com/"
    )


@respx.mock
def test_parses_the_google_alerts_feed() -> None:
    route = respx.get(FEED).respond(content=ALERT, headers=ATOM)
    result = rss().poll(None, ["slack"])
    assert result.errors == [] and result.skipped == 0 and result.units == 1
    assert len(result.mentions) == 20
    first = result.mentions[0]
    assert first.source == "rss"
    assert first.external_id == "tag:google.com,2013:googlealerts/feed:8974135267215335962"
    assert first.url.startswith("https://www.aglobalmarketresearch.com/report-offers-prediction")
    assert first.site == "www.aglobalmarketresearch.com"
    assert first.title.startswith("Report offers Prediction of Automotive Slack Market by Top")
    assert first.text.startswith("Automotive Slack Market reports provides a comprehensive")
    assert first.created_at == datetime(2019, 7, 10, 11, 53, 37, tzinfo=UTC)
    for m in result.mentions:
        assert "<b>" not in m.title and "&lt;" not in m.title and "<b>" not in m.text
        assert "google.com/url" not in m.url
    by_id = {m.external_id: m for m in result.mentions}
    investor = by_id["tag:google.com,2013:googlealerts/feed:13685523368333461374"]
    assert investor.url == "https://investorplace.com/2019/07/slack-stock-truly-compelling/"
    assert "Company's decision" in investor.text  # &amp;#39; decoded
    request = route.calls[0].request
    assert "application/atom+xml" in request.headers["accept"]
    assert "if-none-match" not in request.headers
    assert result.cursor["feeds"][FEED]["newest"] == NEWEST


@respx.mock
def test_conditional_get_and_304_changes_nothing() -> None:
    headers = {**ATOM, "ETag": '"v1"', "Last-Modified": "Wed, 10 Jul 2019 11:53:37 GMT"}
    route = respx.get(FEED).respond(content=ALERT, headers=headers)
    source = rss()
    first = source.poll(None, [])
    assert first.cursor["feeds"][FEED]["etag"] == '"v1"'
    route.respond(304)
    second = source.poll(first.cursor, [])
    sent = route.calls[1].request.headers
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == "Wed, 10 Jul 2019 11:53:37 GMT"
    assert second.errors == [] and second.mentions == [] and second.cursor == first.cursor


@respx.mock
def test_refetch_returns_only_the_new_entry() -> None:
    route = respx.get(FEED).respond(content=ALERT, headers=ATOM)
    source = rss()
    first = source.poll(None, [])
    # The feed a little later: one new entry at the top, the oldest one gone.
    text = ALERT.decode()
    head, rest = text.split("<entry>", 1)
    new_entry = (
        "<entry> <id>tag:google.com,2013:googlealerts/feed:1</id>"
        '<title type="html">&lt;b&gt;Slack&lt;/b&gt; outage</title>'
        '<link href="https://www.google.com/url?rct=j&amp;sa=t&amp;url=https://news.test/slack-'
        'outage&amp;ct=ga"></link><published>2019-07-10T12:30:00Z</published>'
        "<updated>2019-07-10T12:30:00Z</updated>"
        '<content type="html">&lt;b&gt;Slack&lt;/b&gt; is down</content></entry>'
    )
    later = head + new_entry + "<entry>" + rest.rsplit("<entry>", 1)[0] + "</feed>"
    route.respond(content=later.encode(), headers=ATOM)
    second = source.poll(first.cursor, [])
    assert [(m.external_id, m.url, m.title) for m in second.mentions] == [
        (
            "tag:google.com,2013:googlealerts/feed:1",
            "https://news.test/slack-outage",
            "Slack outage",
        )
    ]
    state = second.cursor["feeds"][FEED]
    assert state["newest"] == datetime(2019, 7, 10, 12, 30, tzinfo=UTC).timestamp()
    # The entry that dropped out of the feed stays known, in case it comes back.
    assert len(state["seen"]) == 21
    assert state["seen"][-1] == first.cursor["feeds"][FEED]["seen"][-1]


@respx.mock
def test_first_poll_reads_the_backfill_window_only() -> None:
    respx.get(FEED).respond(content=ALERT, headers=ATOM)
    result = rss(backfill_seconds=3600 + 30 * 60).poll(None, [])  # back to 11:23:37
    assert [m.created_at.strftime("%H:%M") for m in result.mentions] == [
        "11:53",
        "11:46",
        "11:36",
        "11:26",
    ]


RSS2 = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Blog</title><link>https://blog.test/</link>
<item><title>Acme &amp; us</title><link>https://blog.test/acme</link>
<description>&lt;p&gt;We love &lt;i&gt;Acme&lt;/i&gt;&lt;/p&gt;</description>
<author>ann@blog.test (Ann)</author></item>
<item><title>no link, no guid</title><description>lost</description></item>
</channel></rss>"""


@respx.mock
def test_rss2_without_guid_or_date_uses_the_link_and_skips_what_has_neither() -> None:
    respx.get(OTHER).respond(content=RSS2, headers={"content-type": "application/rss+xml"})
    result = rss([OTHER]).poll(None, [])
    assert [(m.external_id, m.site, m.title, m.text) for m in result.mentions] == [
        ("https://blog.test/acme", "blog.test", "Acme & us", "We love Acme")
    ]
    assert result.skipped == 1
    # Undated entries are stamped with the fetch time.
    assert result.mentions[0].created_at.timestamp() == NOW


@respx.mock
def test_each_feed_is_a_unit_and_a_broken_one_fails_alone() -> None:
    respx.get(FEED).respond(content=ALERT, headers=ATOM)
    respx.get(OTHER).respond(200, text="<html><body>Moved</body></html>")
    respx.get("https://gone.test/feed").respond(404, text="nope")
    result = rss([OTHER, "https://gone.test/feed", FEED]).poll(None, [])
    assert result.units == 3 and len(result.mentions) == 20
    assert [type(e) for e in result.errors] == [BadPayloadError, FatalError]
    assert list(result.cursor["feeds"]) == [FEED]


def test_feeds_must_be_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        rss(["blog.test/feed"])
