"""The weekly report as one self-contained HTML page (``earshot report --html FILE``).

``render_report_html(digest, ...)`` returns a complete HTML document that marketing can open
or forward: the styles are inline, the charts are inline SVG drawn here in Python, and the
page loads nothing (no scripts from elsewhere, no fonts, no images). Its Content Security
Policy says so to the browser too: ``default-src 'none'``, inline styles, ``data:`` images,
and one inline script allowed by its hash (``MEASURE_SCRIPT``, which only records the
rendered size of each chart in ``<body data-rendered>``; the page reads the same without
it).

Mention text is untrusted. Every piece of it is cleaned like an alert's (control,
zero-width and bidi-override characters removed, ``earshot.responders.blocks.one_line``),
cut, and HTML-escaped (``&``, ``<``, ``>``, ``"`` and ``'``), and set in ``<bdi>`` so
right-to-left text cannot reorder the line around it. Links are written only for http(s)
URLs (``earshot.responders.digest.link_url``) and open with ``rel="noopener noreferrer"``.

Sections: the headline figures, mentions per day by sentiment (stacked bars), by
sentiment with the change from the period before, by source; stories, themes and share of
voice when the digest has them (``earshot.listener.insight``; left out when empty); top
negative and top positive mentions, the alerts still unhandled, response times, and the
replies made. Each section is a ``<section data-section="...">``.

Usage:

```python
page = render_report_html(digest, product="Acme", since="7d")
Path("week.html").write_text(page, encoding="utf-8")
```
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from earshot.listener.digest import DayCount, Digest, Item, ReplyItem, ResponseTimes

from .blocks import one_line, source_name, truncate
from .digest import duration_text, link_url

__all__ = [
    "COLORS",
    "CSP",
    "MEASURE_SCRIPT",
    "render_report_html",
]

#: Sentiment colours, as in the digest chart (``responders/digest.py``).
COLORS = {
    "negative": "#d64545",
    "mixed": "#f0a030",
    "unscored": "#b0b0b0",
    "neutral": "#8da0b6",
    "positive": "#3a9d5d",
}
#: Stacking order, bottom to top (complaints first, as in the digest chart).
ORDER = ("negative", "mixed", "unscored", "neutral", "positive")

#: The page's only script: the rendered size of each chart (``getBBox``) and the page's
#: height and width, written into ``<body>``'s data attributes (what the browser test reads back).
MEASURE_SCRIPT = (
    "(function(){var out=[];"
    'document.querySelectorAll("svg.chart").forEach(function(svg){'
    "var box=svg.getBBox();"
    'out.push(svg.id+":"+Math.round(box.width)+"x"+Math.round(box.height));});'
    'document.body.dataset.rendered=out.join(" ");'
    "document.body.dataset.height=String(document.documentElement.scrollHeight);"
    "document.body.dataset.width=String(document.documentElement.scrollWidth);})();"
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(MEASURE_SCRIPT.encode()).digest()).decode()

#: The Content Security Policy of the page: nothing may be loaded from anywhere.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)

_STYLE = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2330;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", Arial,
  sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 24px 40px; }
header h1 { margin: 0 0 2px; font-size: 26px; }
header p { margin: 0; color: #5a6273; }
section { background: #fff; border: 1px solid #e1e4ea; border-radius: 10px;
  padding: 16px 20px; margin-top: 18px; }
section h2 { margin: 0 0 10px; font-size: 17px; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr));
  gap: 12px; }
.figure { background: #f8f9fb; border: 1px solid #e6e8ee; border-radius: 8px;
  padding: 10px 14px; }
.figure .n { display: block; font-size: 28px; font-weight: 650; }
.figure .what { color: #5a6273; font-size: 13px; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.cols section { margin-top: 0; }
.row { margin-top: 18px; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, -apple-system, "Liberation Sans", Arial, sans-serif;
  fill: #3b4252; }
.legend { margin: 8px 0 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap;
  gap: 14px; font-size: 13px; color: #3b4252; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  margin-right: 6px; vertical-align: baseline; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eceef2;
  vertical-align: top; }
th { color: #5a6273; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
ol.items { margin: 0; padding-left: 20px; }
ol.items li { margin: 0 0 8px; }
.meta { color: #5a6273; font-size: 13px; }
a { color: #1f5fbf; }
bdi, td, li { overflow-wrap: anywhere; word-break: break-word; }
.none { color: #5a6273; margin: 0; }
.split { white-space: nowrap; margin-right: 4px; }
.themes { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr));
  gap: 12px; margin-top: 12px; }
.theme { background: #f8f9fb; border: 1px solid #e6e8ee; border-radius: 8px;
  padding: 10px 14px; }
.theme h3 { margin: 0 0 4px; font-size: 15px; }
.theme p { margin: 0 0 6px; }
ul.quotes { margin: 0; padding-left: 18px; font-size: 14px; }
ul.quotes li { margin-bottom: 4px; }
footer { margin-top: 18px; color: #7a8191; font-size: 12px; }
@media (max-width: 760px) { .cols { grid-template-columns: 1fr; } }
@media print { body { background: #fff; } section { break-inside: avoid; } }
"""


