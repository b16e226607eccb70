"""`earshot report --html FILE`: one self-contained page, checked in the real headless
Chromium (tests/browser.py): its sections and figures in the DOM the browser built, charts
laid out with a non-zero size, a screenshot with the page's colours in it, no network
request, and hostile mention text shown as text.

Without Chromium the browser tests are skipped, unless ``CI_REQUIRE_BROWSER=1`` (CI),
where they fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import bindparam, update
from sqlmodel import Session, SQLModel, select
from typer.testing import CliRunner

from earshot.config.cli import app
from earshot.listener.digest import DayCount, Digest, Item
from earshot.listener.insight import Quote, StorySummary, Theme, Voice
from earshot.listener.models import Delivery, Mention, Reply, utcnow
from earshot.listener.routing import Router
from earshot.listener.store import Store
from earshot.responders.report_html import COLORS, MEASURE_SCRIPT, render_report_html

from .browser import Opened, chromium, open_page
from .synthweek import store_all, week

ALERTS, WINS = "#cx-alerts", "#cx-wins"
SECTIONS = (
    "headline",
    "days",
    "sentiment",
    "sources",
    "top-negative",
    "top-positive",
    "unhandled",
    "response-times",
    "replies",
)

#: Mention titles that try to break out of the page, with what must not come of them.
HOSTILE = {
    "script": "<script>document.title='pwned'</script> checkout broke",
    "img": '"><img src=x onerror="document.title=1"> checkout is down',
    "rtl": "refund \u202egnp.exe\u202c please, checkout",
    "link": '<a href="https://evil.test/">click</a> love the checkout',
    "long": "checkout" + "A" * 4000,
}


def cli_sections(sections: list[str]) -> list[str]:
    """The sections every report has, in order, after checking that the others are the
    insight sections (stories, themes, share of voice) in their place: after the counts,
    before the top lists."""
    insights = [s for s in sections if s in ("stories", "themes", "voices")]
    where = [sections.index(s) for s in insights]
    assert where == sorted(where) and all(
        sections.index("sources") < i < sections.index("top-negative") for i in where
    ), sections
    return [s for s in sections if s not in insights]


def needs_browser() -> str:
    """The Chromium executable; skip (or fail under CI_REQUIRE_BROWSER=1) without."""
    exe = chromium()
    if exe is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CI_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return exe


# -- Reading HTML back --------------------------------------------------------------------


class Parsed(HTMLParser):
    """Every start tag with its attributes, the scripts' text and the other text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)

    def attr(self, tag: str, name: str) -> list[str]:
        return [a[name] or "" for t, a in self.tags if t == tag and name in a]


def parse(page: str) -> Parsed:
    parsed = Parsed()
    parsed.feed(page)
    parsed.close()
    return parsed


def outside_references(parsed: Parsed) -> list[str]:
    """What in the page could make a browser fetch something: any ``src``, ``srcset``,
    ``data``, ``poster``, ``action``, ``xlink:href``/``href`` outside an ``<a>``, ``url(``
    in a style, and any ``<link>``, ``<iframe>``, ``<object>``, ``<embed>`` or
    ``<base>``."""
    found = []
    for tag, attrs in parsed.tags:
        if tag in ("link", "iframe", "object", "embed", "base", "img", "video", "audio"):
            found.append(f"<{tag}>")
        for name, value in attrs.items():
            if name in ("src", "srcset", "data", "poster", "action", "background"):
                found.append(f"{tag} {name}={value}")
            if name in ("href", "xlink:href") and tag != "a":
                found.append(f"{tag} {name}={value}")
            if name == "style" and "url(" in (value or ""):
                found.append(f"{tag} style={value}")
    return found


def figure(page: str, key: str) -> str:
    match = re.search(rf'data-figure="{key}"><span class="n">([^<]*)</span>', page)
    assert match, f"figure {key} missing"
    return match.group(1)


# -- The store ----------------------------------------------------------------------------


