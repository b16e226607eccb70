"""Signed JWTs and short-lived tokens for the store APIs (App Store Connect, Google Play).

Both official review APIs authenticate with a JSON Web Token signed by a private key the
team downloads once: App Store Connect takes the JWT itself as the bearer token (ES256, at
most 20 minutes), Google exchanges it for an OAuth access token (RS256, at most one hour,
``urn:ietf:params:oauth:grant-type:jwt-bearer``). Signing is PyJWT's, on ``cryptography``'s
keys; nothing here writes crypto by hand.

The key checks raise ``ValueError`` with a message that names what is wrong and where it
came from (an environment variable's name), never the value: ``earshot check`` prints them.

PyJWT and ``cryptography`` are imported when a key is first read (about 10 MB resident), so a
process without a store source does not carry them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .base import (
    BadPayloadError,
    FatalError,
    RateLimitedError,
    RetriableError,
    SourceHttp,
    decode_json,
    describe,
    explain,
    parse_retry_after,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

#: Renew a token this many seconds before it expires.
TOKEN_MARGIN = 60.0


def read_secret_file(path: str, what: str) -> str:
    """The text of the file at ``path`` (a key file named by ``what``, an environment
    variable); an unreadable file is a ``ValueError`` that names the path, not the content."""
    try:
        return Path(path).expanduser().read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"{what}: cannot read {path}: {reason}") from None


def load_ec_p256_key(pem: str, what: str) -> ec.EllipticCurvePrivateKey:
    """An App Store Connect API key (the ``.p8`` file: PKCS#8 PEM, EC P-256) from ``pem``.

    ``what`` names the setting in error messages; the key itself never appears in them.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _load_private_key(pem, what)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(
            f"{what}: not an EC P-256 private key (App Store Connect keys are the "
            "AuthKey_<KEY ID>.p8 file, '-----BEGIN PRIVATE KEY-----')"
        )
    return key


def load_rsa_key(pem: str, what: str) -> rsa.RSAPrivateKey:
    """A Google service account's RSA private key (PEM) from ``pem``."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = _load_private_key(pem, what)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{what}: private_key is not an RSA key")
    return key


def _load_private_key(pem: str, what: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    text = pem.strip()
    if "\\n" in text and "\n" not in text:
        # A key pasted into one environment variable line with escaped newlines.
        text = text.replace("\\n", "\n")
    if "-----BEGIN" not in text:
        raise ValueError(f"{what}: not a PEM private key (no '-----BEGIN' line)")
    try:
        return load_pem_private_key(text.encode("utf-8"), password=None)
    except TypeError:
        raise ValueError(f"{what}: the private key is encrypted; give it unencrypted") from None
    except (ValueError, UnicodeError):
        raise ValueError(f"{what}: the PEM private key does not parse") from None
    except Exception as exc:  # cryptography's UnsupportedAlgorithm and the like
        raise ValueError(f"{what}: unusable private key ({type(exc).__name__})") from None


def sign(claims: Mapping[str, Any], key: Any, algorithm: str, headers: Mapping[str, str]) -> str:
    """A compact JWT of ``claims`` signed with ``key`` (PyJWT adds ``alg`` to the header)."""
    import jwt

    return jwt.encode(dict(claims), key, algorithm=algorithm, headers=dict(headers))


class TokenCache:
    """One bearer token, made by ``fetch`` when missing or about to expire; thread-safe.

    ``fetch`` returns ``(token, lifetime in seconds)``; the token is renewed
    ``TOKEN_MARGIN`` seconds before its lifetime ends, or at once after ``clear``.
    """

    def __init__(self, fetch: Callable[[], tuple[str, float]], clock: Callable[[], float]):
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def get(self) -> str:
        """The current token (fetched now if there is none or it is about to expire)."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                token, lifetime = self._fetch()
                self._token = token
                self._renew_at = self._clock() + max(0.0, lifetime - TOKEN_MARGIN)
            return self._token

    def clear(self, token: str | None = None) -> None:
        """Forget the token (it was refused), so the next ``get`` makes a new one.

        With ``token``, only if it is still the current one (another thread may have
        renewed it already).
        """
        with self._lock:
            if token is None or token == self._token:
                self._token = None


def post_form(http: SourceHttp, url: str, data: Mapping[str, str], what: str) -> tuple[int, Any]:
    """POST a form (an OAuth token request) on the source's client, paced by its limiter.

    ``SourceHttp`` sends JSON bodies only, so the call is made on the shared client here.
    Returns ``(status, decoded JSON)`` for a 2xx or 4xx answer, which the caller reads
    (OAuth errors come as a 400 or 401 with ``error`` and ``error_description``); a 429 is
    a ``RateLimitedError``, a 5xx, a timeout or a non-JSON 2xx a ``RetriableError``. The
    messages name ``what``, never the form (it holds the signed assertion).
    """
    http.limiter.acquire()
    if http.stop is not None and http.stop.is_set():
        raise RetriableError(f"shutting down: {what} not sent")
    http.requests += 1
    extra: dict[str, Any] = {}
    if http.timeout is not None:
        extra["timeout"] = http.timeout
    try:
        response = http.client.post(url, data=dict(data), **extra)
    except httpx.TimeoutException as exc:
        raise RetriableError(f"timeout: {what}: {describe(exc)}") from exc
    except httpx.HTTPError as exc:
        label, message = explain(exc)
        raise RetriableError(f"{label}: {what}: {message}".rstrip(": ")) from exc
    http.limiter.observe(response.headers)
    status = response.status_code
    if status == 429:
        wait = parse_retry_after(response.headers.get("retry-after"))
        if wait is not None:
            http.limiter.block_for(min(wait, http.limiter.max_wait))
        raise RateLimitedError(f"429: {what}", status_code=429, retry_after=wait)
    if status >= 500 or status == 408:
        raise RetriableError(f"{status}: {what}", status_code=status)
    if 300 <= status < 400:
        raise FatalError(f"{status}: {what} answered a redirect", status_code=status)
    try:
        body = decode_json(response)
    except BadPayloadError:
        if status < 300:
            raise
        body = None
    return status, body
