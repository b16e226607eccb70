"""Google Play reviews: the service-account token exchange, paging, replies, errors, keys.

Every test runs against ``FakeGooglePlay`` (``tests/fakestores.py``), which refuses what
Google refuses: an assertion not signed RS256 by the account's key, for another audience,
or living more than an hour; an access token it did not issue. The contract cases (parse,
cursor, empty page, errors, rate limits) are in ``tests/test_source_contract.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from sqlmodel import Session, select

from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import build, build_sources
from earshot.listener.models import Delivery, Mention
from earshot.listener.sources.base import FatalError, RateLimitedError, SourceHttp
from earshot.listener.sources.googleplay import GooglePlaySource

from .fakestores import (
    GOOGLE_SCOPE,
    GOOGLE_TOKEN_URL,
    JWT_BEARER,
    FakeGooglePlay,
    ec_key,
    pem,
    play_review,
    rsa_key,
    service_account,
)

PACKAGE = "com.acme.notes"
KEY = rsa_key()
ACCOUNT = service_account(KEY)
NOW = int(time.time())


def fake_with_reviews(account: dict[str, Any] = ACCOUNT) -> FakeGooglePlay:
    fake = FakeGooglePlay(account, KEY)
    fake.reviews[PACKAGE] = [
        play_review(
            "g-3",
            NOW - 600,
            "Charged twice\tI was billed twice this month and support does not answer.",
            stars=1,
        ),
        play_review("g-2", NOW - 3600, "Sync is slow", stars=2, reply_seconds=NOW - 1800),
        play_review("g-1", NOW - 7200, "Crashes on my tablet", stars=1, reply_seconds=NOW - 86400),
    ]
    return fake


def source(fake: FakeGooglePlay, account: Any = ACCOUNT, **options: Any) -> GooglePlaySource:
    options.setdefault("package_name", PACKAGE)
    client = httpx.Client(transport=fake.transport)
    raw = account if isinstance(account, str) else json.dumps(account)
    return GooglePlaySource(
        SourceHttp(client), service_account_json=raw, backfill_seconds=7 * 86400, **options
    )


def test_trades_a_signed_assertion_for_a_token_and_reads_every_page() -> None:
    fake = fake_with_reviews()
    reader = source(fake, max_results=2)
    result = reader.poll(None, [])
    assert result.errors == [] and fake.refused == []
    assert [m.external_id for m in result.mentions] == ["g-3", "g-2", "g-1"]
    exchange, first, second = fake.requests
    form = {k: v[0] for k, v in parse_qs(exchange.content.decode()).items()}
    assert form["grant_type"] == JWT_BEARER
    head = jwt.get_unverified_header(form["assertion"])
    assert head == {"alg": "RS256", "typ": "JWT", "kid": ACCOUNT["private_key_id"]}
    claims = fake.exchanges[0]
    assert claims["iss"] == ACCOUNT["client_email"] and claims["scope"] == GOOGLE_SCOPE
    assert claims["aud"] == GOOGLE_TOKEN_URL and claims["exp"] - claims["iat"] == 3600
    assert first.url.params["maxResults"] == "2" and "token" not in first.url.params
    assert second.url.params["token"] == "t2"
    assert first.headers["authorization"] == second.headers["authorization"]
    # The access token is kept: a second poll exchanges nothing.
    reader.poll(result.cursor, [])
    assert len(fake.exchanges) == 1


def test_a_reply_newer_than_the_review_makes_it_handled() -> None:
    result = source(fake_with_reviews()).poll(None, [])
    by_id = {m.external_id: m for m in result.mentions}
    assert by_id["g-2"].status == "handled"
    assert by_id["g-2"].resolved_by == "Google Play Console"
    assert by_id["g-2"].resolved_at is not None
    assert int(by_id["g-2"].resolved_at.timestamp()) == NOW - 1800
    # Edited after the reply: the reply answers an older text, so it is not handled.
    assert by_id["g-1"].status == "new" and by_id["g-1"].resolved_at is None
    assert by_id["g-3"].status == "new"
    assert by_id["g-3"].title == "Charged twice"
    assert by_id["g-3"].text.startswith("I was billed twice")
    assert by_id["g-3"].site == "en · v2.0.1"
    assert by_id["g-3"].rating == 1 and by_id["g-3"].language is None


def test_translation_language_is_asked_for_and_is_the_text_language() -> None:
    fake = fake_with_reviews()
    result = source(fake, translation_language="de_DE").poll(None, [])
    assert fake.requests[1].url.params["translationLanguage"] == "de_DE"
    assert {m.language for m in result.mentions} == {"de"}


def test_the_next_poll_reads_only_what_is_newer() -> None:
    fake = fake_with_reviews()
    reader = source(fake, max_results=2)
    first = reader.poll(None, [])
    fake.reviews[PACKAGE].insert(0, play_review("g-4", NOW - 60, "New crash", stars=1))
    sent = len(fake.requests)
    second = reader.poll(first.cursor, [])
    assert [m.external_id for m in second.mentions] == ["g-4"]
    assert len(fake.requests) - sent == 1, "stopped on the first page, at the known review"
    assert reader.poll(second.cursor, []).mentions == []


def assertion_answer(fake: FakeGooglePlay, assertion: str) -> httpx.Response:
    client = httpx.Client(transport=fake.transport)
    return client.post(GOOGLE_TOKEN_URL, data={"grant_type": JWT_BEARER, "assertion": assertion})


@pytest.mark.parametrize(
    ("kind", "description"),
    [
        ("alg", "Invalid JWT Signature."),
        ("key", "Invalid JWT Signature."),
        ("aud", "Failed audience check"),
        ("exp", "short-lived token (60 minutes)"),
        ("iss", "account not found"),
    ],
)
def test_the_fake_refuses_a_bad_assertion_as_google_does(kind: str, description: str) -> None:
    fake = fake_with_reviews()
    claims: dict[str, Any] = {
        "iss": ACCOUNT["client_email"],
        "scope": GOOGLE_SCOPE,
        "aud": GOOGLE_TOKEN_URL,
        "iat": NOW,
        "exp": NOW + 3600,
    }
    key: Any = KEY
    algorithm = "RS256"
    if kind == "alg":
        key, algorithm = "not-a-key-but-hs256-accepts-any-string-as-secret", "HS256"
    elif kind == "key":
        key = rsa_key()
    elif kind == "aud":
        claims["aud"] = "https://accounts.google.com/o/oauth2/token"
    elif kind == "exp":
        claims["exp"] = NOW + 3601
    elif kind == "iss":
        claims["iss"] = "someone@else.iam.gserviceaccount.com"
    answer = assertion_answer(fake, jwt.encode(claims, key, algorithm=algorithm))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert description in answer.json()["error_description"]
    assert fake.tokens == {}


def test_a_deleted_key_is_a_clear_fatal_error_without_the_key() -> None:
    fake = fake_with_reviews()
    stale = service_account(rsa_key())  # same account, a key Google does not know
    result = source(fake, stale).poll(None, [])
    error = result.errors[0]
    assert isinstance(error, FatalError) and error.status_code == 400
    message = str(error)
    assert "invalid_grant" in message and "Invalid JWT Signature" in message
    assert stale["private_key"].splitlines()[1] not in message
    assert result.mentions == [] and result.cursor == {}


def test_an_access_token_refused_is_renewed_once() -> None:
    fake = fake_with_reviews()
    reader = source(fake)
    reader.poll(None, [])
    fake.tokens.clear()  # revoked on Google's side
    result = reader.poll(None, [])
    assert result.errors == [] and len(result.mentions) == 3
    assert len(fake.exchanges) == 2


def test_403_says_which_permission_is_missing() -> None:
    fake = fake_with_reviews()
    fake.packages = set()
    error = source(fake).poll(None, []).errors[0]
    assert isinstance(error, FatalError) and error.status_code == 403
    assert "Reply to reviews" in str(error) and ACCOUNT["client_email"] not in str(error)
    fake.service_disabled = True
    error = source(fake).poll(None, []).errors[0]
    assert "Android Developer API is not enabled" in str(error)


def test_the_hourly_quota_is_rate_limited() -> None:
    fake = fake_with_reviews()
    fake.hourly_reads = 0
    result = source(fake).poll(None, [])
    error = result.errors[0]
    assert isinstance(error, RateLimitedError) and error.retry_after == 60.0
    assert "RESOURCE_EXHAUSTED" in str(error)


def test_malformed_reviews_are_counted_skips() -> None:
    fake = fake_with_reviews()
    fake.reviews[PACKAGE][0]["comments"][0]["userComment"]["starRating"] = 0
    fake.reviews[PACKAGE][1]["comments"] = []
    result = source(fake).poll(None, [])
    assert result.errors == []
    assert result.skipped == 2 and [m.external_id for m in result.mentions] == ["g-1"]


# -- credentials: shape checked when the source is made, never shown -------------------------


def build_one(env: dict[str, str]) -> None:
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["acme"]},
            "sources": [{"type": "googleplay", "package_name": PACKAGE}],
        }
    )
    build_sources(settings, httpx.Client(), env=env)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "needs a service account key"),
        ('{"type": "service_account", ', "not JSON (line 1"),
        (json.dumps({**ACCOUNT, "type": "authorized_user"}), "type is 'authorized_user'"),
        (json.dumps({**ACCOUNT, "client_email": "acme"}), "client_email is missing"),
        (json.dumps({**ACCOUNT, "private_key": pem(ec_key())}), "not an RSA key"),
        (json.dumps({**ACCOUNT, "private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"}), "not a PEM"),
    ],
)
def test_the_key_is_checked_for_shape_without_showing_it(value: str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_one({"GOOGLEPLAY_SERVICE_ACCOUNT_JSON": value} if value else {})
    message = str(caught.value)
    assert expected in message
    assert "PRIVATE KEY" not in message and "MIIE" not in message


def test_the_key_file_from_google_application_credentials(tmp_path: Path) -> None:
    path = tmp_path / "acme-app-1234.json"
    path.write_text(json.dumps(ACCOUNT))
    build_one({"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS: cannot read"):
        build_one({"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "gone.json")})


# -- end to end: a replied review is stored, not alerted -------------------------------------


def test_the_pipeline_alerts_the_unanswered_review_only(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLEPLAY_SERVICE_ACCOUNT_JSON", json.dumps(ACCOUNT))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["acme"]},
            "slack": {"alerts_channel": "#cx-alerts", "amplify_channel": "#cx-wins"},
            "sources": [{"type": "googleplay", "package_name": PACKAGE, "backfill": "7d"}],
        }
    )
    fake = fake_with_reviews()
    fake.reviews[PACKAGE][1] = play_review(
        "g-2",
        NOW - 3600,
        "The app crashed and deleted all my notes. Terrible, I want a refund.",
        stars=1,
        reply_seconds=NOW - 1800,
    )
    app = build(settings, Secrets(), database=database_url, transport=fake.transport)
    try:
        report = app.pipeline.poll(app.sources[0], force=True)
        assert report.stored == 3 and report.errors == []
        with Session(app.store.engine) as session:
            mentions = {m.external_id: m for m in session.exec(select(Mention)).all()}
            alerted = {
                d.mention_id for d in session.exec(select(Delivery)).all() if d.kind == "alert"
            }
        assert mentions["g-2"].status == "handled"
        assert mentions["g-2"].id not in alerted, "a replied review is not alerted"
        assert mentions["g-3"].id in alerted, "the unanswered complaint is"
    finally:
        app.close()


def test_a_refused_exchange_logs_neither_the_assertion_nor_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = fake_with_reviews()
    stale = service_account(rsa_key())
    with caplog.at_level("DEBUG"):
        result = source(fake, stale).poll(None, [])
    assert result.errors
    text = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(map(str, result.errors))
    form = parse_qs(fake.requests[0].content.decode())
    assert form["assertion"][0] not in text
    assert not any(line in text for line in stale["private_key"].splitlines()[1:-1])


# -- earshot check: the key's shape, one line, never the key --------------------------------


def test_earshot_check_refuses_a_bad_key_in_one_line_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from earshot.config.cli import app

    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLEPLAY_SERVICE_ACCOUNT_JSON"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'earshot.db'}")
    config = tmp_path / "earshot.toml"
    config.write_text(
        '[product]\nname = "Acme"\nqueries = ["acme"]\n'
        '[[sources]]\ntype = "googleplay"\npackage_name = "com.acme.notes"\n'
    )
    runner = CliRunner()
    bad = json.dumps({**ACCOUNT, "private_key": ACCOUNT["private_key"][:400]})
    result = runner.invoke(
        app, ["check", "--config", str(config)], env={"GOOGLEPLAY_SERVICE_ACCOUNT_JSON": bad}
    )
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "GOOGLEPLAY_SERVICE_ACCOUNT_JSON: the PEM private key does not parse" in result.stderr
    assert ACCOUNT["private_key"].splitlines()[1] not in result.output
    good = json.dumps(ACCOUNT)
    result = runner.invoke(
        app, ["check", "--config", str(config)], env={"GOOGLEPLAY_SERVICE_ACCOUNT_JSON": good}
    )
    assert result.exit_code == 0, result.output
    assert ACCOUNT["private_key"].splitlines()[1] not in result.output
    assert ACCOUNT["client_email"] not in result.output
