"""Fakes of the two official review APIs, as strict as the real ones at the HTTP layer.

Each fake is an ``httpx.MockTransport`` handler (``fake.transport``) that checks every
request the way the platform documents it and answers with the platform's error shapes:

* ``FakeAppStoreConnect``: every request needs ``Authorization: Bearer <JWT>`` signed
  ES256 by the registered key (header ``kid`` = the key id, ``typ`` JWT; claims ``iss`` =
  the issuer id, ``aud`` = ``appstoreconnect-v1``, ``iat``, and ``exp`` no more than 20
  minutes ahead), else 401 ``NOT_AUTHORIZED``. ``GET /v1/apps/{id}/customerReviews``
  takes only the documented parameters (``limit`` 1..200, ``sort`` of the four allowed
  values, ``include`` of ``response``/``reviewTerritory``, filters, ``cursor``), answers
  newest first with ``links.next``, and ``included`` responses on ``include=response``.
  ``X-Rate-Limit`` counts down; past it, 429 ``RATE_LIMIT_EXCEEDED``.
* ``FakeGooglePlay``: ``POST /token`` takes only ``grant_type=urn:ietf:params:oauth:
  grant-type:jwt-bearer`` with an RS256 assertion signed by the registered service
  account's key, ``iss`` = its ``client_email``, ``aud`` = the token URL, the
  androidpublisher ``scope``, and ``exp`` at most an hour after ``iat``; anything else is
  400 ``invalid_grant`` (or ``invalid_scope``/``unsupported_grant_type``) as Google
  answers. ``GET .../applications/{pkg}/reviews`` needs an access token it issued (401
  ``UNAUTHENTICATED``), a package the account was granted (403 ``PERMISSION_DENIED``), and
  counts the 200 reads per hour (429 ``RESOURCE_EXHAUSTED``).

Keys are made at test time (``ec_key()``, ``rsa_key()``); no real key is committed.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ASC_AUDIENCE = "appstoreconnect-v1"
ASC_ORIGIN = "https://api.appstoreconnect.apple.com"
GOOGLE_API = "https://androidpublisher.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/androidpublisher"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def ec_key() -> ec.EllipticCurvePrivateKey:
    """A fresh App Store Connect-style key (EC P-256)."""
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key() -> rsa.RSAPrivateKey:
    """A fresh service-account-style key (RSA 2048)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: Any) -> str:
    """``key`` as an unencrypted PKCS#8 PEM, as App Store Connect and Google hand them out."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def service_account(
    key: rsa.RSAPrivateKey,
    email: str = "earshot-reviews@acme-app.iam.gserviceaccount.com",
    token_uri: str = GOOGLE_TOKEN_URL,
) -> dict[str, Any]:
    """A service account JSON key in Google's documented layout."""
    return {
        "type": "service_account",
        "project_id": "acme-app",
        "private_key_id": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "private_key": pem(key),
        "client_email": email,
        "client_id": "112233445566778899001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _iso(stamp: str) -> float:
    return datetime.fromisoformat(stamp).astimezone(UTC).timestamp()


# -- App Store Connect ------------------------------------------------------------------------

_ASC_PARAMS = {
    "limit",
    "sort",
    "include",
    "cursor",
    "filter[territory]",
    "filter[rating]",
    "exists[publishedResponse]",
    "fields[customerReviews]",
    "fields[customerReviewResponses]",
}
_ASC_SORTS = {"rating", "-rating", "createdDate", "-createdDate"}


def asc_error(status: int, code: str, title: str, detail: str) -> httpx.Response:
    """Apple's ``ErrorResponse``."""
    error = {"id": secrets.token_hex(8), "status": str(status), "code": code, "title": title}
    error["detail"] = detail
    return _json(status, {"errors": [error]})


class FakeAppStoreConnect:
    """App Store Connect's customer reviews, for one team key and some apps."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        key_id: str = "2X9R4HXF34",
        issuer_id: str = "57246542-96fe-1a63-e053-0824d011072a",
        *,
        now: Callable[[], float] = time.time,
        hourly_limit: int = 3500,
    ) -> None:
        self.public_key = key.public_key()
        self.key_id = key_id
        self.issuer_id = issuer_id
        self.now = now
        self.hourly_limit = hourly_limit
        self.remaining = hourly_limit
        #: app id -> reviews (``customerReviews`` resources), any order.
        self.apps: dict[str, list[dict[str, Any]]] = {}
        #: review id -> its ``customerReviewResponses`` resource.
        self.responses: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.refused: list[str] = []
        #: App ids the key's role may not read (403).
        self.forbidden: set[str] = set()
        self.transport = httpx.MockTransport(self.handle)

    def add_review(
        self,
        app_id: str,
        review_id: str,
        created: str,
        *,
        rating: int = 3,
        title: str = "",
        body: str = "",
        territory: str = "USA",
        nickname: str = "reviewer",
        response: str | None = None,
        response_date: str | None = None,
        state: str = "PUBLISHED",
    ) -> None:
        """One review (``created`` in ISO 8601), with the team's response if given."""
        self.apps.setdefault(app_id, []).append(
            {
                "type": "customerReviews",
                "id": review_id,
                "attributes": {
                    "rating": rating,
                    "title": title,
                    "body": body,
                    "reviewerNickname": nickname,
                    "createdDate": created,
                    "territory": territory,
                },
            }
        )
        if response is not None:
            self.responses[review_id] = {
                "type": "customerReviewResponses",
                "id": f"r-{review_id}",
                "attributes": {
                    "responseBody": response,
                    "lastModifiedDate": response_date or created,
                    "state": state,
                },
                "relationships": {"review": {"data": {"type": "customerReviews", "id": review_id}}},
            }

    def authorize(self, request: httpx.Request) -> str | None:
        """Why the request's token is refused (``None``: it is good)."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return "no bearer token"
        token = header.removeprefix("Bearer ")
        try:
            head = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return "not a JWT"
        if head.get("alg") != "ES256":
            return f"alg {head.get('alg')!r}, not ES256"
        if head.get("kid") != self.key_id:
            return "unknown kid"
        if head.get("typ") != "JWT":
            return "typ is not JWT"
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                audience=ASC_AUDIENCE,
                issuer=self.issuer_id,
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "aud"]},
            )
        except jwt.InvalidAudienceError:
            return "wrong aud"
        except jwt.InvalidIssuerError:
            return "wrong iss"
        except jwt.PyJWTError as exc:
            return f"{type(exc).__name__}"
        now = self.now()
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp <= now:
            return "expired"
        if exp - now > 20 * 60:
            return "exp more than 20 minutes ahead"
        iat = claims.get("iat")
        if iat is not None and (not isinstance(iat, int | float) or iat > now + 60):
            return "iat in the future"
        return None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        refused = self.authorize(request)
        if refused is not None:
            self.refused.append(refused)
            return asc_error(
                401,
                "NOT_AUTHORIZED",
                "Authentication credentials are missing or invalid.",
                "Provide a properly configured and signed bearer token, and make sure that it "
                "has not expired. Learn more about Generating Tokens for API Requests "
                "https://developer.apple.com/go/?id=api-generating-tokens",
            )
        if self.remaining <= 0:
            return asc_error(
                429,
                "RATE_LIMIT_EXCEEDED",
                "The request rate limit has been reached.",
                "We've received too many requests for this API. Please wait and try again or "
                "slow down your request rate.",
            )
        self.remaining -= 1
        headers = {
            "X-Rate-Limit": f"user-hour-lim:{self.hourly_limit};user-hour-rem:{self.remaining};"
        }
        response = self._route(request)
        response.headers.update(headers)
        return response

    def _route(self, request: httpx.Request) -> httpx.Response:
        match = re.fullmatch(r"/v1/apps/([^/]+)/customerReviews", request.url.path)
        if request.method != "GET" or match is None:
            return asc_error(
                404, "NOT_FOUND", "The specified resource does not exist", "path not served"
            )
        app_id = match.group(1)
        if app_id not in self.apps:
            return asc_error(
                404,
                "NOT_FOUND",
                "The specified resource does not exist",
                f"There is no resource of type 'apps' with id '{app_id}'",
            )
        if app_id in self.forbidden:
            return asc_error(
                403,
                "FORBIDDEN_ERROR",
                "This request is forbidden for security reasons",
                "The API key in use does not allow this request",
            )
        params = request.url.params
        for name in params:
            if name not in _ASC_PARAMS:
                return asc_error(
                    400,
                    "PARAMETER_ERROR.ILLEGAL",
                    "A parameter given is not allowed for this request",
                    f"The parameter '{name}' can not be used with this request",
                )
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 200:
            return asc_error(
                400,
                "PARAMETER_ERROR.INVALID",
                "A parameter has an invalid value",
                f"'{params.get('limit')}' is not a valid value for the parameter 'limit'",
            )
        sort = params.get("sort", "createdDate")
        if sort not in _ASC_SORTS:
            return asc_error(
                400,
                "PARAMETER_ERROR.INVALID",
                "A parameter has an invalid value",
                f"'{sort}' is not a valid field name",
            )
        includes = set(filter(None, params.get("include", "").split(",")))
        if includes - {"response", "reviewTerritory"}:
            return asc_error(
                400,
                "PARAMETER_ERROR.INVALID",
                "A parameter has an invalid value",
                "'include' takes response, reviewTerritory",
            )
        reviews = list(self.apps[app_id])
        territories = params.get("filter[territory]")
        if territories:
            wanted = set(territories.split(","))
            reviews = [r for r in reviews if r["attributes"]["territory"] in wanted]
        key = "rating" if sort.endswith("rating") else "createdDate"

        def order(review: dict[str, Any]) -> float:
            value = review["attributes"][key]
            return float(value) if key == "rating" else _iso(value)

        reviews.sort(key=order, reverse=sort.startswith("-"))
        start = (
            int(base64.urlsafe_b64decode(params["cursor"]).decode()) if "cursor" in params else 0
        )
        page = reviews[start : start + limit]
        data = []
        included = []
        for review in page:
            item = dict(review)
            base = f"{ASC_ORIGIN}/v1/customerReviews/{review['id']}"
            relation: dict[str, Any] = {
                "links": {"self": f"{base}/relationships/response", "related": f"{base}/response"}
            }
            answer = self.responses.get(review["id"])
            if "response" in includes and answer is not None:
                relation["data"] = {"type": "customerReviewResponses", "id": answer["id"]}
                included.append(answer)
            item["relationships"] = {"response": relation}
            item["links"] = {"self": base}
            data.append(item)
        body: dict[str, Any] = {
            "data": data,
            "links": {"self": str(request.url)},
            "meta": {"paging": {"total": len(reviews), "limit": limit}},
        }
        if included:
            body["included"] = included
        if start + limit < len(reviews):
            cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            body["links"]["next"] = (
                f"{request.url.scheme}://{request.url.netloc.decode()}{request.url.path}"
                f"?cursor={cursor}&limit={limit}&sort={sort}"
                + (f"&include={','.join(sorted(includes))}" if includes else "")
            )
        return _json(200, body)


# -- Google Play ------------------------------------------------------------------------------


def google_token_error(error: str, description: str) -> httpx.Response:
    """Google's OAuth token endpoint error (RFC 6749 section 5.2)."""
    return _json(400, {"error": error, "error_description": description})


def google_api_error(status: int, kind: str, message: str) -> httpx.Response:
    """A Google API error body."""
    return _json(status, {"error": {"code": status, "message": message, "status": kind}})


class FakeGooglePlay:
    """Google's token endpoint and the Android Publisher reviews list, for one account."""

    def __init__(
        self,
        account: dict[str, Any],
        key: rsa.RSAPrivateKey,
        *,
        packages: set[str] | None = None,
        now: Callable[[], float] = time.time,
        hourly_reads: int = 200,
        token_url: str = GOOGLE_TOKEN_URL,
    ) -> None:
        self.email = account["client_email"]
        self.key_id = account.get("private_key_id")
        self.public_key = key.public_key()
        self.token_url = token_url
        self.packages = packages if packages is not None else {"com.acme.notes"}
        self.now = now
        self.hourly_reads = hourly_reads
        self.reads = 0
        #: package -> reviews (documented ``Review`` objects), newest first.
        self.reviews: dict[str, list[dict[str, Any]]] = {}
        self.tokens: dict[str, tuple[float, str]] = {}
        self.exchanges: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.requests: list[httpx.Request] = []
        self.service_disabled = False
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if str(request.url).split("?", 1)[0] == self.token_url:
            return self._token(request)
        return self._api(request)

    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "POST only"})
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return google_token_error("invalid_request", "Invalid request: not a form")
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return google_token_error("unsupported_grant_type", "Invalid grant_type: ")
        assertion = form.get("assertion", "")
        refused = self._check_assertion(assertion)
        if refused is not None:
            self.refused.append(refused[1])
            return google_token_error(*refused)
        claims = jwt.decode(assertion, options={"verify_signature": False})
        self.exchanges.append(claims)
        token = "ya29." + secrets.token_urlsafe(24)
        self.tokens[token] = (self.now() + 3599, claims["scope"])
        return _json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _check_assertion(self, assertion: str) -> tuple[str, str] | None:
        try:
            head = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return "invalid_grant", "Invalid JWT: not a JWT"
        if head.get("alg") != "RS256":
            return "invalid_grant", "Invalid JWT Signature."
        try:
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            return "invalid_grant", "Invalid JWT Signature."
        except jwt.PyJWTError:
            return "invalid_grant", "Invalid JWT Signature."
        if claims.get("iss") != self.email:
            return "invalid_grant", "Invalid grant: account not found"
        if claims.get("aud") != self.token_url:
            return "invalid_grant", (
                f"Invalid JWT: Failed audience check. The right audience is {self.token_url}"
            )
        iat, exp, now = claims.get("iat"), claims.get("exp"), self.now()
        if (
            not isinstance(iat, int | float)
            or not isinstance(exp, int | float)
            or exp - iat > 3600
            or exp <= now
            or iat > now + 300
        ):
            return "invalid_grant", (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim."
            )
        if not claims.get("scope"):
            return "invalid_scope", "Invalid oauth scope or ID token audience provided."
        return None

    def _api(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization", "")
        grant = self.tokens.get(header.removeprefix("Bearer ")) if header else None
        if grant is None or grant[0] <= self.now():
            return google_api_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        if GOOGLE_SCOPE not in grant[1].split():
            return google_api_error(
                403, "PERMISSION_DENIED", "Request had insufficient authentication scopes."
            )
        if self.service_disabled:
            return google_api_error(
                403,
                "PERMISSION_DENIED",
                "Google Play Android Developer API has not been used in project 112233 "
                "before or it is disabled.",
            )
        match = re.fullmatch(r"/androidpublisher/v3/applications/([^/]+)/reviews", request.url.path)
        if request.method != "GET" or match is None:
            return google_api_error(404, "NOT_FOUND", "Not found")
        package = match.group(1)
        if package not in self.packages:
            return google_api_error(403, "PERMISSION_DENIED", "The caller does not have permission")
        if self.reads >= self.hourly_reads:
            return google_api_error(
                429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Reviews GET'."
            )
        self.reads += 1
        params = request.url.params
        for name in params:
            if name not in ("maxResults", "token", "startIndex", "translationLanguage"):
                return google_api_error(
                    400,
                    "INVALID_ARGUMENT",
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query '
                    "parameter.",
                )
        reviews = self.reviews.get(package, [])
        size = int(params.get("maxResults", "10"))
        start = int(params["token"].removeprefix("t")) if "token" in params else 0
        page = reviews[start : start + size]
        body: dict[str, Any] = {}
        if page:
            body["reviews"] = page
            body["pageInfo"] = {"totalResults": len(reviews), "resultPerPage": size}
        if start + size < len(reviews):
            body["tokenPagination"] = {"nextPageToken": f"t{start + size}"}
        return _json(200, body)


def play_review(
    review_id: str,
    seconds: int,
    text: str,
    *,
    stars: int = 3,
    author: str = "A Google user",
    reply_seconds: int | None = None,
    reply: str = "Thanks!",
) -> dict[str, Any]:
    """A ``Review`` in the documented shape."""
    comments: list[dict[str, Any]] = [
        {
            "userComment": {
                "text": text,
                "lastModified": {"seconds": str(seconds), "nanos": 0},
                "starRating": stars,
                "reviewerLanguage": "en",
                "appVersionName": "2.0.1",
            }
        }
    ]
    if reply_seconds is not None:
        comments.append(
            {
                "developerComment": {
                    "text": reply,
                    "lastModified": {"seconds": str(reply_seconds), "nanos": 0},
                }
            }
        )
    return {"reviewId": review_id, "authorName": author, "comments": comments}


def dumps(value: Any) -> str:
    """JSON text (a service account key for an environment variable)."""
    return json.dumps(value)


class Loopback:
    """Serves a fake's handler over real HTTP on 127.0.0.1, for a test that runs earshot as
    its own process (where a ``MockTransport`` cannot reach)::

        with Loopback(fake.handle) as server:
            ...  # point base_url (and a token_uri) at server.base_url
    """

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = httpx.Request(
                    self.command,
                    loopback.base_url + self.path,
                    headers=list(self.headers.items()),
                    content=body,
                )
                response = loopback.handler(request)
                content = response.read()
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = _serve
            do_POST = _serve

        return Handler