def hostile_mentions(now: datetime) -> list[Mention]:
    out = []
    for n, (key, title) in enumerate(HOSTILE.items()):
        positive = key in ("link", "long")
        out.append(
            Mention(
                source="reddit",
                external_id=f"hostile-{key}",
                url={
                    "script": 'https://example.test/a?x=1&y="2"<b>',
                    "img": "javascript:alert(1)",
                    "rtl": "https://example.test/rtl",
                    "link": "https://example.test/link",
                    "long": "data:text/html,<script>alert(1)</script>",
                }[key],
                author=f"hostile{n}",
                title=title,
                text=title,
                created_at=now - timedelta(hours=2 + n),
                fetched_at=now - timedelta(hours=2 + n),
                matched_query="checkout",
                sentiment_label="positive" if positive else "negative",
                sentiment_score=1.0 if positive else -1.0,
                raw={},
                sentiment_reasons=[],
                intents=[],
            )
        )
    return out


@dataclass(frozen=True)
class Loaded:
    config: Path
    url: str
    now: datetime
    recent: int


def load(url: str, tmp_path: Path) -> Loaded:
    """Two weeks (scaled down) up to now, hostile titles, alerts sent and some handled,
    two replies; a config whose alerts channel is #cx-alerts."""
    store = Store.from_url(url)
    store.create_schema()
    now = utcnow()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=14)
    mentions = [m for m in week(days=14, start=start, scale=0.25) if m.created_at < now]
    mentions += hostile_mentions(now)
    store_all(store, mentions, Router(ALERTS, WINS).routes)
    outbox = SQLModel.metadata.tables["outbox"]
    table = SQLModel.metadata.tables["mentions"]
    with Session(store.engine) as session:
        pairs = session.exec(
            select(Delivery.id, Mention.id, Mention.created_at, Delivery.channel)
            .join(Mention, Mention.id == Delivery.mention_id)
            .order_by(Delivery.id)
        ).all()
        session.execute(
            update(outbox)
            .where(outbox.c.id == bindparam("row"))
            .values(status="sent", sent_at=bindparam("sent")),
            [
                {"row": d, "sent": c.replace(tzinfo=UTC) + timedelta(minutes=5)}
                for d, _, c, _ in pairs
            ],
        )
        recent = [
            p
            for p in pairs
            if p[3] == ALERTS and p[2].replace(tzinfo=UTC) > now - timedelta(days=6)
        ]
        session.execute(
            update(table)
            .where(table.c.id == bindparam("row"))
            .values(status="handled", resolved_at=bindparam("resolved")),
            [
                {"row": m, "resolved": c.replace(tzinfo=UTC) + timedelta(minutes=5 + 10 * i)}
                for i, (_, m, c, _) in enumerate(recent[:8])
            ],
        )
        for i, (_, mention_id, created, _) in enumerate(recent[8:10]):
            session.add(
                Reply(
                    key=f"reply-{i}",
                    mention_id=mention_id,
                    platform="reddit",
                    text="Sorry about that, fixed now",
                    status="sent" if i == 0 else "manual",
                    author_id="U0LEAD",
                    author_name="<b>Bo</b> the lead",
                    remote_url="https://example.test/reply/1" if i == 0 else None,
                    sent_at=created.replace(tzinfo=UTC) + timedelta(hours=1),
                )
            )
        session.commit()
    store.engine.dispose()
    config = tmp_path / "earshot.toml"
    config.write_text(
        '[product]\nname = "Acme <Inc>"\n'
        'queries = ["checkout", { q = \'"acme app"\', tag = "competitor" }]\n'
        '[[sources]]\ntype = "reddit"\nsubreddits = ["acme"]\n'
    )
    count = sum(1 for m in mentions if m.created_at >= now - timedelta(days=7))
    return Loaded(config, url, now, count)


def run_report(loaded: Loaded, page: Path) -> str:
    result = CliRunner().invoke(
        app,
        ["report", "--config", str(loaded.config), "--html", str(page)],
        env={"COLUMNS": "200", "DATABASE_URL": loaded.url},
    )
    assert result.exit_code == 0, result.output
    assert f"report page written to {page}" in result.output
    assert "By sentiment" in result.output  # the terminal report is still printed
    return result.output


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loaded, str, Opened]]:
    """The report of the SQLite store, written by the CLI and opened in Chromium once."""
    needs_browser()
    tmp = tmp_path_factory.mktemp("report")
    loaded = load(f"sqlite:///{tmp / 'earshot.db'}", tmp)
    page = tmp / "report.html"
    run_report(loaded, page)
    yield loaded, page.read_text("utf-8"), open_page(page, tmp / "chromium")


