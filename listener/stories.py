"""Stories: one link or one copied complaint across sources, found by keys.

A mention gets up to two kinds of keys, each a short string looked up by primary key in
``story_keys``:

* ``url:<sha1>`` of its canonical link (``canonical_url``): tracking parameters dropped,
  redirect wrappers (Google Alerts, ``l.facebook.com``, ``out.reddit.com``) unwrapped, host
  lowercased without ``www.``. The link is ``mention.link`` (the URL a post links to: an HN
  or Reddit link post's target, a Mastodon card, a Bluesky external embed) or, for sources
  whose item *is* the article (Google Alerts, RSS), ``mention.url``. A bare homepage is
  not a story (a link to the product's site is not news), nor is a non-http(s) link.
* ``nd:<band>:<hash>`` bands of a MinHash of the body's word shingles (``near_keys``), for
  the same complaint copied across sources. Bands only find candidates: a candidate is
  confirmed by the exact shingle Jaccard against the story's first mention
  (``NEAR_DUPLICATE_JACCARD``, measured in ``docs/stories.md``). Texts under
  ``MIN_WORDS`` words get no near-duplicate keys (too short to tell a copy from a
  coincidence).

Everything here is a pure function of the text; ``Store.ingest`` does the lookups.

    >>> canonical_url("https://www.Example.com/post?utm_source=x&b=2&a=1#top")
    'https://example.com/post?a=1&b=2'
    >>> canonical_url("https://example.com/") is None
    True
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import numpy as np

#: Query parameters that only track where a click came from.
TRACKING_PARAMS = frozenset(
    {
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "igsh",
        "si",
        "yclid",
        "_hsenc",
        "_hsmi",
        "spm",
        "cmpid",
        "cmp",
        "smid",
        "twclid",
        "s_cid",
        "ocid",
        "rss",
        "feature",
        "share",
        "guccounter",
    }
)
#: Parameter prefixes that only track (``utm_source``, ``utm_medium``...).
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hmb_", "__hs")

#: Redirect wrappers: host -> (path, the parameters that hold the target).
WRAPPERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "google.com": ("/url", ("url", "q")),
    "l.facebook.com": ("/l.php", ("u",)),
    "lm.facebook.com": ("/l.php", ("u",)),
    "l.messenger.com": ("/l.php", ("u",)),
    "out.reddit.com": ("", ("url",)),
    "l.instagram.com": ("/", ("u",)),
}

#: How many words a text needs before it gets near-duplicate keys.
MIN_WORDS = 8
#: Words per shingle.
SHINGLE = 3
#: MinHash bands and rows per band: a candidate needs one band of ``ROWS`` equal minimums.
BANDS = 8
ROWS = 3
#: The shingle Jaccard at or above which a candidate is the same text (docs/stories.md).
NEAR_DUPLICATE_JACCARD = 0.5

_PRIME = (1 << 61) - 1
_RNG = np.random.default_rng(20261202)
_A = _RNG.integers(1, _PRIME, size=BANDS * ROWS, dtype=np.uint64)
_B = _RNG.integers(0, _PRIME, size=BANDS * ROWS, dtype=np.uint64)

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<!\w)@[\w.\-]+(?:@[\w.\-]+)?")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def _default_port(scheme: str, port: int | None) -> bool:
    return port is None or (scheme, port) in (("http", 80), ("https", 443))


def _unwrap(scheme: str, host: str, path: str, query: str) -> str | None:
    """The target of a redirect wrapper, or ``None`` if this URL is not one."""
    wrapper = WRAPPERS.get(host)
    if wrapper is None:
        return None
    wanted_path, names = wrapper
    if wanted_path and path != wanted_path:
        return None
    params = dict(parse_qsl(query, keep_blank_values=True))
    for name in names:
        target = params.get(name, "")
        if target.lower().startswith(("http://", "https://")):
            return target
        if target.lower().startswith(("http%3a", "https%3a")):
            return unquote(target)
    return None


def canonical_url(url: str | None, _depth: int = 0) -> str | None:
    """The URL a story is keyed on, or ``None`` (not http(s), no host, a bare homepage).

    Scheme ``https`` (an ``http`` link to the same page is the same story), lowercase host,
    no ``www.``, no default port, no fragment, no tracking parameters, the rest sorted;
    redirect wrappers are unwrapped (at most three deep); a trailing slash on the path is
    dropped.
    """
    if not url or not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port
    except ValueError:
        return None
    if scheme not in ("http", "https") or not host:
        return None
    if host.startswith("www."):
        host = host[4:]
    target = _unwrap(scheme, host, parts.path, parts.query)
    if target is not None:
        return canonical_url(target, _depth + 1) if _depth < 3 else None
    path = re.sub(r"/{2,}", "/", parts.path or "").rstrip("/")
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)
    ]
    if not path and not query:
        return None  # a homepage is not a story
    netloc = host if _default_port(scheme, port) else f"{host}:{port}"
    # http and https of one page are one story (sites redirect one to the other).
    return urlunsplit(("https", netloc, path, urlencode(sorted(query)), ""))


def url_key(canonical: str) -> str:
    """The ``story_keys`` key of a canonical URL."""
    return "url:" + hashlib.sha1(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def words(text: str) -> list[str]:
    """The normalized words of a text: lowercased, without URLs, @handles and numbers."""
    text = text.lower()
    if "http" in text or "www." in text:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _HANDLE.sub(" ", text)
    return _WORD.findall(text)


def shingles(text: str) -> set[str]:
    """The set of ``SHINGLE``-word shingles of the normalized text (empty under
    ``MIN_WORDS`` words)."""
    tokens = words(text)
    if len(tokens) < MIN_WORDS:
        return set()
    return {" ".join(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """``|a & b| / |a | b|`` (0 for two empty sets)."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _hashes(grams: Iterable[str]) -> np.ndarray:
    """A 32-bit hash of each shingle (CRC-32: stable across processes, unlike ``hash``)."""
    return np.fromiter(
        (zlib.crc32(g.encode("utf-8", "surrogatepass")) for g in grams), dtype=np.uint64
    )


