"""Pick candidate texts for hand-labelling the ``billing`` and ``churn_risk`` intent tags.

No public data set is labelled for these two tags, so they are labelled by hand (see
``benchmarks/labels/README.md``). This script only does the mechanical parts:

``mine``
    Scans every source of real text, keeps the rows that match a broad keyword list
    (plus a seeded random sample of rows that match nothing, to check for misses; every text of
    the captured fixtures is kept), and
    writes them to a TSV **outside the repository** (default ``/tmp/billing_churn``),
    one row per distinct normalized text: ``key, file, tier, keywords, text``. The texts of
    the CX and sentiment data sets must not be copied into the repo (license terms), which
    is why the candidate file is written elsewhere and the label file holds only keys.

``check``
    Re-reads every source and checks that every key in
    ``benchmarks/labels/billing_churn.csv`` still points at exactly one source row in the file it
    names, and prints counts per file and per label.

Sources (read only):

* ``/work/shared/data/cx/*.csv`` (column ``text``). The two CLAP files hold the same texts,
  so only ``app_reviews_sentiment_clap.csv`` is scanned; its keys apply to
  ``app_reviews_intent_clap.csv`` too.
* ``/work/shared/data/sentiment/*.txt`` (tab-separated ``id, score, text``).
* Captured API payloads in ``tests/fixtures/real/`` (``file`` = ``fixture:<path relative to
  the repo>``) and the payloads that exist only in ``/work/shared/fixtures/real/``
  (``file`` = ``shared_fixture:<path relative to that folder>``). One text per item:
  title and body joined by a blank line when both exist, HTML tags removed.

The key of a text is ``sha1(normalize(text))`` in hex, with :func:`normalize` as specified
in the labels README: NFKC, lower case, every run of characters outside ``[0-9a-z]`` made
one space, stripped.

    .venv/bin/python benchmarks/label_billing_churn.py mine [--out DIR] [--seed 7]
    .venv/bin/python benchmarks/label_billing_churn.py check

Deterministic: sources are read in sorted order, sampling uses ``random.Random(seed)``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

from earshot.listener.evaluation import normalized_text, text_key

REPO = Path(__file__).resolve().parent.parent
CX = Path("/work/shared/data/cx")
SENTIMENT = Path("/work/shared/data/sentiment")
SHARED_FIXTURES = Path("/work/shared/fixtures/real")
REPO_FIXTURES = REPO / "tests" / "fixtures" / "real"
LABELS = REPO / "benchmarks" / "labels" / "billing_churn.csv"

# CX files scanned (the intent CLAP file has the same texts as the sentiment one).
CX_FILES = (
    "app_reviews_sentiment_clap.csv",
    "github_issues_intent_nlbse24.csv",
    "github_pr_sentiment_opus.csv",
    "product_reviews_sentiment_uci.csv",
    "spam_sms_uci.csv",
    "spam_youtube_comments_uci.csv",
    "tweets_sentiment_semeval.csv",
)

# Tier 1 ("core"): words that usually mean money or leaving. Tier 2 ("broad"): words that
# often do not (hard negatives come mostly from here). Matched on the normalized text with
# word boundaries; a trailing ``*`` allows any ending. A currency amount also counts as core.
CORE = (
    "refund*",
    "charg*",
    "overcharg*",
    "overpriced",
    "expensive",
    "pricey",
    "price*",
    "pricing",
    "subscri*",
    "unsubscri*",
    "cancel*",
    "uninstal*",
    "un install*",
    "billing",
    "billed",
    "paywall",
    "paid",
    "pay",
    "paying",
    "pays",
    "payment*",
    "purchas*",
    "in app",
    "money",
    "rip off",
    "ripoff",
    "scam*",
    "premium",
    "pro version",
    "full version",
    "trial",
    "never again",
    "never buy*",
    "switch*",
    "moving to",
    "going back to",
    "delet*",
    "return*",
    "sent it back",
    "send it back",
    "leave",
    "leaving",
    "quit*",
    "done with",
    "won t buy",
    "will not buy",
    "wont buy",
    "dollar*",
    "bucks",
    "fee*",
    "cost*",
    "worth",
    "afford*",
    "ad free",
    "renew*",
)
BROAD = (
    "free",
    "buy*",
    "bought",
    "sale",
    "deal",
    "unlock*",
    "upgrade*",
    "alternative*",
    "bill",
    "cheap*",
    "ads",
    "credit card",
    "paypal",
    "itunes",
    "google play",
    "amazon",
    "account",
    "goodbye",
    "bye",
    "last time",
    "never use*",
    "cents",
)
# Keyword matches kept per file (seeded sample when a file has more); fixtures keep everything.
CORE_CAP = {
    "cx/app_reviews_sentiment_clap.csv": 1000,
    "cx/product_reviews_sentiment_uci.csv": 1000,
    "sentiment/amazonReviewSnippets_GroundTruth.txt": 150,
    "sentiment/tweets_GroundTruth.txt": 60,
    "cx/tweets_sentiment_semeval.csv": 80,
    "cx/spam_sms_uci.csv": 25,
    "cx/spam_youtube_comments_uci.csv": 15,
    "cx/github_issues_intent_nlbse24.csv": 20,
    "cx/github_pr_sentiment_opus.csv": 20,
}
BROAD_CAP = 8
DOLLAR = re.compile(r"[$£€]\s?\d|\d\s?(?:usd|eur|gbp)\b", re.I)

_TAG = re.compile(r"<[^>]+>")

normalize = normalized_text  # NFKC, lower case, runs outside [0-9a-z] -> one space
key = text_key  # sha1(normalize(text)) in hex


def _pattern(words: Sequence[str]) -> re.Pattern[str]:
    parts = [re.escape(w[:-1]) + r"[0-9a-z]*" if w.endswith("*") else re.escape(w) for w in words]
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b")


CORE_RE = _pattern(CORE)
BROAD_RE = _pattern(BROAD)


def _strip_html(text: str) -> str:
    return html.unescape(_TAG.sub(" ", text.replace("<br>", "\n").replace("</p>", "\n"))).strip()


def _join(title: str | None, body: str | None) -> str:
    return "\n\n".join(part.strip() for part in (title, body) if part and part.strip())


# ---------------------------------------------------------------- sources


def cx_rows() -> Iterator[tuple[str, str]]:
    csv.field_size_limit(sys.maxsize)
    for name in CX_FILES:
        with (CX / name).open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                yield f"cx/{name}", row["text"]


def sentiment_rows() -> Iterator[tuple[str, str]]:
    for path in sorted(SENTIMENT.glob("*.txt")):
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.rstrip("\r\n").split("\t", 2)
                if len(parts) == 3:
                    yield f"sentiment/{path.name}", parts[2]


def _fixture_texts(path: Path) -> Iterator[str]:
    """Human-written texts in one captured payload (empty for header/error captures)."""
    name = path.name
    if name.endswith(".headers.json") or name.startswith(("error_", "ratelimit_")):
        return
    raw = path.read_text(encoding="utf-8")
    if path.parent.name == "googleplay" and path.suffix == ".txt":  # the web batchexecute
        outer, _ = json.JSONDecoder().raw_decode(raw[raw.index("[") :])
        for review in json.loads(outer[0][2])[0]:
            if isinstance(review[4], str):
                yield review[4]
        return
    if path.suffix == ".xml":
        for entry in re.findall(r"<entry>(.*?)</entry>", raw, re.S):
            title = re.search(r"<title[^>]*>(.*?)</title>", entry, re.S)
            body = re.search(r'<content type="text">(.*?)</content>', entry, re.S)
            if body is None:  # Google Alerts: HTML-escaped content
                body = re.search(r'<content type="html">(.*?)</content>', entry, re.S)
                body_text = _strip_html(html.unescape(body.group(1))) if body else ""
            else:
                body_text = body.group(1)
            title_text = _strip_html(html.unescape(title.group(1))) if title else ""
            yield _join(title_text, body_text)
        return
    data = json.loads(raw)
    folder = path.parent.name
    if folder == "appstore":
        for entry in data["feed"]["entry"]:
            if "content" in entry:
                yield _join(entry["title"]["label"], entry["content"]["label"])
    elif folder == "reddit":
        for child in data["data"]["children"]:
            d = child["data"]
            yield _join(d.get("title"), d.get("selftext") or d.get("body"))
    elif folder == "hn_algolia":
        for hit in data["hits"]:
            body = hit.get("comment_text") or hit.get("story_text")
            yield _join(hit.get("title"), _strip_html(body) if body else None)
    elif folder == "mastodon":
        for status in data if isinstance(data, list) else data.get("statuses", []):
            yield _strip_html(status["content"])
    elif folder == "bluesky":
        for post in data["posts"]:
            yield post["record"]["text"]
    elif folder == "github":
        for item in data["items"]:
            yield _join(item["title"], item.get("body"))
    elif folder == "discourse":
        for post in data["latest_posts"]:
            yield _join(post.get("topic_title"), post.get("raw"))
    elif folder == "googleplay":  # the Android Publisher API's reviews.list
        for review in data.get("reviews", []):
            for comment in review.get("comments", []):
                if "userComment" in comment:
                    yield comment["userComment"]["text"]
    elif folder == "stackexchange":
        for item in data.get("items", []):
            yield _join(html.unescape(item["title"]), item.get("body_markdown"))


def fixture_rows() -> Iterator[tuple[str, str]]:
    for path in sorted(REPO_FIXTURES.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".xml", ".txt"):
            for text in _fixture_texts(path):
                yield f"fixture:{path.relative_to(REPO)}", text
    for path in sorted(SHARED_FIXTURES.rglob("*")):
        rel = path.relative_to(SHARED_FIXTURES)
        new = path.is_file() and not (REPO_FIXTURES / rel).exists()
        if new and path.suffix in (".json", ".xml", ".txt"):
            for text in _fixture_texts(path):
                yield f"shared_fixture:{rel}", text


def all_rows() -> Iterator[tuple[str, str]]:
    yield from fixture_rows()
    yield from cx_rows()
    yield from sentiment_rows()


# ---------------------------------------------------------------- commands


def mine(out: Path, seed: int, negatives_per_file: int) -> None:
    """Write candidates.tsv: keyword matches (capped per file) and random non-matches."""
    seen: set[str] = set()
    groups: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for file, text in all_rows():
        norm = normalize(text)
        if not norm:
            continue
        k = hashlib.sha1(norm.encode("utf-8")).hexdigest()
        if k in seen:
            continue
        seen.add(k)
        core = sorted(set(CORE_RE.findall(norm))) + (["$"] if DOLLAR.search(text) else [])
        broad = sorted(set(BROAD_RE.findall(norm)))
        tier = "1" if core else "2" if broad else "0"
        groups[file, tier].append((k, ",".join(core + broad), text))
    rng = random.Random(seed)
    rows: list[tuple[str, str, str, str, str]] = []
    for file, tier in sorted(groups):
        items = groups[file, tier]
        if not file.startswith(("fixture:", "shared_fixture:")):
            cap = {"1": CORE_CAP.get(file, 0), "2": BROAD_CAP, "0": negatives_per_file}[tier]
            items = rng.sample(items, min(cap, len(items)))
        rows += [(k, file, tier, kw, text) for k, kw, text in items]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "candidates.tsv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["key", "file", "tier", "keywords", "text"])
        writer.writerows(rows)
    counts = Counter((r[1], r[2]) for r in rows)
    for (file, tier), n in sorted(counts.items()):
        print(f"{file:70s} tier {tier}: {n}")
    print(f"{len(rows)} candidates -> {out / 'candidates.tsv'}")


def check(labels: Path) -> int:
    """Every labelled key must name one normalized text in its file; print the counts."""
    present: dict[str, set[str]] = defaultdict(set)
    for file, text in all_rows():
        present[file].add(key(text))
    clap_intent = "cx/app_reviews_intent_clap.csv"
    clap_sentiment = "cx/app_reviews_sentiment_clap.csv"
    present[clap_intent] = present[clap_sentiment]
    bad = 0
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    with labels.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = Counter(r["key"] for r in rows)
    for row in rows:
        if row["key"] not in present[row["file"]]:
            print(f"missing: {row['key']} in {row['file']}")
            bad += 1
        if keys[row["key"]] > 1:
            print(f"duplicate key: {row['key']}")
            bad += 1
        c = per_file[row["file"]]
        c["rows"] += 1
        c["billing"] += row["billing"] == "1"
        c["churn_risk"] += row["churn_risk"] == "1"
        c["both"] += row["billing"] == "1" and row["churn_risk"] == "1"
        c["neither"] += row["billing"] == "0" and row["churn_risk"] == "0"
    total: Counter[str] = Counter()
    print("| file | rows | billing | churn_risk | both | neither |\n|---|---|---|---|---|---|")
    for file in sorted(per_file):
        c = per_file[file]
        total.update(c)
        counts = " | ".join(str(c[k]) for k in ("rows", "billing", "churn_risk", "both", "neither"))
        print(f"| `{file}` | {counts} |")
    print(
        f"| **total** | {total['rows']} | {total['billing']} | {total['churn_risk']} "
        f"| {total['both']} | {total['neither']} |"
    )
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mine", help="write the candidate TSV (outside the repo)")
    m.add_argument("--out", type=Path, default=Path("/tmp/billing_churn"))
    m.add_argument("--seed", type=int, default=7)
    m.add_argument("--negatives", type=int, default=8, help="random non-matches per data file")
    c = sub.add_parser("check", help="check the label file's keys against the sources")
    c.add_argument("--labels", type=Path, default=LABELS)
    args = parser.parse_args(argv)
    if args.command == "mine":
        mine(args.out, args.seed, args.negatives)
        return 0
    return check(args.labels)


if __name__ == "__main__":
    raise SystemExit(main())