# -- Text and links -----------------------------------------------------------------------


def _text(value: Any, limit: int = 300) -> str:
    """Untrusted text as HTML: one cleaned line, cut to ``limit`` characters, escaped."""
    raw = "" if value is None else str(value)
    return html.escape(truncate(one_line(raw[: limit * 4]), limit), quote=True)


def _href(url: Any) -> str | None:
    """An http(s) URL made safe for an ``href`` attribute, or ``None`` if unusable."""
    usable = link_url(url)
    return html.escape(usable, quote=True) if usable else None


def _link(url: Any, label: str) -> str:
    """``label`` (already HTML) linked to ``url`` when it is a usable http(s) URL."""
    href = _href(url)
    if href is None:
        return label
    return f'<a href="{href}" rel="noopener noreferrer nofollow" target="_blank">{label}</a>'


def _dot(label: str) -> str:
    color = COLORS.get(label, COLORS["unscored"])
    return f'<span class="dot" style="background:{color}"></span>'


def _local(value: str, tz: str, fmt: str = "%a %d %b %Y") -> str:
    try:
        return datetime.fromisoformat(value).astimezone(ZoneInfo(tz)).strftime(fmt)
    except (ValueError, KeyError):
        return _text(value, 40)


_UNITS = {"d": "day", "h": "hour", "m": "minute", "s": "second", "w": "week"}