def near_keys(text: str) -> list[str]:
    """The ``nd:<band>:<hash>`` keys of a text (none for a text under ``MIN_WORDS`` words).

    One MinHash of ``BANDS * ROWS`` permutations over the text's shingles, cut into bands;
    two texts share a band key with probability ``1 - (1 - J**ROWS)**BANDS`` for shingle
    Jaccard ``J`` (0.66 at 0.5, 0.98 at 0.7).
    """
    grams = shingles(text)
    if not grams:
        return []
    values = _hashes(grams)
    # (a * x + b) mod p for every permutation and shingle; uint64 wraps, which is a fine
    # universal hash family for this purpose (the keys only find candidates).
    mixed = values[:, None] * _A[None, :] + _B[None, :]
    signature = mixed.min(axis=0).tolist()
    # The band's minimums themselves, in hex (at most 3 x 16 digits: the key fits in 80).
    return [
        f"nd:{band}:" + ".".join(f"{v:x}" for v in signature[band * ROWS : (band + 1) * ROWS])
        for band in range(BANDS)
    ]


@dataclass(frozen=True)
class StoryKeys:
    """A mention's keys: its canonical link's (if any) and its text's near-duplicate bands."""

    url: str | None = None
    url_key: str | None = None
    near: tuple[str, ...] = ()

    @property
    def all(self) -> list[str]:
        return ([self.url_key] if self.url_key else []) + list(self.near)


def keys_for(link: str | None, body: str, *, near_duplicate: bool = True) -> StoryKeys:
    """Every story key of one mention (see the module docstring): ``link`` is
    ``mention.link`` (sources whose item is the article, RSS and Google Alerts, fill it
    with the article's URL)."""
    canonical = canonical_url(link)
    near = tuple(near_keys(body)) if near_duplicate else ()
    return StoryKeys(canonical, url_key(canonical) if canonical else None, near)


@dataclass(frozen=True)
class StoryOptions:
    """How ``Store.ingest`` groups mentions into stories (``[stories]`` in the settings).

    * **window** - seconds a story's key stays live: a mention joins a story whose key was
      last seen within it, else starts a new one.
    * **near_duplicate** - also group copied text (not only shared links).
    """

    enabled: bool = True
    window: float = 3 * 86400.0
    near_duplicate: bool = True
    threshold: float = NEAR_DUPLICATE_JACCARD


@dataclass(frozen=True)
class Membership:
    """Where ``Store.ingest`` put one mention: its story, the story's count after it
    joined, and whether it started the story (``False``: a later member)."""

    story_id: int
    count: int
    started: bool
