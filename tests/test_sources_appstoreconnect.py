"""App Store Connect reviews: the signed token, paging, answered reviews, errors, credentials.

Every test runs against ``FakeAppStoreConnect`` (``tests/fakestores.py``), which refuses
what Apple refuses: a JWT with the wrong algorithm, audience, issuer or key, or that lives
more than 20 minutes. The contract cases (parse, cursor, empty page, errors, rate limits)
are in ``tests/test_source_contract.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session, select

from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import build, build_sources
from earshot.listener.models import Delivery, Mention
from earshot.listener.redaction import redact
from earshot.listener.sources.appstoreconnect import AppStoreConnectSource
from earshot.listener.sources.base import (
    BadPayloadError,
    FatalError,
    RateLimitedError,
    RateLimiter,
    SourceHttp,
)

from .contract import FakeTime
from .fakestores import (
    ASC_ORIGIN,
    FakeAppStoreConnect,
    FakeGooglePlay,
    Loopback,
    ec_key,
    pem,
    play_review,
    rsa_key,
    service_account,
)

APP = "682658836"
KEY = ec_key()
KEY_ID = "2X9R4HXF34"
ISSUER = "57246542-96fe-1a63-e053-0824d011072a"
ENV = {
    "APPSTORECONNECT_KEY_ID": KEY_ID,
    "APPSTORECONNECT_ISSUER_ID": ISSUER,
    "APPSTORECONNECT_PRIVATE_KEY": pem(KEY),
}


def fake_with_reviews() -> FakeAppStoreConnect:
    fake = FakeAppStoreConnect(KEY, KEY_ID, ISSUER)
    fake.add_review(
        APP,
        "r-3",
        "2026-11-30T10:00:00-08:00",
        rating=1,
        title="Charged twice",
        body="I was billed twice for the yearly plan and nobody answers. I want a refund.",
        territory="CAN",
    )
    fake.add_review(
        APP,
        "r-2",
        "2026-11-29T09:00:00-08:00",
        rating=2,
        title="Sync fails",
        body="Notes do not sync since the update.",
        territory="GBR",
        response="Fixed in 4.2.1, please update!",
        response_date="2026-11-29T12:30:00-08:00",
    )
    fake.add_review(APP, "r-1", "2026-11-28T08:00:00-08:00", rating=5, body="Love it")
    return fake


def source(
    fake: FakeAppStoreConnect,
    limiter: RateLimiter | None = None,
    *,
    private_key: str | None = None,
    **options: Any,
) -> AppStoreConnectSource:
    options.setdefault("app_id", APP)
    client = httpx.Client(transport=fake.transport)
    return AppStoreConnectSource(
        SourceHttp(client, limiter),
        key_id=KEY_ID,
        issuer_id=ISSUER,
        private_key=None if "private_key_file" in options else private_key or pem(KEY),
        backfill_seconds=30 * 86400,
        **options,
    )


def test_reads_every_page_newest_first_with_a_token_apple_accepts() -> None:
    fake = fake_with_reviews()
    result = source(fake, limit=2).poll(None, [])
    assert result.errors == [] and fake.refused == []
    assert [m.external_id for m in result.mentions] == ["r-3", "r-2", "r-1"]
    assert result.requests == 2  # two pages: limit 2, then the links.next page
    first = fake.requests[0]
    assert first.url.params["include"] == "response"
    assert first.url.params["sort"] == "-createdDate"
    assert first.url.params["limit"] == "2"
    token = first.headers["authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "appstoreconnect-v1" and claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 15 * 60
    # The token is reused, not signed again for every request.
    assert fake.requests[1].headers["authorization"] == first.headers["authorization"]
    by_id = {m.external_id: m for m in result.mentions}
    assert by_id["r-3"].rating == 1 and by_id["r-3"].site == "CAN"
    assert by_id["r-3"].title == "Charged twice" and by_id["r-3"].url.startswith("https://")


def test_a_review_answered_in_app_store_connect_arrives_handled() -> None:
    result = source(fake_with_reviews()).poll(None, [])
    by_id = {m.external_id: m for m in result.mentions}
    answered = by_id["r-2"]
    assert answered.status == "handled"
    assert answered.resolved_by == "App Store Connect"
    assert answered.resolved_at is not None
    assert answered.resolved_at.isoformat() == "2026-11-29T20:30:00+00:00"
    assert (
        answered.raw["response"]["attributes"]["responseBody"] == "Fixed in 4.2.1, please update!"
    )
    assert by_id["r-3"].status == "new" and by_id["r-3"].resolved_at is None


def test_the_next_poll_reads_only_what_is_newer() -> None:
    fake = fake_with_reviews()
    reader = source(fake, limit=2)
    first = reader.poll(None, [])
    fake.add_review(APP, "r-4", "2026-12-01T07:00:00-08:00", rating=4, body="Better now")
    sent = len(fake.requests)
    second = reader.poll(first.cursor, [])
    assert [m.external_id for m in second.mentions] == ["r-4"]
    assert len(fake.requests) - sent == 1, "stopped on the first page, at the known review"
    third = reader.poll(second.cursor, [])
    assert third.mentions == [] and third.cursor == second.cursor


@pytest.mark.parametrize(
    ("kind", "refusal"),
    [
        ("alg", "alg 'ES384', not ES256"),
        ("aud", "wrong aud"),
        ("exp", "exp more than 20 minutes ahead"),
        ("key", "InvalidSignatureError"),
        ("iss", "wrong iss"),
    ],
)
def test_the_fake_refuses_what_apple_refuses(kind: str, refusal: str) -> None:
    fake = fake_with_reviews()
    now = int(time.time())
    claims = {"iss": ISSUER, "iat": now, "exp": now + 600, "aud": "appstoreconnect-v1"}
    key: Any = KEY
    algorithm = "ES256"
    if kind == "alg":
        key, algorithm = ec.generate_private_key(ec.SECP384R1()), "ES384"
    elif kind == "aud":
        claims["aud"] = "appstoreconnect-v2"
    elif kind == "exp":
        claims["exp"] = now + 21 * 60
    elif kind == "key":
        key = ec_key()
    elif kind == "iss":
        claims["iss"] = "00000000-0000-0000-0000-000000000000"
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": KEY_ID, "typ": "JWT"})
    client = httpx.Client(transport=fake.transport)
    answer = client.get(
        f"{ASC_ORIGIN}/v1/apps/{APP}/customerReviews",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["code"] == "NOT_AUTHORIZED"
    assert fake.refused == [refusal]


def test_a_key_apple_does_not_know_is_a_clear_fatal_error_without_the_key() -> None:
    fake = fake_with_reviews()
    wrong = pem(ec_key())
    result = source(fake, private_key=wrong).poll(None, [])
    assert len(result.errors) == 1
    error = result.errors[0]
    assert isinstance(error, FatalError) and error.status_code == 401
    message = str(error)
    assert "APPSTORECONNECT_KEY_ID" in message and "NOT_AUTHORIZED" in message
    assert "PRIVATE KEY" not in message and wrong.splitlines()[1] not in message
    assert len(fake.requests) == 2, "a 401 makes a new token and asks once more, no more"
    assert result.mentions == [] and result.cursor == {}


def test_a_token_refused_once_is_made_again() -> None:
    fake = fake_with_reviews()
    reader = source(fake)
    real = fake.handle
    calls = []

    def revoke_first(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        if len(calls) == 1:
            return httpx.Response(401, json={"errors": [{"code": "NOT_AUTHORIZED"}]})
        return real(request)

    reader.http.client = httpx.Client(transport=httpx.MockTransport(revoke_first))
    reader.clock = lambda: time.time() + 1  # the new token differs from the refused one
    result = reader.poll(None, [])
    assert result.errors == [] and len(result.mentions) == 3
    assert calls[0] != calls[1]


def test_403_names_the_role_the_key_needs() -> None:
    fake = fake_with_reviews()
    fake.forbidden.add(APP)
    result = source(fake).poll(None, [])
    error = result.errors[0]
    assert isinstance(error, FatalError) and error.status_code == 403
    assert "Customer Support" in str(error) and "FORBIDDEN_ERROR" in str(error)


def test_an_unknown_app_is_a_404_that_says_which_id_to_use() -> None:
    result = source(fake_with_reviews(), app_id="1").poll(None, [])
    assert isinstance(result.errors[0], FatalError)
    assert "Apple ID" in str(result.errors[0])


def test_rate_limit_exceeded_is_rate_limited_and_a_spent_hour_pauses() -> None:
    fake = fake_with_reviews()
    fake.remaining = 1
    times = FakeTime()
    limiter = RateLimiter(None, clock=times.clock, sleep=times.sleep, max_wait=120)
    reader = source(fake, limiter, limit=2)
    result = reader.poll(None, [])
    # The first page said user-hour-rem:0: the next request waited a minute, then got 429.
    assert times.sleeps == [60.0]
    assert len(result.errors) == 1 and isinstance(result.errors[0], RateLimitedError)
    assert "RATE_LIMIT_EXCEEDED" in str(result.errors[0])
    assert result.mentions == [] and result.cursor == {}


def test_a_next_link_off_the_api_origin_is_not_followed() -> None:
    page = {
        "data": [],
        "links": {"next": "https://evil.test/v1/apps/682658836/customerReviews?cursor=x"},
    }
    fake = fake_with_reviews()
    reader = source(fake)
    reader.http.client = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=page))
    )
    result = reader.poll(None, [])
    assert isinstance(result.errors[0], BadPayloadError)


def test_malformed_reviews_are_counted_skips() -> None:
    fake = fake_with_reviews()

    def spoil(request: httpx.Request) -> httpx.Response:
        body = fake.handle(request).json()
        body["data"][0]["attributes"]["rating"] = "five"
        body["data"][1]["attributes"]["createdDate"] = "yesterday"
        return httpx.Response(200, json=body)

    reader = source(fake)
    reader.http.client = httpx.Client(transport=httpx.MockTransport(spoil))
    result = reader.poll(None, [])
    assert result.errors == []
    assert result.skipped == 2 and [m.external_id for m in result.mentions] == ["r-1"]


# -- credentials: shape checked when the source is made, never shown -------------------------


def build_one(env: dict[str, str], tmp_path: Path) -> None:
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["acme"]},
            "sources": [{"type": "appstoreconnect", "app_id": APP}],
        }
    )
    build_sources(settings, httpx.Client(), env=env)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"APPSTORECONNECT_KEY_ID": ""}, "needs APPSTORECONNECT_KEY_ID"),
        ({"APPSTORECONNECT_PRIVATE_KEY": ""}, "APPSTORECONNECT_PRIVATE_KEY_FILE"),
        ({"APPSTORECONNECT_KEY_ID": "key-1"}, "APPSTORECONNECT_KEY_ID: not a key id"),
        ({"APPSTORECONNECT_ISSUER_ID": "acme"}, "APPSTORECONNECT_ISSUER_ID: not an issuer id"),
        ({"APPSTORECONNECT_PRIVATE_KEY": "MIGTAgEAMBMGByqGSM49"}, "not a PEM private key"),
        ({"APPSTORECONNECT_PRIVATE_KEY": pem(rsa_key())}, "not an EC P-256 private key"),
        (
            {"APPSTORECONNECT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END"},
            "does not parse",
        ),
        ({"APPSTORECONNECT_PRIVATE_KEY_FILE": "/nonexistent/AuthKey.p8"}, "not both"),
    ],
)
def test_credentials_are_checked_for_shape_without_showing_them(
    change: dict[str, str], expected: str, tmp_path: Path
) -> None:
    env = {**ENV, **change}
    with pytest.raises(ValueError) as caught:
        build_one(env, tmp_path)
    message = str(caught.value)
    assert expected in message
    for value in env.values():
        if len(value) > 12:
            assert value not in message
            assert value.splitlines()[1 if "\n" in value else 0] not in message


def test_a_key_pasted_on_one_line_with_escaped_newlines_is_read(tmp_path: Path) -> None:
    one_line = pem(KEY).strip().replace("\n", "\\n")
    assert "\n" not in one_line
    build_one({**ENV, "APPSTORECONNECT_PRIVATE_KEY": one_line}, tmp_path)


def test_a_key_read_from_its_file_is_redacted_like_one_from_the_environment(
    tmp_path: Path,
) -> None:
    key = pem(ec_key())
    path = tmp_path / "AuthKey_2X9R4HXF34.p8"
    path.write_text(key)
    assert redact(f"echoed: {key}") == f"echoed: {key}"
    source(fake_with_reviews(), private_key=None, private_key_file=str(path))
    assert key not in redact(f"echoed: {key}")


def test_the_key_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "AuthKey_2X9R4HXF34.p8"
    path.write_text(pem(KEY))
    env = {k: v for k, v in ENV.items() if k != "APPSTORECONNECT_PRIVATE_KEY"}
    build_one({**env, "APPSTORECONNECT_PRIVATE_KEY_FILE": str(path)}, tmp_path)
    with pytest.raises(ValueError, match=r"cannot read .*missing\.p8"):
        build_one(
            {**env, "APPSTORECONNECT_PRIVATE_KEY_FILE": str(tmp_path / "missing.p8")}, tmp_path
        )


# -- end to end: an answered review is stored, not alerted ----------------------------------


def test_the_pipeline_alerts_the_unanswered_review_only(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["acme"]},
            "slack": {"alerts_channel": "#cx-alerts", "amplify_channel": "#cx-wins"},
            "sources": [{"type": "appstoreconnect", "app_id": APP, "backfill": "30d"}],
        }
    )
    fake = fake_with_reviews()
    fake.apps[APP][1]["attributes"]["rating"] = 1
    fake.apps[APP][1]["attributes"]["body"] = "The app crashes and deleted my notes. Refund me."
    app = build(settings, Secrets(), database=database_url, transport=fake.transport)
    try:
        report = app.pipeline.poll(app.sources[0], force=True)
        assert report.stored == 3 and report.errors == []
        with Session(app.store.engine) as session:
            mentions = {m.external_id: m for m in session.exec(select(Mention)).all()}
            alerted = {
                d.mention_id for d in session.exec(select(Delivery)).all() if d.kind == "alert"
            }
        assert mentions["r-2"].status == "handled"
        assert mentions["r-2"].sentiment_label is not None, "classified all the same"
        assert mentions["r-2"].id not in alerted, "an answered review is not alerted"
        assert mentions["r-3"].id in alerted, "the unanswered complaint is"
    finally:
        app.close()


def test_a_refused_poll_logs_neither_the_token_nor_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = fake_with_reviews()
    wrong = pem(ec_key())
    with caplog.at_level("DEBUG"):
        result = source(fake, private_key=wrong).poll(None, [])
    assert result.errors
    text = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(map(str, result.errors))
    tokens = {r.headers["authorization"].removeprefix("Bearer ") for r in fake.requests}
    assert tokens and not any(token in text for token in tokens)
    assert not any(line in text for line in wrong.splitlines()[1:-1])


# -- the real process against loopback fakes of both stores ---------------------------------


def test_earshot_run_once_reads_both_stores_and_alerts_only_the_unanswered(
    tmp_path: Path,
) -> None:
    play_key = rsa_key()
    apple = fake_with_reviews()
    apple.apps[APP][1]["attributes"]["body"] = "Sync is broken and support never answers."
    with Loopback(apple.handle) as asc_server:
        play = FakeGooglePlay(service_account(play_key), play_key)
        with Loopback(lambda request: play.handle(request)) as play_server:
            play.token_url = f"{play_server.base_url}/token"
            now = int(time.time())
            play.reviews["com.acme.notes"] = [
                play_review(
                    "g-2",
                    now - 600,
                    "Crashes on start\tThe app crashes every time since the update.",
                    stars=1,
                ),
                play_review(
                    "g-1",
                    now - 3600,
                    "Lost all my notes, awful, I want my money back.",
                    stars=1,
                    reply_seconds=now - 1800,
                ),
            ]
            config = tmp_path / "earshot.toml"
            config.write_text(
                f"""
