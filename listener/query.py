"""The query language: what counts as a mention of the product.

A query such as ``acme -"acme corp" (app OR cloud) site:r/acme`` is parsed once by
``Query.parse`` into a small tree whose leaves are compiled regexes, then tested against
many documents. ``QuerySet`` holds the configured queries and the globally excluded
authors; ``QuerySet.match`` normalizes a document once, narrows the queries to those whose
necessary words occur in it (an inverted index over word tokens), and evaluates only those.

Matching rules (full reference with examples: ``docs/query-language.md``):

* Text and query are normalized alike: invalid surrogates dropped, zero-width and bidi
  control characters removed, NFKC, casefold (``straße`` = ``STRASSE``), curly apostrophes
  turned into ``'``.
* A term matches on word boundaries, checked only on a side where the term's edge character
  is a word character: ``acme`` matches "Acme's" but not "acmeology", ``.net`` matches
  "ASP.NET" but not ".network", ``c++`` matches "C++!" but not "objc++".
* CJK, Thai and similar scripts written without spaces are not "word characters" for the
  boundary check, so ``微信`` matches inside "我用微信" and ``acme`` inside "用acme聊天".
* A hyphen between two letters/digits of a term is flexible: ``acme-cloud`` matches
  "Acme-Cloud", "acme cloud", "Acme–Cloud" and "AcmeCloud".

All regexes are free of nested or overlapping quantifiers (separators are possessive), so
matching is linear in the length of the text even on hostile input.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "Document",
    "Query",
    "QuerySet",
    "QuerySyntaxError",
    "normalize_author",
    "normalize_site",
    "normalize_text",
]

#: Deepest allowed nesting of parentheses (a deeper query is a ``QuerySyntaxError``).
MAX_DEPTH = 32
#: Longest allowed query, in characters.
MAX_QUERY_LENGTH = 10_000
#: The shortest prefix accepted by ``prefix*`` (``a*`` would match most of any text).
MIN_PREFIX = 2

#: Field names and aliases → canonical field.
FIELDS: dict[str, str] = {
    "site": "site",
    "subreddit": "site",
    "author": "author",
    "lang": "lang",
    "language": "lang",
}

# --------------------------------------------------------------------------- normalization

# Scripts written without spaces between words: their characters never form a word
# boundary, so terms in them match as substrings and Latin terms match next to them.
_NO_SPACE_SCRIPTS = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u3005\u3006\u3040-\u30ff"  # 々 〆 Hiragana, Katakana
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f\uac00-\ud7af"  # Hangul
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # halfwidth Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
#: One "word character" for boundaries and tokens: ``\w`` minus the scripts above.
_W = rf"[^\W{_NO_SPACE_SCRIPTS}]"
_WORD_CHAR = re.compile(_W)
# Where a word character touches a no-space-script character, the matching text gets a
# space, so the compiled patterns can use the plain (fast to compile) ``\w`` and ``\W``.
_SCRIPT_EDGE = re.compile(rf"(?<=[{_NO_SPACE_SCRIPTS}])(?={_W})|(?<={_W})(?=[{_NO_SPACE_SCRIPTS}])")
_TOKEN = re.compile(r"\w+")
_HYPHENS = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_FLEX_HYPHEN = r"[\s\-\u2010-\u2015\u2212]*+"

_SURROGATES = re.compile("[\ud800-\udfff]")
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_APOSTROPHES = "\u2018\u2019\u02bc\uff07"
_NO_SPACE_CHAR = re.compile(f"[{_NO_SPACE_SCRIPTS}]")


def normalize_text(text: str) -> str:
    """Normalize text for matching: NFKC + casefold, invisible characters removed.

    Lone surrogates become U+FFFD, zero-width/bidi control characters (U+200B, U+200C,
    U+200D, U+2060, U+FEFF, soft hyphen, ...) are deleted, and typographic apostrophes
    become ``'``. Queries and documents go through the same function.
    """
    if text.isascii():
        return text.lower()
    text = _INVISIBLE.sub("", _SURROGATES.sub("\ufffd", text))
    for apostrophe in _APOSTROPHES:
        if apostrophe in text:
            text = text.replace(apostrophe, "'")
    text = unicodedata.normalize("NFKC", text).casefold()
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return text


def _match_text(text: str) -> str:
    """`normalize_text`, plus a space where a word touches CJK/Thai/... text."""
    text = normalize_text(text)
    if text.isascii() or _NO_SPACE_CHAR.search(text) is None:
        return text
    return _SCRIPT_EDGE.sub(" ", text)


def normalize_author(author: str) -> str:
    """``"@Bob"``, ``"u/Bob"``, ``"/u/bob"`` → ``"bob"``; ``"@bob@host"`` → ``"bob@host"``."""
    value = normalize_text(author).strip()
    for prefix in ("/u/", "u/", "@"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    return value.strip()


def normalize_site(site: str) -> str:
    """``"r/Acme"`` → ``"acme"``, ``"https://www.Example.com/x"`` → ``"example.com"``."""
    value = normalize_text(site).strip()
    value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value)
    for prefix in ("/r/", "r/"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    value = value.lstrip("/")
    value = re.split(r"[/:?#]", value, maxsplit=1)[0].strip(".")
    if value.startswith("www."):
        value = value[4:]
    return value


def _normalize_lang(code: str | None) -> str:
    if not code:
        return ""
    return re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0]


def _author_matches(wanted: str, author: str) -> bool:
    """Both normalized. ``bob`` also matches the federated handle ``bob@any.instance``."""
    if not wanted or not author:
        return False
    if wanted == author:
        return True
    return "@" not in wanted and "@" in author and author.split("@", 1)[0] == wanted


def _site_matches(wanted: str, site: str) -> bool:
    """Both normalized. ``example.com`` matches subdomains; ``apple`` matches a host label."""
    if not wanted or not site:
        return False
    if wanted == site:
        return True
    if "." in wanted:
        return site.endswith("." + wanted)
    labels = site.split(".")
    return len(labels) > 1 and wanted in labels[:-1]


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Document:
    """What a query is matched against."""

    text: str  # title + body, plain text
    author: str = ""
    site: str = ""  # subreddit / SE site / instance host / domain, '' if unknown
    lang: str | None = None  # ISO 639-1 if known


class _Prepared:
    """A document normalized once, shared by every query tested against it."""

    __slots__ = ("_tokens", "author", "cache", "lang", "site", "text")

    def __init__(self, doc: Document | str) -> None:
        if not isinstance(doc, Document):
            doc = Document(text=doc)
        self.text = _match_text(doc.text if isinstance(doc.text, str) else str(doc.text))
        self.author = normalize_author(doc.author or "")
        self.site = normalize_site(doc.site or "")
        self.lang = _normalize_lang(doc.lang)
        self.cache: dict[_Matcher, bool] = {}
        self._tokens: frozenset[str] | None = None

    @property
    def tokens(self) -> frozenset[str]:
        if self._tokens is None:
            self._tokens = frozenset(_TOKEN.findall(self.text))
        return self._tokens


# --------------------------------------------------------------------------- errors


class QuerySyntaxError(ValueError):
    """A malformed query.

    **Attributes:**

    * `query` - the query text.
    * `position` - 0-based character offset of the problem in `query`.
    * `message` - what is wrong, without the position (``"unclosed parenthesis"``).
    * `index` - which query of a `QuerySet` failed (0-based), ``None`` for a lone query.

    ``str(err)`` renders the query with a caret under the position.
    """

    def __init__(self, message: str, query: str, position: int, index: int | None = None) -> None:
        self.message = message
        self.query = query
        self.position = max(0, min(position, len(query)))
        self.index = index
        super().__init__(message, query, self.position)

    def __str__(self) -> str:
        head = f"{self.message} at position {self.position}"
        if self.index is not None:
            head = f"query [{self.index}]: {head}"
        line, caret = _caret_lines(self.query, self.position)
        return f"{head}\n  {line}\n  {caret}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.query, self.position, self.index))


def _display_width(text: str) -> int:
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _caret_lines(query: str, position: int, window: int = 60) -> tuple[str, str]:
    start = max(0, position - window)
    end = min(len(query), position + window)
    shown = "".join(" " if c.isspace() or not c.isprintable() else c for c in query[start:end])
    prefix = "..." if start else ""
    suffix = "..." if end < len(query) else ""
    pad = len(prefix) + _display_width(shown[: position - start])
    return prefix + shown + suffix, " " * pad + "^"


# --------------------------------------------------------------------------- matchers


class _Matcher:
    """A compiled term or phrase (shared between queries through a cache)."""

    __slots__ = ("regex", "required", "word")

    def __init__(self, pattern: str, required: frozenset[str], word: str | None) -> None:
        self.regex = re.compile(pattern)
        self.required = required  # tokens that must all be in the text
        self.word = word  # set when the matcher is exactly "this token is in the text"

    def test(self, doc: _Prepared) -> bool:
        if self.word is not None:
            return self.word in doc.tokens
        cached = doc.cache.get(self)
        if cached is None:
            cached = self.required <= doc.tokens and self.regex.search(doc.text) is not None
            doc.cache[self] = cached
        return cached


#: An anchor: (token, is_prefix). A document can only match if it has such a token.
_Anchor = tuple[str, bool]


@dataclass(frozen=True)
class _Compiled:
    pattern: str
    required: frozenset[str]
    anchor: _Anchor | None
    word: str | None


def _is_word(c: str) -> bool:
    return _WORD_CHAR.match(c) is not None


def _word_fragment(word: str, prefix: bool) -> tuple[str, list[tuple[str, bool, bool]]]:
    """Regex fragment of one normalized word, and its word runs as (run, left/right closed).

    The word's edges count as closed (the caller adds boundaries or separators) except the
    end of a prefix word. A flexible hyphen leaves the runs on both its sides open.
    """
    parts: list[str] = []
    runs: list[tuple[str, bool, bool]] = []
    run: list[str] = []
    run_left_closed = True
    n = len(word)
    for i, c in enumerate(word):
        if _is_word(c):
            run.append(c)
            parts.append(re.escape(c))
            continue
        flex = c in _HYPHENS and 0 < i < n - 1 and _is_word(word[i - 1]) and _is_word(word[i + 1])
        if run:
            runs.append(("".join(run), run_left_closed, not flex))
            run = []
        run_left_closed = not flex
        parts.append(_FLEX_HYPHEN if flex else re.escape(c))
    if run:
        runs.append(("".join(run), run_left_closed, not prefix))
    return "".join(parts), runs


def _pick_anchor(runs: list[tuple[str, bool, bool]]) -> _Anchor | None:
    exact = [r for r, left, right in runs if left and right]
    if exact:
        return max(exact, key=len), False
    prefixes = [r for r, left, _right in runs if left]
    if prefixes:
        return max(prefixes, key=len), True
    return None


def _compile(words: tuple[str, ...], prefix: bool) -> _Compiled:
    """Compile normalized words (one for a term, several for a phrase) to a regex."""
    pieces: list[str] = []
    runs: list[tuple[str, bool, bool]] = []
    last = len(words) - 1
    for i, word in enumerate(words):
        fragment, word_runs = _word_fragment(word, prefix and i == last)
        runs.extend(word_runs)
        if i:
            before, after = words[i - 1][-1], word[0]
            if _is_word(before) and _is_word(after):
                pieces.append(r"(?:'s)?\W++")
            elif _is_word(after):
                pieces.append(r"\W*+")
            else:
                pieces.append(rf"[^\w{re.escape(after)}]*+")
        pieces.append(fragment)
    pattern = "".join(pieces)
    if _is_word(words[0][0]):
        pattern = r"(?<!\w)" + pattern
    if not prefix and _is_word(words[-1][-1]):
        pattern += r"(?!\w)"
    required = frozenset(r for r, left, right in runs if left and right)
    single = len(words) == 1 and not prefix and len(runs) == 1
    whole = words[0] if single and runs[0][0] == words[0] else None
    return _Compiled(pattern, required, _pick_anchor(runs), whole)


@functools.lru_cache(maxsize=65536)
def _matcher(words: tuple[str, ...], prefix: bool) -> tuple[_Matcher, _Anchor | None]:
    compiled = _compile(words, prefix)
    return _Matcher(compiled.pattern, compiled.required, compiled.word), compiled.anchor


# --------------------------------------------------------------------------- the tree


class _Node:
    __slots__ = ("cost", "pos")

    def __init__(self, pos: int) -> None:
        self.pos = pos
        self.cost = 1  # evaluation order inside an AND: cheap first, exclusions last

    def test(self, doc: _Prepared) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def anchors(self) -> list[_Anchor] | None:
        """Tokens of which a matching document has at least one; ``None``: no such set."""
        return None

    def only_exclusions(self) -> bool:
        return False

    def terms(self) -> Iterator[str]:
        return iter(())


class _Text(_Node):
    """A term or a phrase."""

    __slots__ = ("anchor", "matcher", "search")

    def __init__(self, pos: int, words: tuple[str, ...], prefix: bool, search: str) -> None:
        super().__init__(pos)
        self.matcher, self.anchor = _matcher(words, prefix)
        self.search = search
        self.cost = 0 if self.matcher.word is not None else 2

    def test(self, doc: _Prepared) -> bool:
        return self.matcher.test(doc)

    def anchors(self) -> list[_Anchor] | None:
        return None if self.anchor is None else [self.anchor]

    def terms(self) -> Iterator[str]:
        yield self.search


class _Field(_Node):
    __slots__ = ("field", "value")

    def __init__(self, pos: int, field: str, value: str) -> None:
        super().__init__(pos)
        self.field = field
        self.value = value

    def test(self, doc: _Prepared) -> bool:
        if self.field == "site":
            return _site_matches(self.value, doc.site)
        if self.field == "author":
            return _author_matches(self.value, doc.author)
        return self.value == doc.lang


class _Not(_Node):
    __slots__ = ("child",)

    def __init__(self, pos: int, child: _Node) -> None:
        super().__init__(pos)
        self.child = child
        self.cost = 3

    def test(self, doc: _Prepared) -> bool:
        return not self.child.test(doc)

    def only_exclusions(self) -> bool:
        return True


class _And(_Node):
    __slots__ = ("children",)

    def __init__(self, pos: int, children: list[_Node]) -> None:
        super().__init__(pos)
        # cheapest and most selective first; exclusions last
        self.children = sorted(children, key=lambda c: c.cost)
        self.cost = max(c.cost for c in children)

    def test(self, doc: _Prepared) -> bool:
        return all(c.test(doc) for c in self.children)

    def anchors(self) -> list[_Anchor] | None:
        best: list[_Anchor] | None = None
        for child in self.children:
            found = child.anchors()
            if found is not None and (best is None or len(found) < len(best)):
                best = found
        return best

    def only_exclusions(self) -> bool:
        return all(c.only_exclusions() for c in self.children)

    def terms(self) -> Iterator[str]:
        for child in self.children_in_order():
            yield from child.terms()

    def children_in_order(self) -> list[_Node]:
        return sorted(self.children, key=lambda c: c.pos)


class _Or(_Node):
    __slots__ = ("children",)

    def __init__(self, pos: int, children: list[_Node]) -> None:
        super().__init__(pos)
        self.children = children
        self.cost = max(c.cost for c in children)

    def test(self, doc: _Prepared) -> bool:
        return any(c.test(doc) for c in self.children)

    def anchors(self) -> list[_Anchor] | None:
        union: list[_Anchor] = []
        for child in self.children:
            found = child.anchors()
            if found is None:
                return None
            union.extend(a for a in found if a not in union)
        return union

    def only_exclusions(self) -> bool:
        return any(c.only_exclusions() for c in self.children)

    def terms(self) -> Iterator[str]:
        for child in self.children:
            yield from child.terms()


# --------------------------------------------------------------------------- the parser

_OPEN_QUOTES = '"“”„'
_CLOSE_QUOTES = '"“”'
_STOP = frozenset("()" + _OPEN_QUOTES)
_FIELD = re.compile(r"[A-Za-z]+:")
_PHRASE_STRIP_END = ",;:!?.…'\"()[]{}"
_PHRASE_STRIP_START = ",;:!?¡¿'\"()[]{}"


@dataclass(frozen=True)
class _Token:
    kind: str  # "(" ")" OR AND NOT - TERM PHRASE FIELD END
    pos: int
    raw: str = ""  # term or phrase text, field value
    field: str = ""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(self._lex())
        self.i = 0

    def error(self, message: str, position: int) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.text, position)

    # -- lexer

    def _lex(self) -> Iterator[_Token]:
        text = self.text
        n = len(text)
        i = 0
        while i < n:
            c = text[i]
            if c.isspace():
                i += 1
            elif c in "()":
                yield _Token(c, i)
                i += 1
            elif c in _OPEN_QUOTES:
                content, end = self._quoted(i)
                yield _Token("PHRASE", i, content)
                i = end
            elif c == "-":
                nxt = text[i + 1] if i + 1 < n else ""
                if not nxt or nxt.isspace() or nxt == ")":
                    raise self.error("nothing to exclude after '-'", i)
                if nxt == "-":
                    raise self.error("'-' twice in a row (quote the term to search for it)", i)
                yield _Token("-", i)
                i += 1
            else:
                start = i
                field = _FIELD.match(text, i)
                if field is not None:
                    token = self._field(field)
                    if token is not None:
                        yield token[0]
                        i = token[1]
                        continue
                while i < n and not text[i].isspace() and text[i] not in _STOP:
                    i += 1
                raw = text[start:i]
                if raw in ("OR", "AND", "NOT"):
                    yield _Token(raw, start)
                else:
                    yield _Token("TERM", start, raw)
        yield _Token("END", n)

    def _quoted(self, start: int) -> tuple[str, int]:
        end = start + 1
        n = len(self.text)
        while end < n and self.text[end] not in _CLOSE_QUOTES:
            end += 1
        if end >= n:
            raise self.error("unterminated quote", start)
        return self.text[start + 1 : end], end + 1

    def _field(self, match: re.Match[str]) -> tuple[_Token, int] | None:
        text = self.text
        name = match.group()[:-1]
        start, i = match.start(), match.end()
        nxt = text[i] if i < len(text) else ""
        field = FIELDS.get(name.lower())
        if field is None:
            if not nxt or nxt.isspace() or nxt in "()/:":
                return None  # "http://x", "std::x", "note:" are plain terms
            close = difflib.get_close_matches(name.lower(), list(FIELDS), n=1, cutoff=0.6)
            hint = f", did you mean '{close[0]}:'?" if close else ""
            raise self.error(
                f"unknown field '{name}:'{hint} (fields: site:, subreddit:, author:, lang:; "
                "put a term with a colon in quotes)",
                start,
            )
        if not nxt or nxt.isspace() or nxt in "()":
            raise self.error(f"missing value for field '{name}:'", start)
        if nxt in _OPEN_QUOTES:
            value, i = self._quoted(i)
        else:
            end = i
            while end < len(text) and not text[end].isspace() and text[end] not in "()":
                end += 1
            value, i = text[i:end], end
        if not value.strip():
            raise self.error(f"missing value for field '{name}:'", start)
        return _Token("FIELD", start, value, field), i

    # -- grammar

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> _Node:
        if self.peek().kind == "END":
            raise self.error("empty query", 0)
        node = self.or_expr(0)
        token = self.peek()
        if token.kind == ")":
            raise self.error("unbalanced parenthesis: ')' without '('", token.pos)
        if token.kind != "END":  # pragma: no cover - or_expr consumes everything else
            raise self.error("unexpected input", token.pos)
        if node.only_exclusions():
            if isinstance(node, _Or):
                branch = next(c for c in node.children if c.only_exclusions())
                raise self.error(
                    "this OR branch has only exclusions, so the query would match almost "
                    "everything",
                    branch.pos,
                )
            raise self.error("a query made only of exclusions would match everything", node.pos)
        return node

    def or_expr(self, depth: int) -> _Node:
        token = self.peek()
        if token.kind in ("OR", "AND"):
            raise self.error(f"'{token.kind}' needs a term on its left", token.pos)
        branches = [self.and_expr(depth)]
        while self.peek().kind == "OR":
            op = self.take()
            if self.peek().kind in ("END", ")", "OR", "AND"):
                raise self.error("'OR' needs a term on its right", op.pos)
            branches.append(self.and_expr(depth))
        return branches[0] if len(branches) == 1 else _Or(branches[0].pos, branches)

    def and_expr(self, depth: int) -> _Node:
        items = [self.unary(depth)]
        while True:
            token = self.peek()
            if token.kind in ("END", ")", "OR"):
                break
            if token.kind == "AND":
                self.take()
                if self.peek().kind in ("END", ")", "OR", "AND"):
                    raise self.error("'AND' needs a term on its right", token.pos)
                continue
            items.append(self.unary(depth))
        return items[0] if len(items) == 1 else _And(items[0].pos, items)

    def unary(self, depth: int) -> _Node:
        token = self.peek()
        if token.kind in ("-", "NOT"):
            self.take()
            if self.peek().kind in ("END", ")", "OR", "AND", "-", "NOT"):
                raise self.error(f"nothing to exclude after '{token.kind}'", token.pos)
            return _Not(token.pos, self.primary(depth))
        return self.primary(depth)

    def primary(self, depth: int) -> _Node:
        token = self.take()
        if token.kind == "(":
            if depth >= MAX_DEPTH:
                raise self.error(f"parentheses nested too deeply (at most {MAX_DEPTH})", token.pos)
            if self.peek().kind == ")":
                raise self.error("empty group '()'", token.pos)
            if self.peek().kind == "END":
                raise self.error("unclosed parenthesis", token.pos)
            node = self.or_expr(depth + 1)
            if self.peek().kind != ")":
                raise self.error("unclosed parenthesis", token.pos)
            self.take()
            return node
        if token.kind == "TERM":
            return self.term(token)
        if token.kind == "PHRASE":
            return self.phrase(token)
        if token.kind == "FIELD":
            return self.field(token)
        if token.kind == ")":
            raise self.error("unbalanced parenthesis: ')' without '('", token.pos)
        if token.kind in ("OR", "AND"):
            raise self.error(f"'{token.kind}' needs a term on its left", token.pos)
        raise self.error("unexpected end of query", token.pos)  # pragma: no cover

    def term(self, token: _Token) -> _Node:
        raw = token.raw
        prefix = raw.endswith("*")
        stem = raw.rstrip("*") if prefix else raw
        word = _match_text(stem)
        if prefix:
            if not word:
                raise self.error("'*' needs a word prefix before it, like 'acme*'", token.pos)
            if len(word) < MIN_PREFIX:
                raise self.error(
                    f"prefix '{raw}' is too short (at least {MIN_PREFIX} characters)", token.pos
                )
        if not word.strip():
            raise self.error("empty term", token.pos)
        if any(c.isspace() for c in word):  # NFKC can turn a symbol into spaces
            return _Text(token.pos, tuple(word.split()), prefix, stem)
        return _Text(token.pos, (word,), prefix, stem)

    def phrase(self, token: _Token) -> _Node:
        raw = " ".join(token.raw.split())
        prefix = raw.endswith("*")
        if prefix:
            raw = raw.rstrip("*").rstrip()
        words = []
        for word in _match_text(raw).split():
            stripped = word.rstrip(_PHRASE_STRIP_END).lstrip(_PHRASE_STRIP_START)
            if stripped and not all(unicodedata.category(c).startswith("P") for c in stripped):
                words.append(stripped)
        if not words:
            # nothing but punctuation (or nothing at all): match it literally if anything
            words = _match_text(raw).split()
        if not words:
            raise self.error("empty phrase", token.pos)
        if prefix and len(words[-1]) < MIN_PREFIX:
            raise self.error(
                f"prefix '{words[-1]}*' is too short (at least {MIN_PREFIX} characters)",
                token.pos,
            )
        return _Text(token.pos, tuple(words), prefix, raw)

    def field(self, token: _Token) -> _Node:
        if token.field == "site":
            value = normalize_site(token.raw)
        elif token.field == "author":
            value = normalize_author(token.raw)
        else:
            value = _normalize_lang(token.raw)
            if not re.fullmatch(r"[a-z]{2,3}", value):
                raise self.error(
                    f"'{token.raw}' is not a language code (use ISO 639-1, like 'lang:en')",
                    token.pos,
                )
        if not value:
            raise self.error(f"missing value for field '{token.field}:'", token.pos)
        return _Field(token.pos, token.field, value)


# --------------------------------------------------------------------------- public API


class Query:
    """One parsed query. Build it with `Query.parse`.

    ```python
    >>> q = Query.parse('acme -"acme corp"')
    >>> q.matches("Loving the Acme app!")
    True
    >>> q.search_terms()
    ['acme']
    ```
    """

    __slots__ = ("_anchors", "_root", "text")

    def __init__(self, text: str, root: _Node) -> None:
        self.text = text
        self._root = root
        self._anchors = root.anchors()

    @classmethod
    def parse(cls, text: str) -> Query:
        """Parse a query.

        **Parameters:**

        * **text** - the query source, e.g. ``acme OR "acme app" -site:r/acmecorp``.

        Raises `QuerySyntaxError` (a `ValueError`) with the position of the problem.
        """
        if not isinstance(text, str):
            raise TypeError(f"a query is a str, not {type(text).__name__}")
        if len(text) > MAX_QUERY_LENGTH:
            raise QuerySyntaxError(
                f"query too long ({len(text)} characters, at most {MAX_QUERY_LENGTH})",
                text,
                MAX_QUERY_LENGTH,
            )
        return cls(text, _Parser(text).parse())

    def matches(self, doc: Document | str) -> bool:
        """Whether the document (or plain text) is a mention according to this query."""
        return self._root.test(_Prepared(doc))

    def _test(self, doc: _Prepared) -> bool:
        return self._root.test(doc)

    def search_terms(self) -> list[str]:
        """The positive terms and phrases, for a source's server-side search.

        Terms under a negation are left out, prefix terms lose their ``*``, phrases their
        quotes; deduplicated case-insensitively, in query order.
        """
        return _dedupe(self._root.terms())

    def __repr__(self) -> str:
        return f"Query.parse({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Query) and other.text == self.text

    def __hash__(self) -> int:
        return hash(("Query", self.text))


def _dedupe(terms: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    result: list[str] = []
    for term in terms:
        key = normalize_text(term)
        if key not in seen:
            seen.add(key)
            result.append(term)
    return result


class QuerySet:
    """The configured queries plus the globally excluded authors.

    **Parameters:**

    * **queries** - query strings (parsed here) or `Query` objects, in priority order.
    * **excluded_authors** - authors whose posts never match (your team, bots);
      case-insensitive, a leading ``@``, ``u/`` or ``/u/`` is ignored.

    Raises `QuerySyntaxError` with `index` set to the failing query.
    """

    def __init__(
        self, queries: Sequence[str | Query], excluded_authors: Iterable[str] = ()
    ) -> None:
        parsed: list[Query] = []
        for index, query in enumerate(queries):
            if isinstance(query, Query):
                parsed.append(query)
                continue
            try:
                parsed.append(Query.parse(query))
            except QuerySyntaxError as exc:
                raise QuerySyntaxError(exc.message, exc.query, exc.position, index) from None
        self.queries: tuple[Query, ...] = tuple(parsed)
        self.excluded_authors: frozenset[str] = frozenset(
            a for a in map(normalize_author, excluded_authors) if a
        )
        self._exact: dict[str, list[int]] = {}
        self._prefix: dict[str, list[int]] = {}
        self._always: list[int] = []
        for index, query in enumerate(self.queries):
            anchors = query._anchors
            if anchors is None:
                self._always.append(index)
                continue
            for token, is_prefix in anchors:
                bucket = self._prefix if is_prefix else self._exact
                bucket.setdefault(token, []).append(index)
        self._prefix_lengths = sorted({len(p) for p in self._prefix})

    def __len__(self) -> int:
        return len(self.queries)

    def __iter__(self) -> Iterator[Query]:
        return iter(self.queries)

    def __repr__(self) -> str:
        return f"QuerySet({[q.text for q in self.queries]!r})"

    def excludes_author(self, author: str) -> bool:
        """Whether ``author`` is one of the excluded authors."""
        if not self.excluded_authors or not author:
            return False
        return self._excluded(normalize_author(author))

    def _excluded(self, author: str) -> bool:
        if not author or not self.excluded_authors:
            return False
        if author in self.excluded_authors:
            return True
        return "@" in author and author.split("@", 1)[0] in self.excluded_authors

    def match(self, doc: Document | str) -> Query | None:
        """The first query (in configured order) matching the document, or ``None``.

        A document by an excluded author never matches.
        """
        prepared = _Prepared(doc)
        if self._excluded(prepared.author):
            return None
        for index in self._candidates(prepared):
            query = self.queries[index]
            if query._test(prepared):
                return query
        return None

    def _candidates(self, doc: _Prepared) -> list[int]:
        """Indices of the queries that can match ``doc``, in order (a superset)."""
        if len(self._always) == len(self.queries):
            return list(range(len(self.queries)))
        found: set[int] = set(self._always)
        tokens = doc.tokens
        exact = self._exact
        for token in exact.keys() & tokens:
            found.update(exact[token])
        if self._prefix_lengths:
            prefix = self._prefix
            for length in self._prefix_lengths:
                heads = {t[:length] for t in tokens if len(t) >= length}
                for head in prefix.keys() & heads:
                    found.update(prefix[head])
        return sorted(found)

    def search_terms(self) -> list[str]:
        """The union of the queries' `Query.search_terms`, in order, deduplicated."""
        return _dedupe(t for q in self.queries for t in q.search_terms())
