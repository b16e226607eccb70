"""Write docs/digest-chart-example.png: the weekly chart of the synthetic test week.

    .venv/bin/python scripts/digest_chart_example.py [OUTPUT.png]

The week is tests/synthweek.py (fixed seed, daily cycles), stored in an in-memory SQLite
through the real Store and routing, summed by ``build_digest`` and drawn by ``chart_png``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from earshot.listener.digest import DigestSchedule, build_digest, due_period  # noqa: E402
from earshot.listener.routing import Router  # noqa: E402
from earshot.listener.store import Store  # noqa: E402
from earshot.responders.digest import chart_png  # noqa: E402
from tests.synthweek import store_all, week  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "digest-chart-example.png"
    store = Store.from_url("sqlite://")
    store.create_schema()
    store_all(store, week(), Router("#cx-alerts", "#cx-wins").routes)
    schedule = DigestSchedule("#cx-alerts", weekly_at=time(0, 0), scope="all")
    period = due_period("weekly", schedule, datetime(2026, 11, 23, 1, tzinfo=UTC))
    digest = build_digest(store, period, scope="all")
    out.write_bytes(chart_png(digest.days, "Weekly picture · volume and sentiment per day"))
    print(f"{out}: {digest.total} mentions over {len(digest.days)} days")


if __name__ == "__main__":
    main()
