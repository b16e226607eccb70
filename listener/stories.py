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
from collections.abc import Sequence
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
BANDS = 5
ROWS = 2
#: The shingle Jaccard at or above which a candidate is the same text (docs/stories.md).
NEAR_DUPLICATE_JACCARD = 0.5

_PRIME = (1 << 61) - 1
_RNG = np.random.default_rng(20261202)
_A = _RNG.integers(1, _PRIME, size=BANDS * ROWS, dtype=np.uint64) | np.uint64(1)
_B = _RNG.integers(0, _PRIME, size=BANDS * ROWS, dtype=np.uint64)
#: Odd multipliers that mix a shingle's word hashes, and a band's minimums, into one.
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_PREFIXES = [f"nd:{band}:" for band in range(BANDS)]

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


def _word_hashes(tokens: Sequence[str]) -> list[int]:
    """A 32-bit hash of each word (CRC-32: stable across processes, unlike ``hash``)."""
    return [zlib.crc32(t.encode("utf-8", "surrogatepass")) for t in tokens]


def near_keys_many(texts: Sequence[str]) -> list[list[str]]:
    """The ``nd:<band>:<hash>`` keys of each text (none for a text under ``MIN_WORDS``
    words), the MinHash of all of them in one pass of array arithmetic.

    One MinHash of ``BANDS * ROWS`` permutations over each text's shingles (a shingle's
    hash mixes its words' CRC-32s; a repeated shingle changes no minimum, so the text's
    shingle *set* is what counts), cut into bands; two texts share a band key with
    probability ``1 - (1 - J**ROWS)**BANDS`` for shingle Jaccard ``J`` (0.76 at 0.5, 0.97
    at 0.7). A band key is the band's ``ROWS`` minimums mixed into one 64-bit number.
    """
    out: list[list[str]] = [[] for _ in texts]
    hashes: list[int] = []
    starts: list[int] = []  # where each long enough text's words start in ``hashes``
    which: list[int] = []  # and which text it is
    for i, text in enumerate(texts):
        tokens = words(text)
        if len(tokens) >= MIN_WORDS:
            starts.append(len(hashes))
            which.append(i)
            hashes.extend(_word_hashes(tokens))
    if not which:
        return out
    h = np.array(hashes, dtype=np.uint64)
    # Shingle i of the whole run is words i, i+1, i+2; the ones that cross from one text
    # into the next are left out (a text's last SHINGLE - 1 positions).
    grams = (h[:-2] * _M1 + h[1:-1]) * _M2 + h[2:]
    keep = np.ones(len(grams), dtype=bool)
    inner = np.array(starts[1:], dtype=np.int64)  # where each text but the first starts
    for back in range(1, SHINGLE):
        keep[inner - back] = False
    grams = grams[keep]
    offsets = np.array(starts, dtype=np.int64) - np.arange(len(starts)) * (SHINGLE - 1)
    # (a * x + b) mod 2**64 for every permutation and shingle (uint64 wraps; ``a`` odd, so
    # each is a permutation of 64-bit numbers), the minimum per text.
    mixed = grams[:, None] * _A[None, :] + _B[None, :]
    signature = np.minimum.reduceat(mixed, offsets, axis=0).reshape(len(which), BANDS, ROWS)
    band = signature[:, :, 0]
    for row in range(1, ROWS):
        band = band * _M1 + signature[:, :, row]
    for i, values in zip(which, band.tolist(), strict=True):
        out[i] = [prefix + f"{v:x}" for prefix, v in zip(_PREFIXES, values, strict=True)]
    return out


def near_keys(text: str) -> list[str]:
    """The ``nd:<band>:<hash>`` keys of one text (``near_keys_many``)."""
    return near_keys_many([text])[0]


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
    return keys_for_many([link], [body], near_duplicate=near_duplicate)[0]


def keys_for_many(
    links: Sequence[str | None], bodies: Sequence[str], *, near_duplicate: bool = True
) -> list[StoryKeys]:
    """``keys_for`` of many mentions at once (one MinHash pass: ``near_keys_many``)."""
    near = near_keys_many(bodies) if near_duplicate else [[] for _ in bodies]
    made = []
    for link, bands in zip(links, near, strict=True):
        canonical = canonical_url(link)
        made.append(StoryKeys(canonical, url_key(canonical) if canonical else None, tuple(bands)))
    return made


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