def _span(since: str) -> str:
    """``"7d"`` as ``"7 days"`` (anything else as given, escaped)."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhmsw])\s*", since or "")
    if not match:
        return _text(since, 20)
    n, unit = int(match[1]), _UNITS[match[2]]
    return f"{n} {unit}{'' if n == 1 else 's'}"


def _signed(n: int) -> str:
    return f"{n:+d}".replace("-", "\u2212")


def _change_text(now: int, before: int) -> str:
    if not before:
        return f"{_signed(now - before)} (none before)"
    return f"{_signed(now - before)} ({_signed(round(100.0 * (now - before) / before))}%)"


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}" data-section="{key}">\n<h2>{title}</h2>\n{body}\n</section>'


def _columns(*sections: str) -> str:
    return '<div class="cols row">' + "".join(sections) + "</div>"


def _none(text: str) -> str:
    return f'<p class="none">{text}</p>'


# -- Charts (inline SVG) ------------------------------------------------------------------


def _axis(value: int, ticks: int = 4) -> tuple[int, int]:
    """A round axis for counts up to ``value``: (step, maximum), at most ``ticks`` steps
    of 1, 2 or 5 times a power of ten."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step * ticks >= value:
                size = m * step
                return size, max(size, -(-value // size) * size)
        step *= 10


def _svg_open(key: str, width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" id="chart-{key}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="chart-{key}-title" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title id="chart-{key}-title">{title}</title>'
    )


def _day_label(day: str) -> str:
    try:
        return date.fromisoformat(day).strftime("%a %d")
    except ValueError:
        return _text(day, 12)


def days_chart(days: Sequence[DayCount], width: int = 1000, height: int = 300) -> str:
    """Mentions per day as stacked bars by sentiment, with a y axis and day labels."""
    left, right, top, bottom = 44, 12, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    step, peak = _axis(max((d.total for d in days), default=0))
    parts = [_svg_open("days", width, height, "Mentions per day by sentiment")]
    for value in range(0, peak + 1, step):
        y = top + plot_h - plot_h * value / peak
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="{"#9aa1ae" if value == 0 else "#e6e8ee"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    band = plot_w / max(1, len(days))
    bar = band * 0.68
    # Past two weeks a day's label and total would collide: label every few days only.
    every = max(1, -(-len(days) // 14))
    for index, day in enumerate(days):
        x = left + band * index + (band - bar) / 2
        y = top + plot_h
        for label in ORDER:
            n = day.counts.get(label, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLORS[label]}"><title>{_text(day.day, 12)} {label}: {n}</title></rect>'
            )
        if day.total and every == 1:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
                f"{day.total}</text>"
            )
        if index % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 18:.1f}" '
                f'text-anchor="middle">{_day_label(day.day)}</text>'
            )
    if not any(d.total for d in days):
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            'text-anchor="middle">no mentions in this period</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _hbars(
    key: str,
    title: str,
    rows: Sequence[tuple[str, Sequence[tuple[int, str, float]]]],
    width: int = 480,
    label_w: int = 130,
) -> str:
    """Horizontal bars: one row per (label HTML, [(value, colour, opacity), ...]), the
    pieces of a row drawn end to end, its total after them."""
    row_h, pad = 26, 6
    height = max(1, len(rows)) * row_h + pad * 2
    plot_w = width - label_w - 56
    peak = max((sum(v for v, _, _ in bars) for _, bars in rows), default=0) or 1
    parts = [_svg_open(key, width, height, title)]
    for index, (label, bars) in enumerate(rows):
        y = pad + index * row_h
        parts.append(
            f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">{label}</text>'
        )
        x = float(label_w)
        for value, color, opacity in bars:
            w = plot_w * value / peak
            if w > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                    f'rx="2" fill="{color}" fill-opacity="{opacity}"/>'
                )
            x += w
        total = sum(v for v, _, _ in bars)
        parts.append(f'<text x="{x + 6:.1f}" y="{y + row_h / 2 + 4:.1f}">{total}</text>')
    if not rows:
        parts.append(f'<text x="{width / 2:.1f}" y="{pad + 16}" text-anchor="middle">none</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- Sections -----------------------------------------------------------------------------


def _figure(n: str, what: str, key: str) -> str:
    return (
        f'<div class="figure" data-figure="{key}"><span class="n">{n}</span>'
        f'<span class="what">{what}</span></div>'
    )


def _negative_share(counts: dict[str, int]) -> float | None:
    total = sum(counts.values())
    return 100.0 * counts.get("negative", 0) / total if total else None


def _headline(digest: Digest, since: str, unhandled_total: int | None) -> str:
    if digest.change_percent is None:
        change = f"{_signed(digest.change)} vs the {_span(since)} before (none then)"
    else:
        change = (
            f"{_signed(digest.change)} ({_signed(round(digest.change_percent))}%) "
            f"vs the {_span(since)} before"
        )
    figures = [_figure(str(digest.total), f"mentions<br>{change}", "mentions")]
    if digest.story_count or digest.stories:
        was = f", was {digest.previous_story_count}" if digest.previous_story_count else ""
        figures.append(
            _figure(
                str(digest.story_count),
                f"stories (one link or complaint across sources){was}",
                "stories",
            )
        )
    share = _negative_share(digest.by_sentiment)
    before = _negative_share(digest.previous_by_sentiment)
    if share is not None:
        was = f", was {before:.0f}%" if before is not None else ""
        figures.append(_figure(f"{share:.0f}%", f"negative{was}", "negative-share"))
    figures.append(
        _figure(str(digest.filtered), "filtered as spam or off-topic (stored, not alerted)", "spam")
    )
    figures.append(_figure(str(digest.replies_total), "replies to customers", "replies"))
    if unhandled_total is not None:
        figures.append(_figure(str(unhandled_total), "alerts still unhandled", "unhandled"))
    return _section(
        "headline", "Headline figures", '<div class="figures">' + "".join(figures) + "</div>"
    )


def _legend(labels: Sequence[str]) -> str:
    items = "".join(f"<li>{_dot(label)}{label}</li>" for label in labels)
    return f'<ul class="legend">{items}</ul>'


def _days_section(digest: Digest) -> str:
    used = [lb for lb in ORDER if any(d.counts.get(lb) for d in digest.days)] or ["negative"]
    body = days_chart(digest.days) + _legend(used)
    return _section("days", f"Mentions per day by sentiment ({_text(digest.timezone)})", body)


def _sentiment_section(digest: Digest) -> str:
    labels = [
        lb for lb in ORDER if digest.by_sentiment.get(lb) or digest.previous_by_sentiment.get(lb)
    ]
    if not labels:
        return _section("sentiment", "By sentiment", _none("no mentions in either period"))
    rows = []
    for label in labels:
        now, before = digest.by_sentiment.get(label, 0), digest.previous_by_sentiment.get(label, 0)
        rows.append(
            f"<tr><td>{_dot(label)}{label}</td><td class='n'>{now}</td>"
            f"<td class='n'>{before}</td><td class='n'>{_change_text(now, before)}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>sentiment</th><th class='n'>now</th><th class='n'>before</th>"
        "<th class='n'>change</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    chart = _hbars(
        "sentiment",
        "Mentions by sentiment, now and before",
        [
            row
            for label in labels
            for row in (
                (f"{label} now", [(digest.by_sentiment.get(label, 0), COLORS[label], 1.0)]),
                ("before", [(digest.previous_by_sentiment.get(label, 0), COLORS[label], 0.35)]),
            )
        ],
    )
    return _section("sentiment", "By sentiment, with the change", chart + table)


def _sources_section(digest: Digest) -> str:
    if not digest.by_source:
        return _section("sources", "By source", _none("no mentions in this period"))
    ordered = sorted(digest.by_source.items(), key=lambda kv: (-kv[1], kv[0]))
    chart = _hbars(
        "sources",
        "Mentions by source",
        [(_text(source_name(source), 40), [(n, "#5b7bb4", 1.0)]) for source, n in ordered],
    )
    return _section("sources", "By source", chart)


def _split(counts: dict[str, int]) -> str:
    """A sentiment split as coloured dots with counts, complaints first."""
    parts = [
        f'<span class="split" title="{label}">{_dot(label)}{counts[label]}</span>'
        for label in ORDER
        if counts.get(label)
    ]
    return " ".join(parts) or "-"


def _sentiment_bars(counts: dict[str, int]) -> list[tuple[int, str, float]]:
    return [(counts.get(label, 0), COLORS[label], 1.0) for label in ORDER if counts.get(label)]


def _stories_section(digest: Digest) -> str:
    rows = []
    for story in digest.stories:
        title = _link(story.url, f"<bdi>{_text(story.title or '(no title)', 200)}</bdi>")
        per_source = "<br>".join(
            f"{_text(source_name(source), 40)}: {_split(counts)}"
            for source, counts in sorted(story.sources.items())
        )
        rows.append(
            f"<tr><td>{title}</td><td class='n'>{story.mentions}</td>"
            f"<td class='n'>{_local(story.first_at, digest.timezone, '%a %d %b %H:%M')}</td>"
            f"<td>{per_source or '-'}</td></tr>"
        )
    was = (
        f"; {digest.previous_story_count} the period before" if digest.previous_story_count else ""
    )
    intro = (
        f'<p class="meta">{digest.total} mentions grouped into {digest.story_count} stories '
        f"(one link or one complaint across sources){was}. The biggest:</p>"
    )
    table = (
        "<table><thead><tr><th>story</th><th class='n'>mentions</th>"
        "<th class='n'>first seen</th><th>sentiment per source</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    return _section("stories", f"Stories ({digest.story_count})", intro + table)


def _themes_section(digest: Digest) -> str:
    chart = _hbars(
        "themes",
        "Themes by size, split by sentiment",
        [(_text(theme.label, 28), _sentiment_bars(theme.sentiment)) for theme in digest.themes],
        width=1000,
        label_w=200,
    )
    cards = []
    for theme in digest.themes:
        quotes = "".join(
            f"<li><q><bdi>{_text(quote.text, 280)}</bdi></q> "
            f'<span class="meta">{_link(quote.url, _text(source_name(quote.source), 40))}'
            "</span></li>"
            for quote in theme.quotes[:2]
        )
        cards.append(
            f'<div class="theme" data-theme><h3><bdi>{_text(theme.label, 120)}</bdi></h3>'
            f'<p class="meta">{theme.size} mentions, '
            f"{_change_text(theme.size, theme.previous)} vs the period before · "
            f"{_split(theme.sentiment)}</p>"
            + (f'<ul class="quotes">{quotes}</ul>' if quotes else "")
            + "</div>"
        )
    return _section(
        "themes",
        f"Themes ({len(digest.themes)})",
        chart + '<div class="themes">' + "".join(cards) + "</div>",
    )


def voices_chart(digest: Digest, width: int = 1000) -> str:
    """Share of voice: per tag, its volume (bar, with the share of all tagged mentions)
    beside its sentiment split (a 100% stacked bar), the previous period faint below."""
    voices = digest.voices
    label_w, row_h, pad, gap = 150, 34, 8, 40
    half = (width - label_w - gap - 60) / 2
    height = len(voices) * row_h + pad * 2 + 18
    total = sum(v.mentions for v in voices) or 1
    peak = max((max(v.mentions, v.previous) for v in voices), default=0) or 1
    right = label_w + half + gap + 50
    parts = [
        _svg_open("voices", width, height, "Share of voice: volume and sentiment per tag"),
        f'<text x="{label_w}" y="{pad + 8}">volume (share of tagged mentions)</text>',
        f'<text x="{right:.1f}" y="{pad + 8}">sentiment (share of the tag)</text>',
    ]
    for index, voice in enumerate(voices):
        y = pad + 18 + index * row_h
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{_text(voice.tag, 18)}</text>'
        )
        w_now, w_before = half * voice.mentions / peak, half * voice.previous / peak
        parts.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{w_now:.1f}" height="14" rx="2" '
            f'fill="#5b7bb4"/><rect x="{label_w}" y="{y + 20}" width="{w_before:.1f}" '
            'height="6" rx="2" fill="#5b7bb4" fill-opacity="0.35"/>'
            f'<text x="{label_w + w_now + 6:.1f}" y="{y + 15}">{voice.mentions} '
            f"({100 * voice.mentions / total:.0f}%)</text>"
        )
        x = float(right)
        size = sum(voice.sentiment.values())
        for label in ORDER:
            n = voice.sentiment.get(label, 0)
            if not n:
                continue
            w = half * n / size
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="14" '
                f'fill="{COLORS[label]}"><title>{label}: {n}</title></rect>'
            )
            x += w
    parts.append("</svg>")
    return "".join(parts)


