"""POST /slack/events under hostile input: 400 for a bad signed request, 401 unsigned, no 500.

The named cases go through the real ops HTTP server; the fuzz test drives ``handle_http``
with seeded mutations of the real interaction payloads in tests/fixtures/slack (clicks,
modal submissions, slash commands), signed and unsigned, and checks that no request is
answered 500, no exception escapes, and nothing fails after the ack either.
"""

from __future__ import annotations

import copy
import http.client
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from slack_sdk import WebClient

from earshot.config.http import OpsServer
from earshot.listener.models import Mention, utcnow
from earshot.listener.store import Store
from earshot.responders.interactions import InteractionConfig
from earshot.responders.slack_app import ApproverCheck, ReplayGuard, SlackInteractivity

from .fakeslack import FakeSlack
from .test_slack_interactions import SECRET, Inline, sign

SLACK = Path(__file__).parent / "fixtures" / "slack"
FORM = "application/x-www-form-urlencoded"


def fixture(relative: str) -> Any:
    return json.loads((SLACK / relative).read_text("utf-8"))


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def interactivity(store: Store, slack: FakeSlack) -> SlackInteractivity:
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    config = InteractionConfig(
        product="Acme",
        is_approver=ApproverCheck(["U111"], "S0APPROVE", client),
        wins_channel="#wins",
        queries=["apple"],
        alerts_channel="#cx-alerts",
        sla_seconds=3600.0,
    )
    return SlackInteractivity(
        store,
        config,
        client=client,
        mode="http",
        signing_secret=SECRET,
        replay_guard=ReplayGuard(ttl=0.0),  # the fuzz may send one body twice
        listener_executor=Inline(),
    )


def payload_body(payload: Any) -> bytes:
    return ("payload=" + quote(json.dumps(payload))).encode()


# -- the reported cases, over real HTTP -------------------------------------------------------

CLICK = fixture("interactivity/block_actions_button_in_channel_message.bolt.json")
CASES: dict[str, tuple[bytes, str]] = {
    "non-UTF-8 body": (b"payload=%7B%7D\xff\xfe", FORM),
    "JSON content type on a form body": (payload_body(CLICK), "application/json"),
    "payload not JSON": (b"payload=%7Bnot%20json", FORM),
    "payload a list": (payload_body([CLICK]), FORM),
    "50k-deep nesting": (b"payload=" + b"%5B" * 50_000 + b"%5D" * 50_000, FORM),
    "50k-deep object": (
        b"payload=" + quote('{"a":' * 50_000 + "1" + "}" * 50_000).encode(),
        FORM,
    ),
    "view_submission without type": (
        payload_body(
            {
                k: v
                for k, v in fixture("interactivity/view_submission.bolt.json").items()
                if k != "type"
            }
        ),
        FORM,
    ),
    'actions: "x"': (payload_body({**CLICK, "actions": "x"}), FORM),
    "actions: a string in a list": (payload_body({**CLICK, "actions": ["x"]}), FORM),
    "user: a string": (payload_body({**CLICK, "user": "U1"}), FORM),
    "container: a list": (payload_body({**CLICK, "container": []}), FORM),
    "view state values: a string": (
        payload_body(
            {
                **fixture("interactivity/view_submission.bolt.json"),
                "view": {"callback_id": "x", "state": {"values": "x"}},
            }
        ),
        FORM,
    ),
    "JSON body that is not url_verification": (json.dumps(CLICK).encode(), "application/json"),
    "JSON body, a list": (b"[1, 2]", "application/json"),
    "NaN in the payload": (b"payload=" + quote('{"type": NaN}').encode(), FORM),
    "an unknown content type": (payload_body(CLICK), "text/plain"),
    "a form without payload or command": (b"a=1&b=2", FORM),
    "a broken form": (b"payload", FORM),
    "another slash command": (b"command=%2Fother&text=status&user_id=U1", FORM),
}


