"""Whisper token ids -> text: byte-level BPE decoding from the model's vocabulary.

Only decoding is needed at run time (prompts are made of special tokens), so the
``tokenizers`` package is not required: each vocabulary entry is a string of GPT-2
"byte-to-unicode" characters (openai/gpt-2 encoder.py ``bytes_to_unicode``) that maps back
to raw UTF-8 bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


@dataclass(frozen=True)
class SpecialTokens:
    eot: int
    sot: int
    transcribe: int
    translate: int
    no_speech: int
    no_timestamps: int
    timestamp_begin: int
    languages: dict[str, int]


class WhisperTokenizer:
    """Vocabulary + special token ids, loaded from ``vocabulary.txt`` (one token a line)."""

    def __init__(self, vocabulary: list[str]) -> None:
        self.vocab = vocabulary
        self._ids = {tok: i for i, tok in enumerate(vocabulary)}
        self.special = self._find_special()

    @classmethod
    def from_file(cls, path: Path) -> WhisperTokenizer:
        if path.suffix == ".json":
            vocab = json.loads(path.read_text(encoding="utf-8"))
            return cls(list(vocab) if isinstance(vocab, list) else
                       [k for k, _ in sorted(vocab.items(), key=lambda kv: kv[1])])
        return cls(path.read_text(encoding="utf-8").split("\n")[:-1])

    def token_id(self, text: str) -> int:
        try:
            return self._ids[text]
        except KeyError:
            raise KeyError(f"token {text!r} not in the vocabulary") from None

    def _find_special(self) -> SpecialTokens:
        langs = {tok[2:-2]: i for i, tok in enumerate(self.vocab)
                 if tok.startswith("<|") and tok.endswith("|>") and 2 <= len(tok) - 4 <= 3
                 and tok[2:-2].isalpha() and tok[2:-2].islower()}
        return SpecialTokens(
            eot=self.token_id("<|endoftext|>"),
            sot=self.token_id("<|startoftranscript|>"),
            transcribe=self.token_id("<|transcribe|>"),
            translate=self.token_id("<|translate|>"),
            no_speech=self._ids.get("<|nospeech|>", self._ids.get("<|nocaptions|>", -1)),
            no_timestamps=self.token_id("<|notimestamps|>"),
            timestamp_begin=self.token_id("<|0.00|>"),
            languages=langs,
        )

    @property
    def multilingual(self) -> bool:
        # English-only checkpoints have one token fewer (51864) than multilingual ones
        # (51865) though both list the language tokens (openai/whisper tokenizer.py).
        return len(self.vocab) >= 51865

    def prompt(self, language: str | None) -> list[int]:
        sp = self.special
        if not self.multilingual:
            return [sp.sot, sp.no_timestamps]
        lang = sp.languages.get(language or "en")
        if lang is None:
            raise ValueError(f"language {language!r} is not supported by this model")
        return [sp.sot, lang, sp.transcribe, sp.no_timestamps]

    def decode(self, ids: list[int]) -> str:
        table = _unicode_to_byte()
        out = bytearray()
        for i in ids:
            if i >= self.special.eot:
                continue  # special and timestamp tokens carry no text
            out.extend(table[ch] for ch in self.vocab[i] if ch in table)
        return out.decode("utf-8", errors="replace")