def _voices_section(digest: Digest) -> str:
    total = sum(v.mentions for v in digest.voices) or 1
    rows = []
    for voice in digest.voices:
        now = _negative_share(voice.sentiment)
        before = _negative_share(voice.previous_sentiment)
        rows.append(
            f"<tr><td><bdi>{_text(voice.tag, 60)}</bdi></td><td class='n'>{voice.mentions}</td>"
            f"<td class='n'>{100 * voice.mentions / total:.0f}%</td>"
            f"<td class='n'>{_change_text(voice.mentions, voice.previous)}</td>"
            f"<td>{_split(voice.sentiment)}</td>"
            f"<td class='n'>{'-' if now is None else f'{now:.0f}%'}"
            f"{'' if before is None else f' (was {before:.0f}%)'}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>tag</th><th class='n'>mentions</th><th class='n'>share</th>"
        "<th class='n'>change</th><th>sentiment</th><th class='n'>negative</th></tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )
    return _section("voices", "Share of voice", voices_chart(digest) + table)


def _insights(digest: Digest) -> list[str]:
    """Stories, themes and share of voice: each only when the digest has some."""
    out = []
    if digest.stories:
        out.append(_stories_section(digest))
    if digest.themes:
        out.append(_themes_section(digest))
    if digest.voices:
        out.append(_voices_section(digest))
    return out


def _item(item: Item, tz: str) -> str:
    title = f"<bdi>{_text(item.title or '(no title)', 240)}</bdi>"
    meta = [_text(source_name(item.source), 40)]
    if item.rating is not None:
        meta.append(f"{int(item.rating)}/5 stars")
    if isinstance(item.score, int | float):
        meta.append(f"score {item.score:+.2f}".replace("-", "\u2212"))
    if item.created_at:
        meta.append(_local(item.created_at, tz, "%a %d %b %H:%M"))
    if item.query:
        meta.append(f"query <bdi>{_text(item.query, 80)}</bdi>")
    if item.reach_figures:
        meta.append(f"<bdi>{_text(item.reach_figures, 120)}</bdi>")
    return (
        f"<li>{_dot(item.label)}{_link(item.url, title)}"
        f'<br><span class="meta">{" · ".join(meta)}</span></li>'
    )


def _items(key: str, title: str, items: Sequence[Item], tz: str, empty: str) -> str:
    if not items:
        return _section(key, title, _none(empty))
    body = '<ol class="items">' + "".join(_item(i, tz) for i in items) + "</ol>"
    return _section(key, title, body)


def _times_section(times: Sequence[ResponseTimes]) -> str:
    title = "Response times (alert to Handled)"
    if not times:
        return _section("response-times", title, _none("none yet (no alert marked Handled)"))
    rows = "".join(
        f"<tr><td><bdi>{_text(r.channel, 80)}</bdi></td><td class='n'>{r.count}</td>"
        f"<td class='n'>{duration_text(r.median)}</td>"
        f"<td class='n'>{duration_text(r.p90)}</td></tr>"
        for r in times
    )
    table = (
        "<table><thead><tr><th>channel</th><th class='n'>handled</th><th class='n'>median</th>"
        "<th class='n'>p90</th></tr></thead><tbody>" + rows + "</tbody></table>"
    )
    return _section("response-times", title, table)


def _reply_row(reply: ReplyItem, tz: str) -> str:
    who = _text(reply.author_name or reply.author_id or "someone", 80)
    if reply.status == "manual":
        who += " <span class='meta'>(said they replied)</span>"
    if reply.approver_id:
        who += f" <span class='meta'>approved by {_text(reply.approver_id, 40)}</span>"
    to = _link(reply.url, f"<bdi>{_text(reply.title or '(no title)', 160)}</bdi>")
    answer = _link(reply.reply_url, "the reply") if _href(reply.reply_url) else "-"
    return (
        f"<tr><td>{who}</td><td>{_text(source_name(reply.platform), 40)}</td>"
        f"<td class='n'>{_local(reply.sent_at, tz, '%a %d %b %H:%M')}</td>"
        f"<td>{to}</td><td>{answer}</td></tr>"
    )


def _replies_section(digest: Digest) -> str:
    title = f"Replies to customers ({digest.replies_total})"
    if not digest.replies:
        return _section("replies", title, _none("none this period"))
    rows = "".join(_reply_row(r, digest.timezone) for r in digest.replies)
    more = digest.replies_total - len(digest.replies)
    table = (
        "<table><thead><tr><th>who</th><th>where</th><th class='n'>when</th><th>to</th>"
        "<th>reply</th></tr></thead><tbody>" + rows + "</tbody></table>"
    )
    if more > 0:
        table += f'<p class="meta">… and {more} more</p>'
    return _section("replies", title, table)


# -- The page -----------------------------------------------------------------------------


def render_report_html(
    digest: Digest,
    *,
    product: str = "",
    title: str = "Weekly report",
    since: str = "7d",
    unhandled: Sequence[Item] = (),
    unhandled_total: int | None = None,
    unhandled_channel: str | None = None,
    response_times: Sequence[ResponseTimes] = (),
    generated: datetime | None = None,
) -> str:
    """The report of ``digest`` as one self-contained HTML document.

    * **digest** - the figures (``build_digest(store, period, scope="all")``).
    * **product** / **title** / **since** - the heading and the length of the period, as
      the user asked for it (``"7d"``).
    * **unhandled** / **unhandled_total** / **unhandled_channel** - the alerts channel's
      alerts still unhandled, as the digest orders them (biggest reach first) (``None``
      total: no alerts channel, the section is left out).
    * **response_times** - alert-to-Handled times per channel.
    * **generated** - when the report was made (default: now).
    """
    tz = digest.timezone
    made = (generated or datetime.now(UTC)).astimezone(UTC)
    heading = _text(f"{title} · {product}" if product else title, 200)
    window = (
        f"{_local(digest.start, tz, '%a %d %b %Y %H:%M')} – "
        f"{_local(digest.end, tz, '%a %d %b %Y %H:%M')} ({_text(tz, 60)})"
    )
    sections = [
        _headline(digest, since, unhandled_total),
        _days_section(digest),
        _columns(_sentiment_section(digest), _sources_section(digest)),
        *_insights(digest),
        _columns(
            _items("top-negative", "Top negative", digest.top_negative, tz, "none this period"),
            _items("top-positive", "Top positive", digest.top_positive, tz, "none this period"),
        ),
    ]
    if unhandled_total is not None:
        where = f" in {_text(unhandled_channel, 80)}" if unhandled_channel else ""
        sections.append(
            _items(
                "unhandled",
                f"Alerts still unhandled{where} ({unhandled_total}), biggest reach first",
                unhandled,
                tz,
                "none: every alert is handled",
            )
        )
    sections.append(_times_section(response_times))
    sections.append(_replies_section(digest))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="earshot report --html">\n'
        f"<title>{heading}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{heading}</h1><p>{window}</p></header>\n"
        + "\n".join(sections)
        + f"\n<footer>Made by earshot on {made:%Y-%m-%d %H:%M} UTC. Spam and off-topic "
        "mentions are counted as filtered and left out of the other figures.</footer>\n"
        f"</main>\n<script>{MEASURE_SCRIPT}</script>\n</body>\n</html>\n"
    )
