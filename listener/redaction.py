"""Secrets out of every text that leaves the process: logs, health alerts, stored errors.

Two nets, both applied by ``redact``:

* known values: every secret the process holds (source tokens, app passwords, API keys,
  session tokens obtained at run time) in each form it can take on its way out: as is,
  URL-encoded (``quote``, ``quote_plus``, httpx's query encoding, upper or lower case hex),
  JSON-escaped and HTML-escaped. A value shorter than ``MIN_LENGTH`` is ignored (it would
  blank out ordinary words).
* known places: whatever follows ``Authorization: Bearer``/``Basic``/``token``, the value of
  a query parameter or JSON field named like a credential (``key``, ``access_token``,
  ``password``, ``accessJwt``...), even when the value itself is not known.

``register`` adds values to the process-wide ``REDACTOR`` (the sources do it for their
secrets, the CLI for the environment's); ``REDACTOR.put(slot, ...)`` replaces the values of
one slot, for tokens that are renewed (a session's access token).
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import httpx

#: Shorter values are not redacted by value (they are not secrets worth the false hits).
MIN_LENGTH = 6
#: What a secret is replaced with.
MASK = "***"

_CREDENTIAL_NAMES = (
    "key|api_key|apikey|access_token|refresh_token|token|password|passwd|app_password"
    "|client_secret|secret|signature|sig|accessjwt|refreshjwt|auth"
)
_PLACES = [
    # Authorization: Bearer xyz / Basic xyz / token xyz (echoed headers, curl traces).
    re.compile(
        r"(?i)(\bauthorization\b[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token)\s+)[^\s\"',;]+"
    ),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # ?key=...&access_token=... (a "Cannot GET /path?...&key=..." page, a logged URL).
    re.compile(rf"(?i)([?&;](?:{_CREDENTIAL_NAMES})=)[^&\s\"'<>#]+"),
    # "password": "..." / "accessJwt": "..." (an echoed JSON body, e.g. a login call).
    re.compile(rf"(?i)(\"(?:{_CREDENTIAL_NAMES})\"\s*:\s*\")(?:[^\"\\]|\\.)*(?=\")"),
]


def secret_forms(value: str) -> set[str]:
    """Every spelling of ``value`` that can reach a log line or an error body."""
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        html.escape(value),
        html.escape(quote(value, safe="")),
    }
    try:
        encoded = str(httpx.QueryParams({"k": value}))  # how httpx puts it in a URL
        forms.add(encoded.split("=", 1)[1])
    except Exception:  # pragma: no cover - httpx accepts any str
        pass
    return {form for form in forms if form}


def _pattern(form: str) -> str:
    """A regex for ``form`` in which percent-escapes match in either case."""
    parts = re.split(r"(%[0-9A-Fa-f]{2})", form)
    out = []
    for part in parts:
        if re.fullmatch(r"%[0-9A-Fa-f]{2}", part):
            out.append("%(?i:" + re.escape(part[1:]) + ")")
        else:
            out.append(re.escape(part))
    return "".join(out)


class Redactor:
    """Replaces secrets in text. Thread-safe; values are added, or replaced by slot."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, frozenset[str]] = {}
        self._regex: re.Pattern[str] | None = None
        self.add(*secrets)

    @property
    def values(self) -> frozenset[str]:
        """Every secret value known (not their forms)."""
        with self._lock:
            return frozenset().union(*self._slots.values()) if self._slots else frozenset()

    def add(self, *values: str | None) -> None:
        """Redact these values from now on (``None``, empty and short values are ignored)."""
        keep = {v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH}
        if not keep:
            return
        with self._lock:
            known = self._slots.get("", frozenset())
            if keep <= known:
                return
            self._slots[""] = known | keep
            self._regex = None

    def put(self, slot: str, *values: str | None) -> None:
        """Make ``values`` the secrets of ``slot``, forgetting the slot's earlier ones."""
        keep = frozenset(v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH)
        with self._lock:
            if self._slots.get(slot, frozenset()) == keep:
                return
            self._slots[slot] = keep
            self._regex = None

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._regex is None:
                forms: set[str] = set()
                for values in self._slots.values():
                    for value in values:
                        forms |= secret_forms(value)
                if not forms:
                    return None
                # Longest first, so a form is never partly replaced by a shorter one.
                ordered = sorted(forms, key=len, reverse=True)
                self._regex = re.compile("|".join(_pattern(form) for form in ordered))
            return self._regex

    def redact(self, text: str) -> str:
        """``text`` with every known secret, and every credential in a known place, masked."""
        if not text:
            return text
        regex = self._compiled()
        if regex is not None:
            text = regex.sub(MASK, text)
        for place in _PLACES:
            text = place.sub(lambda m: m.group(1) + MASK, text)
        return text


#: The process-wide redactor: sources register their secrets here, the CLI the environment's.
REDACTOR = Redactor()


def register(*values: str | None) -> None:
    """Redact these values everywhere from now on."""
    REDACTOR.add(*values)


def redact(text: str) -> str:
    """``text`` with the process's secrets masked (see ``Redactor.redact``)."""
    return REDACTOR.redact(text)
