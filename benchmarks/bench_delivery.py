"""Delivery: queued alerts drained to a loopback fake Slack at 1 message/s per channel.

Run from the repository root::

    .venv/bin/python benchmarks/bench_delivery.py          # 2,000 alerts over 10 channels
    .venv/bin/python benchmarks/bench_delivery.py --quick  # 100 alerts over 10 channels

The alerts are real-shaped Hacker News mentions (``benchlib.Payloads``) stored with
``Store.ingest`` in a SQLite file, each routed to one of the channels at random (seeded),
so the outbox holds them in a realistic interleaved order. ``DeliveryWorker.drain`` sends
them through the real ``SlackChannel`` (slack-sdk over HTTP) to ``tests/fakeslack.py``'s
``FakeSlack(rate_window=1.0)``: one message per second per channel, 429 with
``Retry-After`` beyond that. The worker runs as wired for Slack (``per_channel_interval``
1.0 s, the ``slack.min_interval`` default).

Ideal drain time: the busiest channel's message count at 1 message/s. Figures: drain time,
its ratio to the ideal (target <= 1.2), 429s answered, lost (rows neither sent nor failed,
or sent rows whose key is not in Slack) and doubled (keys posted more than once). Exits 1
when an alert was lost or doubled.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchlib import Payloads, header, table, verdict

from earshot.listener.models import Delivery, DeliveryStatus, Mention
from earshot.listener.sources import HackerNewsSource, PollResult, SourceHttp
from earshot.listener.store import Store
from earshot.responders.delivery import DeliveryWorker
from earshot.responders.slack import SlackChannel
from tests.fakeslack import FakeSlack

TARGET = 1.2


def queue_alerts(store: Store, count: int, channels: Sequence[str], seed: int) -> Counter[str]:
    """Store ``count`` real-shaped mentions, each routed to a random channel."""
    payloads = Payloads(seed)
    parser = HackerNewsSource(SourceHttp(None))  # type: ignore[arg-type]
    rng = random.Random(seed)
    result = PollResult(mentions=[], cursor={})
    mentions: list[Mention] = []
    for n in range(count):
        mention = parser.parse_item(result, parser._mention, payloads.hn_hit(n))
        assert mention is not None
        mention.sentiment_label = "negative"
        mention.sentiment_score = -0.7
        mention.sentiment_reasons = ["crashes"]
        mention.matched_query = "acme"
        mentions.append(mention)
    routes = {m.external_id: rng.choice(channels) for m in mentions}
    store.ingest(None, mentions, None, lambda m: [(routes[m.external_id], "alert")])
    return Counter(routes.values())


def run(count: int, nchannels: int, cap: float, seed: int = 10) -> tuple[list[list[object]], bool]:
    channels = [f"#cx-alerts-{i}" for i in range(nchannels)]
    with tempfile.TemporaryDirectory() as tmp, FakeSlack(rate_window=1.0) as slack:
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.create_schema()
        per_channel = queue_alerts(store, count, channels, seed)
        # The limit lets the n-th message of a channel go (n - 1) s after its first.
        ideal = float(max(per_channel.values()) - 1)
        worker = DeliveryWorker(
            store,
            SlackChannel.from_token("xoxb-bench", slack.api_url),
            product="Acme",
            per_channel_interval=1.0,
        )
        started = time.perf_counter()
        while time.perf_counter() - started < cap:
            worker.drain(timeout=max(1.0, cap - (time.perf_counter() - started)))
            if not store.outbox_counts().get(DeliveryStatus.PENDING.value):
                break
        seconds = time.perf_counter() - started
        counts = store.outbox_counts()
        from sqlmodel import Session, select

        with Session(store.engine) as session:
            sent_keys = set(
                session.exec(
                    select(Delivery.idempotency_key).where(
                        Delivery.status == DeliveryStatus.SENT.value
                    )
                )
            )
        store.engine.dispose()
        posted = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
        rejected = slack.rejected
    pending = counts.get(DeliveryStatus.PENDING.value, 0)
    failed = counts.get(DeliveryStatus.FAILED.value, 0)
    missing = len(sent_keys - set(posted))
    lost = pending + missing
    doubled = len(posted) - len(set(posted))
    ratio = seconds / ideal
    rows: list[list[object]] = [
        ["alerts queued", count, ""],
        ["channels (busiest has)", f"{nchannels} ({int(ideal)})", ""],
        ["ideal drain time, s", ideal, "busiest channel at 1 msg/s: (n-1) s"],
        ["drain time, s", seconds, f"cap {cap:.0f} s"],
        ["drain / ideal", ratio, f"target <= {TARGET}: {verdict(ratio <= TARGET)}"],
        ["sent", counts.get(DeliveryStatus.SENT.value, 0), ""],
        ["failed", failed, ""],
        ["429 answered", rejected, ""],
        ["lost", lost, "target 0: " + verdict(lost == 0)],
        ["doubled", doubled, "target 0: " + verdict(doubled == 0)],
    ]
    return rows, lost == 0 and doubled == 0 and failed == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 alerts over 10 channels")
    parser.add_argument("--alerts", type=int, help="alerts to queue (default 2000)")
    parser.add_argument("--channels", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    count = args.alerts or (100 if args.quick else 2000)
    header("Delivery: outbox -> fake Slack (1 msg/s/channel, 429 + Retry-After)", args.quick)
    cap = max(60.0, 2.5 * count / args.channels + 30)
    rows, ok = run(count, args.channels, min(cap, 285.0))
    print(table(["figure", "value", "note"], rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
