"""Error rates for tests and the benchmark: CER (Japanese) and WER (English).

Both sides are normalised the same way before scoring: NFKC (full/half width), lower case,
punctuation and spaces removed for CER; simple kanji numerals to digits (Whisper writes
午後3時 where the script says 午後三時; the same words).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from .labels import _KANJI_NUM, _kanji_number


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def _norm_ja(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    t = _KANJI_NUM.sub(_kanji_number, t)
    return "".join(c for c in t if unicodedata.category(c)[0] in "LN")


def _norm_en_words(text: str) -> list[str]:
    t = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    t = re.sub(r"[^\w\s']", " ", t)
    return t.split()


def cer(ref: str, hyp: str) -> float:
    r = _norm_ja(ref)
    return edit_distance(list(r), list(_norm_ja(hyp))) / max(len(r), 1)


def wer(ref: str, hyp: str) -> float:
    r = _norm_en_words(ref)
    return edit_distance(r, _norm_en_words(hyp)) / max(len(r), 1)


def corpus_rate(pairs: Sequence[tuple[str, str]], japanese: bool) -> float:
    """Total edits / total reference units over several utterances."""
    edits = units = 0
    for ref, hyp in pairs:
        if japanese:
            r, h = list(_norm_ja(ref)), list(_norm_ja(hyp))
        else:
            r, h = _norm_en_words(ref), _norm_en_words(hyp)
        edits += edit_distance(r, h)
        units += len(r)
    return edits / max(units, 1)
