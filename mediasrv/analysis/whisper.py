"""Whisper inference on onnxruntime: encoder once per window, beam search over the
KV-cached decoder, hallucination guards.

Decoding follows openai/whisper decoding.py: prompt ``<|sot|><|lang|><|transcribe|>
<|notimestamps|>``, token suppression (config ``suppress_ids``, blank/EOT at the first
step, all special tokens), beam search with patience 1 ranked by sum log-prob / length,
``avg_logprob = sum / (len + 1)``, ``no_speech_prob`` from the logits at the SOT position.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .mel import log_mel_window
from .tokenizer import WhisperTokenizer

MAX_NEW_TOKENS = 224  # half the text context, as openai's sample_len default


@dataclass(frozen=True)
class DecodeResult:
    text: str
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    e = x - m
    return e - np.log(np.exp(e).sum(axis=-1, keepdims=True))


class WhisperOnnx:
    """One loaded model: encoder and decoder sessions plus tokenizer."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        prov = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(model_dir / "encoder.onnx"), so, providers=prov)
        self.decoder = ort.InferenceSession(str(model_dir / "decoder.onnx"), so, providers=prov)
        self.tokenizer = WhisperTokenizer.from_file(model_dir / "vocabulary.txt")
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        n_vocab = int(self.decoder.get_outputs()[0].shape[2])
        sp = self.tokenizer.special
        self._suppress = np.zeros(n_vocab, dtype=bool)
        self._suppress[[i for i in cfg.get("suppress_ids", []) if i < n_vocab]] = True
        self._suppress[sp.eot + 1 :] = True  # every special/timestamp token (no timestamps)
        self._suppress_begin = np.zeros(n_vocab, dtype=bool)
        self._suppress_begin[[i for i in cfg.get("suppress_ids_begin", []) if i < n_vocab]] = True
        k_shape = self.decoder.get_inputs()[1].shape
        self._layers, self._heads, self._d_head = int(k_shape[0]), int(k_shape[2]), int(k_shape[4])
        self.n_mels = int(self.encoder.get_inputs()[0].shape[1])

    @property
    def multilingual(self) -> bool:
        return self.tokenizer.multilingual

    def encode(self, audio16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ck, cv = self.encoder.run(None, {"mel": log_mel_window(audio16k, self.n_mels)})
        return ck, cv

    def _step(self, tokens: np.ndarray, sk: np.ndarray, sv: np.ndarray, ck: np.ndarray,
              cv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, nk, nv = self.decoder.run(
            None, {"tokens": tokens, "self_k": sk, "self_v": sv, "cross_k": ck, "cross_v": cv})
        return logits, nk, nv

    def detect_language(self, audio16k: np.ndarray) -> str:
        ck, cv = self.encode(audio16k)
        z = np.zeros((self._layers, 1, self._heads, 0, self._d_head), np.float32)
        logits, _, _ = self._step(np.array([[self.tokenizer.special.sot]]), z, z, ck, cv)
        langs = self.tokenizer.special.languages
        ids = np.array(list(langs.values()))
        best = ids[int(np.argmax(logits[0, -1, ids]))]
        return next(k for k, v in langs.items() if v == best)

    def transcribe(self, audio16k: np.ndarray, language: str | None, beam_size: int = 5,
                   max_new_tokens: int = MAX_NEW_TOKENS) -> DecodeResult:
        ck, cv = self.encode(audio16k)
        prompt = self.tokenizer.prompt(language)
        z = np.zeros((self._layers, 1, self._heads, 0, self._d_head), np.float32)
        logits, sk, sv = self._step(np.array([prompt], np.int64), z, z, ck, cv)
        sp = self.tokenizer.special
        no_speech = float(np.exp(_log_softmax(logits[0, 0].astype(np.float64)))[sp.no_speech]) \
            if sp.no_speech >= 0 else 0.0
        tokens, sum_lp = _beam_search(self, logits[:, -1], sk, sv, ck, cv, beam_size, max_new_tokens)
        text = self.tokenizer.decode(tokens).strip()
        return DecodeResult(text=text, tokens=tokens, avg_logprob=sum_lp / (len(tokens) + 1),
                            no_speech_prob=no_speech, compression_ratio=compression_ratio(text))

    def masked_logprobs(self, logits: np.ndarray, first: bool) -> np.ndarray:
        lg = logits.astype(np.float64)
        lg[:, self._suppress] = -np.inf
        if first:
            lg[:, self._suppress_begin] = -np.inf
        return _log_softmax(lg)


def _beam_search(m: WhisperOnnx, first_logits: np.ndarray, sk: np.ndarray, sv: np.ndarray,
                 ck: np.ndarray, cv: np.ndarray, beam: int, max_new: int) -> tuple[list[int], float]:
    """Beam search with patience 1: stop once ``beam`` hypotheses have ended."""
    eot = m.tokenizer.special.eot
    seqs: list[list[int]] = [[]]
    scores = np.zeros(1)
    finished: dict[tuple[int, ...], float] = {}
    logprobs = m.masked_logprobs(first_logits, first=True)
    for step in range(max_new):
        cands: list[tuple[float, int, int]] = []  # (score, parent beam, token)
        for b in range(len(seqs)):
            top = np.argpartition(-logprobs[b], beam + 1)[: beam + 1]
            cands.extend((float(scores[b] + logprobs[b, t]), b, int(t)) for t in top)
        cands.sort(key=lambda c: -c[0])
        parents: list[int] = []
        new_seqs: list[list[int]] = []
        new_scores: list[float] = []
        seen: set[tuple[int, ...]] = set()
        for score, parent, tok in cands:
            seq = (*seqs[parent], tok)
            if seq in seen or not np.isfinite(score):
                continue
            seen.add(seq)
            if tok == eot:
                if len(finished) < beam:
                    finished[seq[:-1]] = score
            else:
                parents.append(parent)
                new_seqs.append(list(seq))
                new_scores.append(score)
            if len(new_seqs) == beam:
                break
        if len(finished) >= beam or not new_seqs or step == max_new - 1:
            if not finished:
                for seq_l, s in zip(new_seqs or seqs, new_scores or list(scores), strict=True):
                    finished[tuple(seq_l)] = s
            break
        idx = np.array(parents)
        sk, sv = sk[:, idx], sv[:, idx]
        seqs, scores = new_seqs, np.array(new_scores)
        tokens = np.array([[s[-1]] for s in seqs], np.int64)
        logits, sk, sv = m._step(tokens, sk, sv, ck, cv)
        logprobs = m.masked_logprobs(logits[:, -1], first=False)
    # Rank by length-normalised log-probability (openai's default length_penalty=None).
    best = max(finished.items(), key=lambda kv: kv[1] / max(len(kv[0]), 1))
    return list(best[0]), best[1]
