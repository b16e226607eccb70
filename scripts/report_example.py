"""Write docs/report-example.png: the page `earshot report --html` makes, as headless
Chromium shows it.

    .venv/bin/python scripts/report_example.py [OUTPUT.png] [--html PAGE.html]

The synthetic month (tests/synthmonth.py: real payload shapes and texts, fixed seed,
planted themes, a competitor query tagged "competitor"; here one mention in 45 marked spam)
is stored in an in-memory SQLite through the real Store (grouping stories, as a poll does:
its reused background texts make copied-text stories) and routing;
the alerts are marked sent, all but the last day's handled, and three replies recorded.
Its last week is summed by ``build_digest`` as `earshot report` does (stories, themes,
share of voice) and rendered by ``render_report_html``; the page is opened in Chromium
(tests/browser.py: no network) once to measure its height and once more to take the whole
page (saved with a 256-colour palette). Needs the Debian package ``chromium``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from datetime import UTC, timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import bindparam, update
from sqlmodel import Session, SQLModel, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from earshot.listener.digest import Period, build_digest, response_times  # noqa: E402
from earshot.listener.models import Delivery, Mention, Reply  # noqa: E402
from earshot.listener.routing import Router  # noqa: E402
from earshot.listener.store import Store  # noqa: E402
from earshot.listener.stories import StoryOptions  # noqa: E402
from earshot.responders.report_html import render_report_html  # noqa: E402
from tests.browser import open_page  # noqa: E402
from tests.synthmonth import MONTH_START, TAGS, WEEKS, build_month  # noqa: E402

ALERTS, WINS = "#cx-alerts", "#cx-wins"
#: The report is made at the end of the synthetic month (a Monday), over its last week.
END = MONTH_START + timedelta(days=7 * WEEKS)


def synthetic_store() -> Store:
    """The synthetic month (one mention in 45 spam) stored with story grouping on, alerts
    sent 5 minutes after each post and handled but for the last day's, 3 replies."""
    store = Store.from_url("sqlite://")
    store.create_schema()
    mentions = build_month().mentions
    for n, m in enumerate(mentions):
        if n % 45 == 0:
            m.intents = ["spam"]  # stored, never alerted: counted as filtered
    route = Router(ALERTS, WINS).routes
    for start in range(0, len(mentions), 400):
        store.ingest(None, mentions[start : start + 400], None, route, stories=StoryOptions())
    outbox = SQLModel.metadata.tables["outbox"]
    table = SQLModel.metadata.tables["mentions"]
    with Session(store.engine) as session:
        rows = session.exec(
            select(Delivery.id, Mention.id, Mention.created_at, Delivery.channel)
            .join(Mention, Mention.id == Delivery.mention_id)
            .order_by(Delivery.id)
        ).all()
        sent = {d: c.replace(tzinfo=UTC) + timedelta(minutes=5) for d, _m, c, _ch in rows}
        session.execute(
            update(outbox)
            .where(outbox.c.id == bindparam("row"))
            .values(status="sent", sent_at=bindparam("sent")),
            [{"row": d, "sent": at} for d, at in sent.items()],
        )
        session.execute(
            update(table).where(table.c.id == bindparam("row")).values(status="alerted"),
            [{"row": m} for _d, m, _c, _ch in rows],
        )
        # every alert but the last day's handled, 8 minutes to 5 hours after it was sent
        done = [r for r in rows if r[3] == ALERTS and sent[r[0]] < END - timedelta(days=1)]
        session.execute(
            update(table)
            .where(table.c.id == bindparam("row"))
            .values(status="handled", resolved_at=bindparam("resolved")),
            [
                {"row": m, "resolved": sent[d] + timedelta(minutes=8 + (37 * i) % 300)}
                for i, (d, m, _c, _ch) in enumerate(done)
            ],
        )
        recent = [r for r in done if sent[r[0]] >= END - timedelta(days=6)]
        for i, (d, m, _c, _ch) in enumerate(recent[3::40][:3]):
            session.add(
                Reply(
                    key=f"example-{i}",
                    mention_id=m,
                    platform=(session.get(Mention, m) or Mention()).source,
                    text="Thanks for flagging this; a fix is rolling out today.",
                    status="manual" if i == 2 else "sent",
                    author_id="U0LEAD",
                    author_name=("Bo Lindqvist", "Kim Osei", "Bo Lindqvist")[i],
                    approver_id="U0APPR" if i == 1 else None,
                    remote_url=None if i == 2 else f"https://example.test/replies/{i}",
                    sent_at=sent[d] + timedelta(minutes=40),
                )
            )
        session.commit()
    return store


def page_html() -> str:
    """The report page of the week before ``END``, as `earshot report --html` writes it."""
    store = synthetic_store()
    period = Period("report", "all", END - timedelta(days=7), END, "UTC")
    digest = build_digest(store, period, scope="all", tags=TAGS)
    unhandled = build_digest(store, Period("report", ALERTS, END, END, "UTC"), themes=None)
    times = response_times(store, period.start, period.end)
    store.engine.dispose()
    return render_report_html(
        digest,
        product="Acme",
        since="7d",
        unhandled=unhandled.unhandled,
        unhandled_total=unhandled.unhandled_total,
        unhandled_channel=ALERTS,
        response_times=times,
        generated=END,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=ROOT / "docs/report-example.png")
    parser.add_argument("--html", type=Path, help="also keep the page itself here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="earshot-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(page_html(), encoding="utf-8")
        first = open_page(page, Path(tmp) / "measure")
        height = re.search(r'data-height="(\d+)"', first.dom)
        if height is None:
            raise SystemExit("the page's script did not run: no data-height in the DOM")
        full = open_page(page, Path(tmp) / "full", height=int(height.group(1)))
        if full.page_requests():
            raise SystemExit(f"the page made network requests: {full.page_requests()}")
        with Image.open(full.png) as shot:
            # a 256-colour palette: the same picture at about a third of the bytes
            palette = shot.convert("RGB").quantize(256, Image.Quantize.MEDIANCUT)
            palette.save(args.output, optimize=True)
        if args.html:
            args.html.write_text(page.read_text("utf-8"), encoding="utf-8")
    print(f"{args.output}: 1200x{height.group(1)} screenshot of the report page")


if __name__ == "__main__":
    main()
