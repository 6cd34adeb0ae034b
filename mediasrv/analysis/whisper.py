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

from .mel import SAMPLE_RATE, log_mel_window
from .tokenizer import WhisperTokenizer

MAX_NEW_TOKENS = 224  # half the text context, as openai's sample_len default
TIME_PRECISION = 0.02  # seconds per timestamp token
MAX_INITIAL_TIMESTAMP_INDEX = 50  # first timestamp at most 1.0 s into the window


@dataclass(frozen=True)
class Piece:
    """A timed stretch of text from a timestamped decode (seconds in the window)."""

    start: float
    end: float
    text: str
    avg_logprob: float
    compression_ratio: float


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
        # With timestamps: the same, but timestamp tokens allowed.
        self._suppress_ts = self._suppress.copy()
        self._suppress_ts[sp.timestamp_begin :] = False
        self._suppress_begin = np.zeros(n_vocab, dtype=bool)
        self._suppress_begin[[i for i in cfg.get("suppress_ids_begin", []) if i < n_vocab]] = True
        k_shape = self.decoder.get_inputs()[1].shape
        self._layers, self._heads, self._d_head = int(k_shape[0]), int(k_shape[2]), int(k_shape[4])
        self.n_mels = int(self.encoder.get_inputs()[0].shape[1])

    @property
    def multilingual(self) -> bool:
        return self.tokenizer.multilingual

    def encode(self, audio16k: np.ndarray) -> dict[str, np.ndarray]:
        """Cross-attention keys/values of every decoder layer for one 30 s window."""
        outs = self.encoder.run(None, {"mel": log_mel_window(audio16k, self.n_mels)})
        names = [o.name for o in self.encoder.get_outputs()]
        return dict(zip(names, outs, strict=True))

    def _step(self, tokens: np.ndarray, sk: np.ndarray, sv: np.ndarray,
              cross: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, nk, nv = self.decoder.run(
            None, {"tokens": tokens, "self_k": sk, "self_v": sv, **cross})
        return logits, nk, nv

    def detect_language(self, audio16k: np.ndarray) -> str:
        cross = self.encode(audio16k)
        z = np.zeros((self._layers, 1, self._heads, 0, self._d_head), np.float32)
        logits, _, _ = self._step(np.array([[self.tokenizer.special.sot]]), z, z, cross)
        langs = self.tokenizer.special.languages
        ids = np.array(list(langs.values()))
        best = ids[int(np.argmax(logits[0, -1, ids]))]
        return next(k for k, v in langs.items() if v == best)

    def transcribe(self, audio16k: np.ndarray, language: str | None, beam_size: int = 5,
                   max_new_tokens: int = MAX_NEW_TOKENS) -> DecodeResult:
        """One utterance (<= 30 s), no timestamps."""
        tokens, lps, no_speech = self._decode(audio16k, language, beam_size, max_new_tokens,
                                              timestamps=False)
        text = self.tokenizer.decode(tokens).strip()
        return DecodeResult(text=text, tokens=tokens, avg_logprob=sum(lps) / (len(tokens) + 1),
                            no_speech_prob=no_speech, compression_ratio=compression_ratio(text))

    def transcribe_pieces(self, audio16k: np.ndarray, language: str | None, beam_size: int = 5,
                          max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[list[Piece], float]:
        """A window holding several utterances, decoded with timestamps.

        Returns the timed pieces (seconds from the window start) and the window's
        no-speech probability.
        """
        tokens, lps, no_speech = self._decode(audio16k, language, beam_size, max_new_tokens,
                                              timestamps=True)
        return self._pieces(tokens, lps, audio16k.size / SAMPLE_RATE), no_speech

    def _decode(self, audio16k: np.ndarray, language: str | None, beam_size: int,
                max_new_tokens: int, timestamps: bool) -> tuple[list[int], list[float], float]:
        cross = self.encode(audio16k)
        prompt = self.tokenizer.prompt(language)
        if timestamps:
            prompt = prompt[:-1]  # drop <|notimestamps|>
        z = np.zeros((self._layers, 1, self._heads, 0, self._d_head), np.float32)
        logits, sk, sv = self._step(np.array([prompt], np.int64), z, z, cross)
        sp = self.tokenizer.special
        no_speech = float(np.exp(_log_softmax(logits[0, 0].astype(np.float64)))[sp.no_speech]) \
            if sp.no_speech >= 0 else 0.0
        search = _BeamSearch(self, cross, beam_size, timestamps)
        tokens, lps = search.run(logits[:, -1], sk, sv, max_new_tokens)
        return tokens, lps, no_speech

    def _pieces(self, tokens: list[int], lps: list[float], duration: float) -> list[Piece]:
        ts0 = self.tokenizer.special.timestamp_begin
        pieces: list[Piece] = []
        start = 0.0
        buf: list[int] = []
        buf_lp: list[float] = []
        for tok, lp in zip(tokens, lps, strict=True):
            if tok >= ts0:
                t = (tok - ts0) * TIME_PRECISION
                if buf:
                    pieces.append(self._piece(start, t, buf, buf_lp))
                    buf, buf_lp = [], []
                start = t
            else:
                buf.append(tok)
                buf_lp.append(lp)
        if buf:  # the window ended inside an utterance
            pieces.append(self._piece(start, duration, buf, buf_lp))
        return [p for p in pieces if p.text]

    def _piece(self, start: float, end: float, toks: list[int], lps: list[float]) -> Piece:
        text = self.tokenizer.decode(toks).strip()
        return Piece(start, max(end, start), text, sum(lps) / (len(lps) + 1),
                     compression_ratio(text))

    def masked_logprobs(self, logits: np.ndarray, seqs: list[list[int]],
                        timestamps: bool) -> np.ndarray:
        lg = logits.astype(np.float64)
        if timestamps:
            lg[:, self._suppress_ts] = -np.inf
            for k, seq in enumerate(seqs):
                self._timestamp_rules(lg[k], seq)
        else:
            lg[:, self._suppress] = -np.inf
        if not seqs[0]:
            lg[:, self._suppress_begin] = -np.inf
        return _log_softmax(lg)

    def _timestamp_rules(self, lg: np.ndarray, seq: list[int]) -> None:
        """openai/whisper decoding.py ApplyTimestampRules, for one hypothesis."""
        sp = self.tokenizer.special
        ts0 = sp.timestamp_begin
        if not seq:
            lg[:ts0] = -np.inf  # start with a timestamp, at most 1 s in
            lg[ts0 + MAX_INITIAL_TIMESTAMP_INDEX + 1 :] = -np.inf
            return
        last_ts = seq[-1] >= ts0
        penult_ts = len(seq) < 2 or seq[-2] >= ts0
        if last_ts:
            if penult_ts:
                lg[ts0:] = -np.inf  # a pair is complete: text must follow
            else:
                lg[: sp.eot] = -np.inf  # a segment just ended: timestamp or EOT
        stamps = [t for t in seq if t >= ts0]
        if stamps:
            # Non-decreasing, and each segment of non-zero length.
            lowest = stamps[-1] if last_ts and not penult_ts else stamps[-1] + 1
            lg[ts0:lowest] = -np.inf
        lp = _log_softmax(lg[None])[0]
        if np.logaddexp.reduce(lp[ts0:]) > lp[:ts0].max():
            lg[:ts0] = -np.inf


class _BeamSearch:
    """Beam search with patience 1: stop once ``beam`` hypotheses have ended.

    Ranked by sum log-probability / length (openai's default length_penalty=None). The
    per-token log-probabilities of each hypothesis are kept for per-piece confidence.
    """

    def __init__(self, m: WhisperOnnx, cross: dict[str, np.ndarray], beam: int,
                 timestamps: bool) -> None:
        self.m, self.cross, self.beam, self.timestamps = m, cross, beam, timestamps

    def run(self, first_logits: np.ndarray, sk: np.ndarray, sv: np.ndarray,
            max_new: int) -> tuple[list[int], list[float]]:
        eot = self.m.tokenizer.special.eot
        beam = self.beam
        seqs: list[list[int]] = [[]]
        lps: list[list[float]] = [[]]
        scores = np.zeros(1)
        finished: dict[tuple[int, ...], tuple[float, list[float]]] = {}
        logprobs = self.m.masked_logprobs(first_logits, seqs, self.timestamps)
        for _ in range(max_new):
            cands: list[tuple[float, int, int, float]] = []  # score, parent, token, logprob
            for b in range(len(seqs)):
                top = np.argpartition(-logprobs[b], beam + 1)[: beam + 1]
                cands.extend((float(scores[b] + logprobs[b, t]), b, int(t), float(logprobs[b, t]))
                             for t in top)
            cands.sort(key=lambda c: -c[0])
            parents: list[int] = []
            new_seqs: list[list[int]] = []
            new_lps: list[list[float]] = []
            new_scores: list[float] = []
            seen: set[tuple[int, ...]] = set()
            for score, parent, tok, lp in cands:
                seq = (*seqs[parent], tok)
                if seq in seen or not np.isfinite(score):
                    continue
                seen.add(seq)
                if tok == eot:
                    if len(finished) < beam:
                        finished[seq[:-1]] = (score, lps[parent])
                else:
                    parents.append(parent)
                    new_seqs.append(list(seq))
                    new_lps.append([*lps[parent], lp])
                    new_scores.append(score)
                if len(new_seqs) == beam:
                    break
            if len(finished) >= beam or not new_seqs:
                break
            idx = np.array(parents)
            sk, sv = sk[:, idx], sv[:, idx]
            seqs, lps, scores = new_seqs, new_lps, np.array(new_scores)
            tokens = np.array([[s[-1]] for s in seqs], np.int64)
            logits, sk, sv = self.m._step(tokens, sk, sv, self.cross)
            logprobs = self.m.masked_logprobs(logits[:, -1], seqs, self.timestamps)
        if not finished:  # hit the length limit: keep the live hypotheses
            for live, lp_list, score in zip(seqs, lps, scores, strict=True):
                finished[tuple(live)] = (float(score), lp_list)
        best = max(finished.items(), key=lambda kv: kv[1][0] / max(len(kv[0]), 1))
        return list(best[0]), best[1][1]
