"""Google Play reviews of your own app, through the Android Publisher API (Reply to Reviews).

``GET {base_url}/androidpublisher/v3/applications/{package_name}/reviews?maxResults=100``

Each review keeps its star rating, app version, device, reviewer language and the team's
reply (``developerComment``), all in ``raw``; the language, version and device are also
shown as the mention's ``site``. A review whose reply is at least as recent as the review
arrives as handled (``Mention.status = "handled"``, ``resolved_at`` = the reply's time,
``resolved_by`` = ``"Google Play Console"``): stored and classified, never alerted as
unanswered. A review edited after the reply is not handled: the reply answers an older
text. The text comes as ``title<TAB>body`` when the user gave a title; it is split.

Google lists only reviews created or modified in the last seven days, the most recently
created or modified first, paged with ``tokenPagination.nextPageToken`` (sent back as
``token``). Cursor: the newest ``userComment.lastModified`` read (unix seconds) and the
review ids modified in that second; a poll reads pages until it meets a review at or before
it, at most ``max_pages`` pages. ``translation_language`` asks Google to translate the text
(the original is in ``raw``), and then is the mention's language.

Auth: a service account (its JSON key, from ``GOOGLE_APPLICATION_CREDENTIALS`` as a file
path or ``GOOGLEPLAY_SERVICE_ACCOUNT_JSON`` as the JSON itself) invited in Play Console
with the "Reply to reviews" permission. The source signs a JWT with the account's key
(RS256; ``iss`` = ``client_email``, ``scope`` = the androidpublisher scope, ``aud`` = the
token URL, ``exp`` one hour after ``iat``) and trades it at ``token_uri`` for an access
token (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``), renewed before it
expires or when the API answers 401.

Budget: 200 GET requests per hour per app; the source paces itself at 3 a minute.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from pydantic import Field

from .. import reach
from ..models import Mention, MentionStatus
from . import auth
from .base import (
    BadPayloadError,
    FatalError,
    PollResult,
    RateLimitedError,
    SourceError,
    SourceOptions,
    decode_json,
    from_unix,
    logger,
    parse_retry_after,
    text_of,
)
from .reviews import NewestFirstReviews

SCOPE = "https://www.googleapis.com/auth/androidpublisher"
TOKEN_URL = "https://oauth2.googleapis.com/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Google's maximum lifetime of the signed assertion.
ASSERTION_LIFETIME = 3600
#: Shown as who handled a review replied to in Play Console.
RESOLVER = "Google Play Console"
#: When a 429 gives no Retry-After: the quota is per hour, so not at once.
QUOTA_WAIT = 60.0

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PACKAGE = r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$"

UNAUTHORIZED = (
    "Google Play refused the access token (401 UNAUTHENTICATED): check the service "
    "account key is current (IAM > Service accounts > Keys)"
)
FORBIDDEN = (
    "Google Play: the service account may not read this app's reviews (403 {status}): "
    "invite its client_email in Play Console (Users and permissions) with the app's "
    "'Reply to reviews' permission"
)
DISABLED = (
    "Google Play: the Google Play Android Developer API is not enabled in the service "
    "account's Cloud project (403 {status}): enable it in APIs & Services"
)


def _errors(response: httpx.Response) -> SourceError | None:
    """Android Publisher's error answers: ``{"error": {"code", "message", "status"}}``."""
    status = response.status_code
    try:
        error = response.json().get("error")
        error = error if isinstance(error, dict) else {}
    except Exception:
        error = {}
    kind = re.sub(r"[^A-Z_]", "", str(error.get("status", "")))[:40]
    message = str(error.get("message", ""))
    if status == 401:
        return FatalError(f"{UNAUTHORIZED} [{kind or status}]", status_code=status)
    if status == 403:
        if "has not been used" in message or "is disabled" in message or kind == "SERVICE_DISABLED":
            return FatalError(DISABLED.format(status=kind or status), status_code=status)
        return FatalError(FORBIDDEN.format(status=kind or status), status_code=status)
    if status == 404:
        return FatalError(
            "Google Play: no app with this package_name that the service account can see (404)",
            status_code=status,
        )
    if status == 429:
        wait = parse_retry_after(response.headers.get("retry-after"))
        where = str(response.request.url).split("?", 1)[0]
        return RateLimitedError(
            f"429 {kind or 'RESOURCE_EXHAUSTED'}: GET {where} (200 reads per hour per app)",
            status_code=status,
            retry_after=wait if wait is not None else QUOTA_WAIT,
        )
    return None