[product]
name = "Acme Notes"
queries = ["acme"]

[storage]
path = "{tmp_path / "earshot.db"}"

[http]
enabled = false

[slack]
alerts_channel = "#cx-alerts"
amplify_channel = "#cx-wins"

[[sources]]
type = "appstoreconnect"
app_id = "{APP}"
base_url = "{asc_server.base_url}"
backfill = "30d"

[[sources]]
type = "googleplay"
package_name = "com.acme.notes"
base_url = "{play_server.base_url}"
backfill = "7d"
"""
            )
            account = service_account(play_key, token_uri=play.token_url)
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("SLACK_", "EARSHOT_", "DATABASE_URL", "GOOGLE_"))
            }
            env.update(ENV)
            env["GOOGLEPLAY_SERVICE_ACCOUNT_JSON"] = json.dumps(account)
            env["EARSHOT_LOG_FORMAT"] = "json"
            done = subprocess.run(
                [
                    str(Path(sys.executable).parent / "earshot"),
                    "run",
                    "--once",
                    "--config",
                    str(config),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
    assert done.returncode == 0, done.stderr[-2000:]
    assert apple.refused == [] and play.refused == []
    out = done.stdout
    assert "Charged twice" in out, "the unanswered App Store complaint is alerted"
    assert "Crashes on start" in out, "the unanswered Play complaint is alerted"
    assert "Sync is broken" not in out, "the answered App Store review is not"
    assert "Lost all my notes" not in out, "the replied Play review is not"
    assert pem(KEY).splitlines()[1] not in done.stdout + done.stderr
    assert play_key and "BEGIN PRIVATE KEY" not in done.stdout + done.stderr


def test_earshot_check_names_the_missing_credential_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from earshot.config.cli import app

    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("APPSTORECONNECT_PRIVATE_KEY_FILE", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'earshot.db'}")
    config = tmp_path / "earshot.toml"
    config.write_text(
        '[product]\nname = "Acme"\nqueries = ["acme"]\n'
        f'[[sources]]\ntype = "appstoreconnect"\napp_id = "{APP}"\n'
    )
    runner = CliRunner()
    env = {**ENV, "APPSTORECONNECT_ISSUER_ID": "not-a-uuid"}
    result = runner.invoke(app, ["check", "--config", str(config)], env=env)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "APPSTORECONNECT_ISSUER_ID: not an issuer id (a UUID)" in result.stderr
    assert "not-a-uuid" not in result.output and pem(KEY).splitlines()[1] not in result.output
    result = runner.invoke(app, ["check", "--config", str(config)], env=ENV)
    assert result.exit_code == 0, result.output
    assert pem(KEY).splitlines()[1] not in result.output and ISSUER not in result.output