# -- In the browser -----------------------------------------------------------------------


def test_the_browser_lays_out_every_section_and_chart(
    rendered: tuple[Loaded, str, Opened],
) -> None:
    loaded, _page, opened = rendered
    dom = parse(opened.dom)
    sections = dom.attr("section", "data-section")
    assert cli_sections(sections) == list(SECTIONS)
    assert "voices" in sections  # a tagged query: share of voice
    assert figure(opened.dom, "mentions") == str(loaded.recent)
    assert figure(opened.dom, "replies") == "2"
    body = re.search(r"<body ([^>]*)>", opened.dom)
    assert body, opened.dom[:500]
    # The page's script ran after layout: every chart has a real rendered size.
    sizes = dict(re.findall(r"(chart-[\w-]+):(\d+x\d+)", body.group(1)))
    charts = {"chart-days", "chart-sentiment", "chart-sources", "chart-voices"}
    if "themes" in sections:
        charts.add("chart-themes")
    assert set(sizes) == charts, body.group(1)
    for chart, size in sizes.items():
        width, height = (int(n) for n in size.split("x"))
        assert width > 200 and height > 40, (chart, size)
    # Long words wrap: nothing is wider than the window.
    width = re.search(r'data-width="(\d+)"', body.group(1))
    assert width and int(width.group(1)) <= 1200, body.group(1)
    text = dom.all_text
    assert "Response times (alert to Handled)" in text and "median" in text
    assert "Replies to customers (2)" in text and "said they replied" in text
    assert "Alerts still unhandled in #cx-alerts" in text and "biggest reach first" in text


def test_the_screenshot_shows_the_charts_colours(rendered: tuple[Loaded, str, Opened]) -> None:
    from PIL import Image

    _loaded, _page, opened = rendered
    with Image.open(opened.png) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (1200, 2400)
        colours = rgb.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, cards, bars: not a blank page
    present = {c for _n, c in colours}
    for label in ("negative", "neutral", "positive"):
        hex_ = COLORS[label].lstrip("#")
        wanted = tuple(int(hex_[i : i + 2], 16) for i in (0, 2, 4))
        assert wanted in present, f"no {label} bar pixel ({COLORS[label]}) in the screenshot"