class GooglePlaySource(NewestFirstReviews):
    """Reviews of one Android app, with the team's replies."""

    type = "googleplay"
    needs_query = False
    default_base_url = "https://androidpublisher.googleapis.com"
    #: Documented: 200 GET requests per hour per app.
    default_requests_per_minute = 3.0
    secrets: ClassVar[Mapping[str, str]] = {
        "service_account_json": "GOOGLEPLAY_SERVICE_ACCOUNT_JSON",
        "credentials_file": "GOOGLE_APPLICATION_CREDENTIALS",
    }

    class Options(SourceOptions):
        package_name: str = Field(pattern=_PACKAGE, max_length=255)
        translation_language: str | None = Field(None, pattern=r"^[a-z]{2,3}([_-][A-Za-z]{2})?$")
        max_results: int = Field(100, ge=1, le=100)
        max_pages: int = Field(10, ge=1, le=100)
        #: The OAuth token endpoint (default: the key's ``token_uri``).
        token_url: str | None = Field(None, pattern=r"^https?://")

    def __init__(
        self,
        *args: Any,
        package_name: str,
        translation_language: str | None = None,
        max_results: int = 100,
        max_pages: int = 10,
        token_url: str | None = None,
        service_account_json: str | None = None,
        credentials_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not re.match(_PACKAGE, package_name or ""):
            raise ValueError(f"googleplay: not a package name: {package_name!r}")
        self.package_name = package_name
        self.translation_language = translation_language
        self.max_results = max_results
        self.max_pages = max_pages
        account = _service_account(service_account_json, credentials_file)
        self.client_email: str = account["client_email"]
        self._key_id = text_of(account.get("private_key_id"))
        self._key = account["key"]
        self.keep_secret(text_of(account.get("private_key")), service_account_json)
        uri = text_of(account.get("token_uri"))
        self.token_url = token_url or (uri if uri.startswith(("https://", "http://")) else "")
        self.token_url = self.token_url or TOKEN_URL
        self._tokens = auth.TokenCache(self._fetch_token, self.clock)

    @classmethod
    def default_name(cls, options: Mapping[str, Any]) -> str:
        return f"googleplay-{options.get('package_name')}"

    # -- auth -----------------------------------------------------------------------------

    def assertion(self) -> str:
        """The signed JWT traded for an access token."""
        now = int(self.clock())
        claims = {
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        headers = {"typ": "JWT"}
        if self._key_id:
            headers["kid"] = self._key_id
        return auth.sign(claims, self._key, "RS256", headers)

    def _fetch_token(self) -> tuple[str, float]:
        what = "POST Google OAuth token"
        status, data = auth.post_form(
            self.http,
            self.token_url,
            {"grant_type": GRANT_TYPE, "assertion": self.assertion()},
            what,
        )
        if status >= 400:
            error = data if isinstance(data, dict) else {}
            code = re.sub(r"[^a-z_]", "", str(error.get("error", "")))[:40] or str(status)
            detail = " ".join(str(error.get("error_description", "")).split())[:160]
            raise FatalError(
                f"Google refused the service account's token request ({status} {code}"
                f"{': ' + detail if detail else ''}): check the JSON key is current and its "
                "client_email exists (a deleted key answers 'Invalid JWT Signature')",
                status_code=status,
            )
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise BadPayloadError("Google OAuth token: answer has no access_token")
        self.keep_secret(token, slot="token")
        lifetime = data.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
            lifetime = 3600.0
        return token, float(lifetime)

    def _get(self, url: str, params: Mapping[str, Any]) -> Any:
        """GET a page with the access token; a 401 gets a new token and asks once more."""
        for attempt in (1, 2):
            token = self._tokens.get()
            try:
                response = self.http.get(
                    url, params=params, headers={"Authorization": f"Bearer {token}"}, errors=_errors
                )
            except FatalError as exc:
                if exc.status_code != 401 or attempt == 2:
                    raise
                logger.info("%s: access token refused (401); getting a new one", self.name)
                self._tokens.clear(token)
                continue
            return decode_json(response)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- polling --------------------------------------------------------------------------

    @property
    def unit(self) -> str:
        return f"googleplay {self.package_name}"

    def read_since(self, since: float, known: set[str], result: PollResult) -> list[Mention]:
        url = f"{self.base_url}/androidpublisher/v3/applications/{self.package_name}/reviews"
        params: dict[str, Any] = {"maxResults": self.max_results}
        if self.translation_language:
            params["translationLanguage"] = self.translation_language
        reviews: list[Mention] = []
        seen: set[str] = set()
        tokens: set[str] = set()
        for _page in range(self.max_pages):
            data = self._get(url, params)
            if not isinstance(data, dict):
                raise BadPayloadError("googleplay: answer is not an object")
            items = data.get("reviews", [])  # an empty list is sent as no key at all
            if not isinstance(items, list):
                raise BadPayloadError("googleplay: 'reviews' is not a list")
            reached = False
            for item in items:
                review = self.parse_item(result, self._mention, item)
                if review is None:
                    continue
                stamp = int(review.created_at.timestamp())
                if stamp < int(since) or (stamp == int(since) and review.external_id in known):
                    reached = True
                    continue
                if review.external_id not in seen:
                    seen.add(review.external_id)
                    reviews.append(review)
            paging = data.get("tokenPagination")
            token = paging.get("nextPageToken") if isinstance(paging, dict) else None
            if reached or not isinstance(token, str) or not token or token in tokens:
                return reviews
            tokens.add(token)
            params = {**params, "token": token}
        logger.warning(
            "%s: stopped after max_pages=%d pages; older new reviews are not read",
            self.name,
            self.max_pages,
        )
        return reviews

    def _mention(self, item: Any) -> Mention:
        review_id = item["reviewId"]
        comments = item["comments"]
        user = next(c["userComment"] for c in comments if "userComment" in c)
        modified = _timestamp(user["lastModified"])
        rating = user.get("starRating")
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise ValueError(f"no starRating: {rating!r:.20}")
        text = user["text"]
        if not isinstance(text, str):
            raise ValueError("no text")
        title, _, body = text.partition("\t") if "\t" in text else ("", "", text)
        reply = next(
            (c["developerComment"] for c in comments if "developerComment" in c),
            None,
        )
        mention = self.mention(
            external_id=review_id,
            url=(
                f"https://play.google.com/store/apps/details?id={self.package_name}"
                f"&reviewId={review_id}"
            ),
            author=text_of(item.get("authorName")),
            site=_site(user),
            title=title.strip(),
            text=body.strip(),
            created_at=from_unix(modified),
            rating=rating,
            language=_language(self.translation_language),
            raw=item,
            **reach.googleplay(user),
        )
        if isinstance(reply, dict):
            try:
                replied = _timestamp(reply["lastModified"])
            except (KeyError, TypeError, ValueError, OverflowError):
                replied = None
            if replied is not None and replied >= modified:
                mention.status = MentionStatus.HANDLED.value
                mention.resolved_by = RESOLVER
                mention.resolved_at = from_unix(replied)
        return mention


def _timestamp(value: Any) -> float:
    """Unix seconds from Google's ``Timestamp`` (``{"seconds": "1443676826", "nanos": 7}``)."""
    if not isinstance(value, dict):
        raise ValueError("not a Timestamp")
    seconds = value.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, str | int):
        raise ValueError("no seconds")
    nanos = value.get("nanos", 0)
    nanos = nanos if isinstance(nanos, int) and not isinstance(nanos, bool) else 0
    stamp = int(seconds) + nanos / 1e9
    from_unix(stamp)  # raises for a time no datetime can hold
    return stamp


def _site(user: Mapping[str, Any]) -> str:
    """``en · v1.2.3 · Sony E5333 (Xperia C4 Dual)``: what a reader wants next to a review."""
    parts = []
    language = text_of(user.get("reviewerLanguage"))
    if language:
        parts.append(language)
    version = text_of(user.get("appVersionName"))
    if version:
        parts.append(f"v{version}")
    device = user.get("deviceMetadata")
    if isinstance(device, dict) and text_of(device.get("productName")):
        maker = text_of(device.get("manufacturer"))
        parts.append(f"{maker} {device['productName']}".strip())
    elif text_of(user.get("device")):
        parts.append(text_of(user.get("device")))
    return " · ".join(parts)[:255]


def _language(translation: str | None) -> str | None:
    """The text's language when Google translated it, else unknown (``reviewerLanguage`` is
    the device's setting, not necessarily the review's)."""
    return translation.replace("_", "-").split("-")[0].lower() if translation else None


def _service_account(
    service_account_json: str | None, credentials_file: str | None
) -> dict[str, Any]:
    """The service account's key, checked for shape (values never shown)."""
    if service_account_json:
        what, text = "GOOGLEPLAY_SERVICE_ACCOUNT_JSON", service_account_json
    elif credentials_file:
        what = "GOOGLE_APPLICATION_CREDENTIALS"
        text = auth.read_secret_file(credentials_file, what)
    else:
        raise ValueError(
            "googleplay needs a service account key: GOOGLE_APPLICATION_CREDENTIALS (the JSON "
            "key file's path) or GOOGLEPLAY_SERVICE_ACCOUNT_JSON (its content)"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not JSON (line {exc.lineno} column {exc.colno})") from None
    except ValueError:
        raise ValueError(f"{what}: not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what}: not a JSON object")
    kind = data.get("type")
    if kind != "service_account":
        shown = re.sub(r"[^a-z_]", "", str(kind))[:40] if isinstance(kind, str) else "missing"
        raise ValueError(
            f"{what}: type is {shown or 'missing'!r}, not 'service_account' (create a JSON key "
            "for a service account, not an OAuth client)"
        )
    email = data.get("client_email")
    if not isinstance(email, str) or not _EMAIL.match(email):
        raise ValueError(f"{what}: client_email is missing or not an email address")
    key = data.get("private_key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what}: private_key is missing")
    account = dict(data)
    account["key"] = auth.load_rsa_key(key, what)
    return account
