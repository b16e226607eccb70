"""App Store customer reviews of your own app, through the official App Store Connect API.

``GET {base_url}/v1/apps/{app_id}/customerReviews?include=response&sort=-createdDate&limit=200``

Unlike the public RSS feed (``appstore``), this reads every territory at once, with the full
text and stable review ids, and it reads back the team's response to each review
(``include=response``: a ``customerReviewResponses`` resource in ``included``). A review
that already has a response, published or pending, arrives as handled
(``Mention.status = "handled"``, ``resolved_at`` = the response's ``lastModifiedDate``,
``resolved_by`` = ``"App Store Connect"``): it is stored and classified, never alerted as
unanswered.

Pages: newest first, ``limit`` at most 200, the next page is the absolute ``links.next``
URL (followed only on the API's own origin). Cursor: the newest ``createdDate`` read (unix
seconds) and the ids created in that second; a poll reads pages until it meets a review at
or before it, at most ``max_pages`` pages.

Auth: every request carries a JWT signed with the team's API key (ES256, header ``kid`` =
the key id, ``typ`` JWT; claims ``iss`` = the issuer id, ``iat``, ``exp`` 15 minutes later,
Apple's maximum being 20, ``aud`` = ``appstoreconnect-v1``), made again before it expires
or when a request answers 401. Secrets (from ``APPSTORECONNECT_KEY_ID``,
``APPSTORECONNECT_ISSUER_ID``, and ``APPSTORECONNECT_PRIVATE_KEY`` or
``APPSTORECONNECT_PRIVATE_KEY_FILE``) are checked for shape when the source is made.

Budget: Apple allows about 3,500 requests per rolling hour per key (the ``X-Rate-Limit``
header, ``user-hour-lim:3500;user-hour-rem:500;``) and answers 429 ``RATE_LIMIT_EXCEEDED``
past it; the source paces itself at 50 requests a minute and, when the header says none
remain, waits a minute before its next request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import BeforeValidator, Field

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
    from_iso,
    logger,
    parse_retry_after,
    same_origin,
    text_of,
)
from .reviews import NewestFirstReviews

AUDIENCE = "appstoreconnect-v1"
#: Apple refuses tokens that live longer than 20 minutes; stay well under.
TOKEN_LIFETIME = 15 * 60
#: Apple's maximum page size.
MAX_LIMIT = 200
#: Apple's ``X-Rate-Limit`` header, e.g. ``user-hour-lim:3500;user-hour-rem:500;``.
_REMAINING = re.compile(r"user-hour-rem:\s*(\d+)")
#: How long to pause when Apple says no request remains (the window is a rolling hour).
SPENT_WAIT = 60.0
#: Shown as who handled a review answered in App Store Connect.
RESOLVER = "App Store Connect"

_KEY_ID = re.compile(r"^[A-Z0-9]{10}$")
_ISSUER_ID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")

#: What a 401 or 403 means here, and what to do about it.
UNAUTHORIZED = (
    "App Store Connect refused the API key (401 NOT_AUTHORIZED): check "
    "APPSTORECONNECT_KEY_ID, APPSTORECONNECT_ISSUER_ID and the private key belong together "
    "and the key is not revoked (Users and Access > Integrations > App Store Connect API)"
)
FORBIDDEN = (
    "App Store Connect: the API key may not read this app's customer reviews (403): give "
    "the team key a role that can (Customer Support, App Manager or Admin) and check app_id"
)


def _errors(response: httpx.Response) -> SourceError | None:
    """App Store Connect's error answers, read as Apple documents them.

    ``{"errors": [{"status": "401", "code": "NOT_AUTHORIZED", "title": ..., "detail": ...}]}``.
    A 401 or 403 says which credential or permission to fix; a 429 (``RATE_LIMIT_EXCEEDED``)
    is rate limited, ``Retry-After`` seconds if given, else a minute.
    """
    status = response.status_code
    where = str(response.request.url).split("?", 1)[0]
    code = _error_code(response)
    if status == 401:
        return FatalError(f"{UNAUTHORIZED} [{code or status}]", status_code=status)
    if status == 403:
        return FatalError(f"{FORBIDDEN} [{code or status}]", status_code=status)
    if status == 404:
        return FatalError(
            f"App Store Connect: no app with this app_id (404 {code or 'NOT_FOUND'}): use the "
            "numeric Apple ID from App Information, not the bundle id",
            status_code=status,
        )
    if status == 429:
        wait = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitedError(
            f"429 {code or 'RATE_LIMIT_EXCEEDED'}: GET {where}",
            status_code=status,
            retry_after=wait if wait is not None else SPENT_WAIT,
        )
    return None


def _error_code(response: httpx.Response) -> str:
    try:
        data = response.json()
        first = data["errors"][0]
        return re.sub(r"[^A-Z0-9_.]", "", str(first.get("code", "")))[:80]
    except Exception:
        return ""


class AppStoreConnectSource(NewestFirstReviews):
    """Customer reviews of one app, every territory, with the team's responses."""

    type = "appstoreconnect"
    needs_query = False
    default_base_url = "https://api.appstoreconnect.apple.com"
    #: About 3,500 requests per rolling hour per key: 50 a minute stays under it.
    default_requests_per_minute = 50.0
    secrets: ClassVar[Mapping[str, str]] = {
        "key_id": "APPSTORECONNECT_KEY_ID",
        "issuer_id": "APPSTORECONNECT_ISSUER_ID",
        "private_key": "APPSTORECONNECT_PRIVATE_KEY",
        "private_key_file": "APPSTORECONNECT_PRIVATE_KEY_FILE",
    }

    class Options(SourceOptions):
        app_id: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)] = (
            Field(pattern=r"^\d{1,20}$")
        )
        #: ISO 3166-1 alpha-3 territories to read (``["USA", "GBR"]``); empty: all.
        territories: list[Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] = Field(
            default_factory=list
        )
        limit: int = Field(MAX_LIMIT, ge=1, le=MAX_LIMIT)
        max_pages: int = Field(10, ge=1, le=100)

    def __init__(
        self,
        *args: Any,
        app_id: str,
        territories: Sequence[str] = (),
        limit: int = MAX_LIMIT,
        max_pages: int = 10,
        key_id: str | None = None,
        issuer_id: str | None = None,
        private_key: str | None = None,
        private_key_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.app_id = str(app_id)
        self.territories = [t.upper() for t in territories]
        self.limit = max(1, min(MAX_LIMIT, int(limit)))
        self.max_pages = max_pages
        self.key_id, self.issuer_id, pem, self._key = _credentials(
            key_id, issuer_id, private_key, private_key_file
        )
        self.keep_secret(pem)  # as given, or as read from the key file
        self._tokens = auth.TokenCache(self._make_token, self.clock)

    @classmethod
    def default_name(cls, options: Mapping[str, Any]) -> str:
        return f"appstoreconnect-{options.get('app_id')}"

    # -- auth -----------------------------------------------------------------------------

    def _make_token(self) -> tuple[str, float]:
        now = int(self.clock())
        claims = {"iss": self.issuer_id, "iat": now, "exp": now + TOKEN_LIFETIME, "aud": AUDIENCE}
        token = auth.sign(claims, self._key, "ES256", {"kid": self.key_id, "typ": "JWT"})
        self.keep_secret(token, slot="token")
        return token, float(TOKEN_LIFETIME)

    def _get(self, url: str, params: Mapping[str, Any] | None) -> Any:
        """GET a page with a bearer token; a 401 makes a new token and asks once more."""
        for attempt in (1, 2):
            token = self._tokens.get()
            try:
                response = self.http.get(
                    url,
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                    errors=_errors,
                )
            except FatalError as exc:
                if exc.status_code != 401 or attempt == 2:
                    raise
                logger.info("%s: token refused (401); making a new one", self.name)
                self._tokens.clear(token)
                continue
            self._observe(response.headers)
            return decode_json(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _observe(self, headers: Mapping[str, str]) -> None:
        match = _REMAINING.search(headers.get("x-rate-limit", ""))
        if match and int(match.group(1)) == 0:
            self.http.limiter.block_for(SPENT_WAIT)

    # -- polling --------------------------------------------------------------------------

    @property
    def unit(self) -> str:
        return f"appstoreconnect {self.app_id}"

    def read_since(self, since: float, known: set[str], result: PollResult) -> list[Mention]:
        url: str | None = f"{self.base_url}/v1/apps/{self.app_id}/customerReviews"
        params: dict[str, Any] | None = {
            "include": "response",
            "sort": "-createdDate",
            "limit": self.limit,
        }
        if self.territories:
            assert params is not None
            params["filter[territory]"] = ",".join(self.territories)
        reviews: list[Mention] = []
        seen: set[str] = set()
        for _page in range(self.max_pages):
            assert url is not None
            data = self._get(url, params)
            items, responses, next_url = _page_parts(data)
            reached = False
            for item in items:
                review = self.parse_item(result, partial(self._mention, responses=responses), item)
                if review is None:
                    continue
                stamp = review.created_at.timestamp()
                if stamp < int(since) or (int(stamp) == int(since) and review.external_id in known):
                    reached = True
                    continue
                if review.external_id not in seen:
                    seen.add(review.external_id)
                    reviews.append(review)
            if reached or not next_url:
                return reviews
            url, params = self._next(next_url), None
        logger.warning(
            "%s: stopped after max_pages=%d pages; older new reviews are not read",
            self.name,
            self.max_pages,
        )
        return reviews

    def _next(self, link: str) -> str:
        """``links.next``, only on the API's own origin (the bearer token goes with it)."""
        return same_origin(link, self.base_url)

    def _mention(self, item: Any, responses: Mapping[str, dict[str, Any]]) -> Mention:
        if item.get("type") != "customerReviews":
            raise ValueError("not a customer review")
        review_id = item["id"]
        attributes = item["attributes"]
        created = from_iso(attributes["createdDate"])
        rating = attributes.get("rating")
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise ValueError(f"no rating: {rating!r:.20}")
        response = responses.get(_response_id(item) or "")
        raw = dict(item)
        if response is not None:
            raw["response"] = response
        mention = self.mention(
            external_id=review_id,
            url=f"https://apps.apple.com/app/id{self.app_id}?see-all=reviews",
            author=text_of(attributes.get("reviewerNickname")),
            site=text_of(attributes.get("territory")),
            title=text_of(attributes.get("title")),
            text=text_of(attributes.get("body")),
            created_at=created,
            rating=rating,
            raw=raw,
        )
        if response is not None:
            _mark_answered(mention, response)
        return mention


def _credentials(
    key_id: str | None,
    issuer_id: str | None,
    private_key: str | None,
    private_key_file: str | None,
) -> tuple[str, str, str, Any]:
    """The key id, the issuer id, the key's PEM text and the loaded key, checked for shape
    (values never shown)."""
    missing = [
        name
        for name, value in (
            ("APPSTORECONNECT_KEY_ID", key_id),
            ("APPSTORECONNECT_ISSUER_ID", issuer_id),
            (
                "APPSTORECONNECT_PRIVATE_KEY or APPSTORECONNECT_PRIVATE_KEY_FILE",
                private_key or private_key_file,
            ),
        )
        if not value
    ]
    if missing:
        raise ValueError(
            f"appstoreconnect needs {', '.join(missing)} (an App Store Connect API key)"
        )
    assert key_id is not None and issuer_id is not None
    key_id, issuer_id = key_id.strip(), issuer_id.strip()
    if not _KEY_ID.match(key_id):
        raise ValueError("APPSTORECONNECT_KEY_ID: not a key id (10 capital letters and digits)")
    if not _ISSUER_ID.match(issuer_id):
        raise ValueError("APPSTORECONNECT_ISSUER_ID: not an issuer id (a UUID)")
    if private_key and private_key_file:
        raise ValueError(
            "set one of APPSTORECONNECT_PRIVATE_KEY and APPSTORECONNECT_PRIVATE_KEY_FILE, not both"
        )
    if private_key_file:
        what = "APPSTORECONNECT_PRIVATE_KEY_FILE"
        pem = auth.read_secret_file(private_key_file, what)
    else:
        what, pem = "APPSTORECONNECT_PRIVATE_KEY", private_key or ""
    return key_id, issuer_id, pem, auth.load_ec_p256_key(pem, what)


def _page_parts(data: Any) -> tuple[list[Any], dict[str, dict[str, Any]], str | None]:
    """A page's reviews, its included responses by id, and its ``links.next``."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BadPayloadError("appstoreconnect: answer has no 'data' list")
    responses: dict[str, dict[str, Any]] = {}
    included = data.get("included", [])
    for resource in included if isinstance(included, list) else []:
        if (
            isinstance(resource, dict)
            and resource.get("type") == "customerReviewResponses"
            and isinstance(resource.get("id"), str)
        ):
            responses[resource["id"]] = resource
    links = data.get("links")
    nxt = links.get("next") if isinstance(links, dict) else None
    return data["data"], responses, nxt if isinstance(nxt, str) and nxt else None


def _response_id(item: dict[str, Any]) -> str | None:
    try:
        linkage = item["relationships"]["response"]["data"]
    except (KeyError, TypeError):
        return None
    if isinstance(linkage, dict) and linkage.get("type") == "customerReviewResponses":
        value = linkage.get("id")
        return value if isinstance(value, str) else None
    return None


def _mark_answered(mention: Mention, response: dict[str, Any]) -> None:
    """A review the team answered in App Store Connect: handled, when the answer was made."""
    attributes = response.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    mention.status = MentionStatus.HANDLED.value
    mention.resolved_by = RESOLVER
    try:
        mention.resolved_at = from_iso(attributes["lastModifiedDate"])
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        mention.resolved_at = mention.created_at