def test_the_page_asks_for_nothing_over_the_network(
    rendered: tuple[Loaded, str, Opened],
) -> None:
    _loaded, page, opened = rendered
    assert opened.page_requests() == []
    parsed = parse(page)
    assert outside_references(parsed) == []
    for href in parsed.attr("a", "href"):
        assert href.startswith(("https://", "http://")), href
    csp = [
        a.get("content") for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp and "default-src 'none'" in (csp[0] or "")


def test_the_network_check_sees_a_page_that_loads_something(tmp_path: Path) -> None:
    """The check above can fail: a page with an outside image (and no CSP) is caught."""
    needs_browser()
    page = tmp_path / "leaky.html"
    page.write_text(
        '<!DOCTYPE html><html><body><p>hi</p><img src="http://earshot-leak.test/x.png">'
        "</body></html>"
    )
    opened = open_page(page, tmp_path / "chromium", height=300)
    assert opened.page_requests() == ["http://earshot-leak.test/x.png"]


def test_hostile_mention_text_stays_text_in_the_browser(
    rendered: tuple[Loaded, str, Opened],
) -> None:
    _loaded, page, opened = rendered
    for html_ in (page, opened.dom):
        parsed = parse(html_)
        assert parsed.scripts == [MEASURE_SCRIPT]
        assert not [t for t, _ in parsed.tags if t in ("img", "b")]
        assert not [(t, n) for t, attrs in parsed.tags for n in attrs if n.startswith("on")]
        hrefs = parsed.attr("a", "href")
        assert "https://evil.test/" not in hrefs
        assert not [h for h in hrefs if not h.startswith(("https://", "http://"))]
        text = parsed.all_text
        assert "<script>document.title='pwned'</script> checkout broke" in text
        assert '"><img src=x onerror="document.title=1"> checkout is down' in text
        assert "\u202e" not in html_ and "refund gnp.exe please" in text
        assert "Acme <Inc>" in text
    # The title the browser shows is ours: no script of a mention ran.
    assert "<title>Weekly report · Acme &lt;Inc&gt;</title>" in opened.dom
    assert "https://example.test/a?x=1&amp;y=%222%22%3Cb%3E" in page


# -- Without a browser --------------------------------------------------------------------


def test_the_cli_writes_the_page_on_sqlite_and_postgres(database_url: str, tmp_path: Path) -> None:
    loaded = load(database_url, tmp_path)
    page = tmp_path / "week.html"
    run_report(loaded, page)
    parsed = parse(page.read_text("utf-8"))
    sections = parsed.attr("section", "data-section")
    assert cli_sections(sections) == list(SECTIONS) and "voices" in sections
    assert f"{loaded.recent}mentions" in parsed.all_text.replace(" ", "")


@pytest.mark.parametrize("option", ["--html", "--chart"])
@pytest.mark.parametrize("where", ["missing-dir/report.html", ".", "sub"])
def test_a_page_that_cannot_be_written_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, option: str
) -> None:
    """The page or the chart PNG: one line on stderr, exit 1, nothing left behind."""
    loaded = load(f"sqlite:///{tmp_path / 'earshot.db'}", tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(
        app,
        ["report", "--config", str(loaded.config), option, where],
        env={"COLUMNS": "200", "DATABASE_URL": loaded.url},
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"earshot report: cannot write {where}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial file left


def test_an_empty_period_says_so_in_every_section() -> None:
    digest = Digest(
        kind="report",
        channel="all",
        start="2026-11-23T00:00:00+00:00",
        end="2026-11-30T00:00:00+00:00",
        timezone="Europe/Berlin",
        key="k",
        days=[DayCount(f"2026-11-{d}", {}) for d in range(23, 30)],
    )
    page = render_report_html(digest, since="7d")
    parsed = parse(page)
    assert parsed.attr("section", "data-section") == [s for s in SECTIONS if s != "unhandled"]
    text = parsed.all_text
    assert "no mentions in this period" in text
    assert "Top negative" in text and text.count("none this period") >= 3
    assert "+0 vs the 7 days before (none then)" in text


def test_items_keep_their_links_scores_and_ratings() -> None:
    item = Item(
        7,
        "appstore",
        "Crashes on login",
        "https://apps.example/r/7",
        "negative",
        -0.91,
        "2026-11-24T10:00:00+00:00",
        "acme",
        1,
        reach=312,
        reach_figures="312 helpful votes, <b>4</b> replies",
    )
    digest = Digest(
        kind="report",
        channel="all",
        start="2026-11-23T00:00:00+00:00",
        end="2026-11-30T00:00:00+00:00",
        timezone="UTC",
        key="k",
        total=1,
        by_source={"appstore": 1},
        by_sentiment={"negative": 1},
        top_negative=[item],
    )
    page = render_report_html(digest)
    assert '<a href="https://apps.example/r/7" rel="noopener noreferrer nofollow"' in page
    text = parse(page).all_text
    assert (
        "App Store · 1/5 stars · score \u22120.91 · Tue 24 Nov 10:00 · query acme · "
        "312 helpful votes, <b>4</b> replies" in text
    )
    assert "<b>" not in page


# -- Stories, themes and share of voice ---------------------------------------------------


def insight_digest() -> Digest:
    """A week with stories, themes and share of voice filled in (hostile text included)."""
    days = [
        DayCount(f"2026-11-{d}", {"negative": d - 20, "neutral": 5, "positive": 30 - d})
        for d in range(23, 30)
    ]
    return Digest(
        kind="report",
        channel="all",
        start="2026-11-23T00:00:00+00:00",
        end="2026-11-30T00:00:00+00:00",
        timezone="UTC",
        key="k",
        total=sum(d.total for d in days),
        previous_total=60,
        by_source={"reddit": 40, "hackernews": 26},
        by_sentiment={"negative": 42, "neutral": 35, "positive": 28},
        previous_by_sentiment={"negative": 20, "neutral": 30, "positive": 10},
        days=days,
        story_count=31,
        previous_story_count=25,
        stories=[
            StorySummary(
                1,
                "Checkout double-charges <script>alert(1)</script>",
                "https://news.example/item?id=1&x=2",
                9,
                "2026-11-24T08:00:00+00:00",
                {"hackernews": {"negative": 5, "neutral": 1}, "reddit": {"negative": 3}},
            ),
            StorySummary(2, "Dark mode shipped", "javascript:alert(2)", 4, "", {}),
        ],
        themes=[
            Theme(
                "double charge at checkout",
                14,
                4,
                {"negative": 12, "mixed": 2},
                [
                    Quote(
                        'charged twice "><img src=x onerror=alert(3)>',
                        "https://r.example/1",
                        "reddit",
                    ),
                    Quote("\u202etwice charged\u202c again", "https://hn.example/2", "hackernews"),
                ],
            ),
            Theme("<b>dark mode</b>", 6, 0, {"positive": 6}, []),
        ],
        voices=[
            Voice(
                "product",
                50,
                40,
                {"negative": 20, "positive": 30},
                {"negative": 10, "positive": 30},
            ),
            Voice("competitor", 16, 20, {"negative": 2, "neutral": 14}, {"neutral": 20}),
        ],
    )


@pytest.fixture(scope="module")
def insight_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Opened]:
    needs_browser()
    tmp = tmp_path_factory.mktemp("insight")
    page = tmp / "insight.html"
    page.write_text(render_report_html(insight_digest(), product="Acme"), encoding="utf-8")
    return page.read_text("utf-8"), open_page(page, tmp / "chromium")


def test_stories_themes_and_voices_render_in_the_browser(
    insight_page: tuple[str, Opened],
) -> None:
    page, opened = insight_page
    dom = parse(opened.dom)
    sections = dom.attr("section", "data-section")
    assert sections[:6] == ["headline", "days", "sentiment", "sources", "stories", "themes"]
    assert sections[6] == "voices"
    assert figure(opened.dom, "stories") == "31"
    body = re.search(r"<body ([^>]*)>", opened.dom)
    assert body
    sizes = {
        name: (int(w), int(h))
        for name, w, h in re.findall(r"(chart-[\w-]+):(\d+)x(\d+)", body.group(1))
    }
    assert {"chart-themes", "chart-voices"} <= set(sizes), body.group(1)
    assert all(w > 200 and h > 40 for w, h in sizes.values()), sizes
    text = dom.all_text
    assert "105 mentions grouped into 31 stories" in text
    assert "Checkout double-charges <script>alert(1)</script>" in text
    assert "double charge at checkout" in text and "14 mentions, +10 (+250%)" in text
    assert "<b>dark mode</b>" in text and "6 mentions, +6 (none before)" in text
    assert 'charged twice "><img src=x onerror=alert(3)>' in text
    assert "product" in text and "76%" in text and "competitor" in text and "24%" in text
    for html_ in (page, opened.dom):
        parsed = parse(html_)
        assert parsed.scripts == [MEASURE_SCRIPT]
        assert not [t for t, _ in parsed.tags if t in ("img", "b")]
        assert "\u202e" not in html_
        assert parsed.attr("a", "href").count("https://news.example/item?id=1&x=2") == 1
        assert not [h for h in parsed.attr("a", "href") if not h.startswith("https://")]
    assert opened.page_requests() == []


def test_empty_insights_leave_their_sections_out() -> None:
    digest = insight_digest()
    digest.stories, digest.themes, digest.voices, digest.story_count = [], [], [], 0
    sections = parse(render_report_html(digest)).attr("section", "data-section")
    assert not {"stories", "themes", "voices"} & set(sections)
    assert 'data-figure="stories"' not in render_report_html(digest)


def test_a_long_period_labels_every_few_days_only() -> None:
    from datetime import date

    from earshot.responders.report_html import days_chart

    first = date(2026, 9, 1)
    days = [
        DayCount((first + timedelta(days=n)).isoformat(), {"negative": n % 7, "positive": 3})
        for n in range(90)
    ]
    svg = days_chart(days)
    labels = re.findall(r">(\w{3} \d{2})</text>", svg)
    assert labels[:2] == ["Tue 01", "Tue 08"] and 7 <= len(labels) <= 14
    # one bar piece per day and label with mentions (no negative ones every 7th day)
    assert len(re.findall(r"<rect ", svg)) == 90 + sum(1 for n in range(90) if n % 7)