def post(port: int, body: bytes, headers: dict[str, str | bytes]) -> tuple[int, bytes]:
    """One raw POST (http.client sends header bytes as given, non-ASCII included)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/slack/events")
        for name, value in {**headers, "content-length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_bad_requests_get_400_or_401_never_500(store: Store, slack: FakeSlack) -> None:
    ui = interactivity(store, slack)
    ops = OpsServer(
        "127.0.0.1", 0, ready=lambda: {"ready": True}, post={"/slack/events": ui.handle_http}
    )
    ops.start()
    answers: dict[str, tuple[int, bytes]] = {}
    try:
        now = int(time.time())
        for name, (body, content_type) in CASES.items():
            answers[name] = post(ops.port, body, {**sign(body, now), "content-type": content_type})
            answers[f"{name}, unsigned"] = post(ops.port, body, {"content-type": content_type})
        good = sign(b"ssl_check=1", now)
        non_ascii = {
            **good,
            "X-Slack-Signature": good["X-Slack-Signature"][:-2].encode() + "é".encode(),
        }
        answers["non-ASCII X-Slack-Signature"] = post(ops.port, b"ssl_check=1", non_ascii)
        arabic = {**sign(b"ssl_check=1", now), "X-Slack-Request-Timestamp": "١٢٣".encode()}
        answers["non-ASCII digits in the timestamp"] = post(ops.port, b"ssl_check=1", arabic)
        ok = post(ops.port, b"ssl_check=1", {**sign(b"ssl_check=1", now + 1), "content-type": FORM})
    finally:
        ops.stop()
    assert ok[0] == 200  # a good request still passes
    statuses = {name: status for name, (status, _) in answers.items()}
    for name in CASES:
        assert statuses[name] == 400, (name, answers[name])
        assert statuses[f"{name}, unsigned"] == 401, name
        assert answers[name][1] and b"Traceback" not in answers[name][1]
    assert statuses["non-ASCII X-Slack-Signature"] == 401
    assert statuses["non-ASCII digits in the timestamp"] == 401
    assert b"nests deeper than" in answers["50k-deep nesting"][1]
    assert b"payload.actions is not a list" in answers['actions: "x"'][1]


# -- seeded fuzz ------------------------------------------------------------------------------

SEED = 20261202
ROUNDS = 600
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1e308,
    "",
    "x",
    "é\u0000\u202e",
    "\ud800",
    "1",
    "-7",
    "earshot_handled",
    "earshot_approve",
    "block_actions",
    "view_submission",
    "x" * 5000,
    [],
    {},
    [1, "a", None],
    {"id": {"id": 1}},
    {"values": {"a": {"b": "c"}}},
]


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for n in range(levels):
        value = [value] if n % 2 else {"a": value}
    return value


def nodes(value: Any) -> list[tuple[Any, ...]]:
    """Every path into ``value`` (not below 40 levels: a mutation may have nested deeper)."""
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        found.append(path)
        if len(path) >= 40:
            continue
        if isinstance(item, dict):
            stack.extend((child, (*path, key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (*path, index)) for index, child in enumerate(item))
    return found


def mutate(payload: Any, rng: random.Random) -> Any:
    payload = copy.deepcopy(payload)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in nodes(payload) if p]
        if not paths:
            return rng.choice(VALUES)
        path = rng.choice(paths)
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        choice = rng.random()
        if choice < 0.25 and isinstance(parent, dict):
            del parent[path[-1]]
        elif choice < 0.35:
            parent[path[-1]] = deep(rng.choice([30, 60, 500]))
        elif choice < 0.45 and isinstance(parent, dict):
            key = rng.choice(
                [
                    "type",
                    "user",
                    "actions",
                    "view",
                    "container",
                    "team",
                    "event",
                    "authorizations",
                    "response_urls",
                    "enterprise",
                    "message",
                ]
            )
            parent[key] = rng.choice(VALUES)
        else:
            parent[path[-1]] = rng.choice(VALUES)
    return payload


def seeds(mention_id: int, response_url: str) -> list[tuple[str, dict[str, Any]]]:
    """The real payloads, pointed at the stored mention and the fake Slack."""
    found: list[tuple[str, dict[str, Any]]] = []
    for name in (
        "interactivity/block_actions_button_in_channel_message.bolt.json",
        "interactivity/block_actions_button_ephemeral.bolt.json",
        "interactivity/block_actions_org_wide_install.bolt.json",
        "interactivity/view_submission.bolt.json",
        "interactivity/view_submission_org_wide_install.bolt.json",
    ):
        found.append(("payload", fixture(name)))
    for name in (
        "socket_mode/envelope_interactive_block_actions.docs.json",
        "socket_mode/envelope_interactive_block_actions_in_modal_large.sdk_test.json",
    ):
        found.append(("payload", fixture(name)["payload"]))
    for name in (
        "socket_mode/envelope_slash_commands.docs.json",
        "socket_mode/envelope_slash_commands.sdk_test.json",
    ):
        found.append(("form", {**fixture(name)["payload"], "command": "/earshot"}))
    for _, payload in found:
        if "response_url" in payload:
            payload["response_url"] = response_url
        payload.pop("response_urls", None)
        for action in payload.get("actions") or []:
            action.update(action_id="earshot_handled", value=str(mention_id))
        if isinstance(payload.get("view"), dict):
            payload["view"].update(
                callback_id="earshot_wrong_sentiment",
                private_metadata=json.dumps({"mention_id": mention_id}),
            )
    return found


def encode(kind: str, payload: Any, rng: random.Random) -> tuple[bytes, str]:
    if kind == "form":
        fields = payload if isinstance(payload, dict) else {"text": str(payload)}
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        body = urlencode(values, errors="surrogatepass")  # a lone surrogate: bytes not UTF-8
        raw = body.encode()
    else:
        raw = payload_body(payload)
    content_type = FORM
    roll = rng.random()
    if roll < 0.08:
        raw, content_type = json.dumps(payload).encode(), "application/json"
    elif roll < 0.14:
        content_type = rng.choice(["application/json", "text/plain", "", f"{FORM}; charset=utf-8"])
    elif roll < 0.24 and raw:
        at = rng.randrange(len(raw))
        raw = rng.choice([raw[:at], raw[:at] + b"\xff" + raw[at:], raw + b"&payload=x"])
    return raw, content_type


def interaction_errors() -> float:
    from earshot.listener import metrics

    total = 0.0
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if (
                sample.name == "earshot_slack_interactions_total"
                and sample.labels.get("outcome") == "error"
            ):
                total += sample.value
    return total


def test_fuzzed_real_payloads_never_crash_the_endpoint(
    store: Store, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    mention = Mention(
        source="hackernews",
        external_id="fuzz-1",
        url="https://news.ycombinator.com/item?id=1",
        text="apple support is awful",
        created_at=utcnow(),
        matched_query="apple",
        sentiment_label="negative",
    )
    store.ingest(None, [mention], None, lambda m: [("#cx-alerts", "alert")])
    assert mention.id is not None
    ui = interactivity(store, slack)
    rng = random.Random(SEED)
    sources = seeds(mention.id, slack.response_url)
    errors_before = interaction_errors()
    outcomes: Counter[tuple[str, int]] = Counter()
    now = int(time.time())
    caplog.set_level(logging.ERROR)
    for round_ in range(ROUNDS):
        kind, seed = rng.choice(sources)
        payload = seed if rng.random() < 0.1 else mutate(seed, rng)
        body, content_type = encode(kind, payload, rng)
        signing = rng.random()
        if signing < 0.75:
            headers = sign(body, now + round_ % 200)
        elif signing < 0.85:
            headers = {}
        elif signing < 0.95:
            headers = sign(body + b"x", now)
        else:
            headers = {"X-Slack-Signature": "v0=é", "X-Slack-Request-Timestamp": "١٢٣"}
        headers["content-type"] = content_type
        status, _, answer = ui.handle_http(body, headers)  # an exception fails the test
        signed = signing < 0.75
        outcomes[("signed" if signed else "unsigned", status)] += 1
        assert status != 500, (round_, body[:300], answer)
        assert status in ((200, 400) if signed else (401,)), (round_, status, body[:300], answer)
    print("fuzz outcomes:", dict(outcomes))
    assert outcomes[("signed", 200)] >= 50 and outcomes[("signed", 400)] >= 50
    assert interaction_errors() == errors_before  # nothing failed after the ack either
    # No listener or follow-up failed (slack-sdk's own log of a refused response_url is fine:
    # earshot counts it as a failed reply and carries on).
    failures = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("earshot", "slack_bolt"))
    ]
    assert failures == []
