"""Build Whisper encoder and KV-cached decoder ONNX graphs straight from weights.

No torch: the graphs are written node by node with the ``onnx`` helper API from the
CTranslate2 weights (build time only). Architecture as in OpenAI's Whisper (model.py):
pre-LayerNorm transformer blocks, exact (erf) GELU, sinusoidal/learned position tables.

Graphs:
- encoder: ``mel [1, n_mels, 3000]`` -> per decoder layer i ``cross_k{i} [1, H, Dh, 1500]``
  (keys pre-transposed) and ``cross_v{i} [1, H, 1500, Dh]``: the cross-attention keys and
  values, computed once per 30 s window. One input per layer, so that no decoder step
  copies them (a Gather from a stacked tensor would copy ~3 MB per layer per step).
- decoder: ``tokens [B, T]``, ``self_k, self_v [L, B, H, P, Dh]`` (cache, P may be 0),
  ``cross_k{i}, cross_v{i}`` (batch 1, broadcast over the B beams by MatMul) ->
  ``logits [B, T, V]``, ``new_self_k, new_self_v [L, B, H, P+T, Dh]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# Bumped whenever the graphs' inputs/outputs change; the manifest records it and the
# run time refuses (and `models build` rebuilds) models of another version.
GRAPH_VERSION = "4"
_NEG_INF = -1e9


@dataclass(frozen=True)
class WhisperDims:
    n_mels: int
    d_model: int
    n_heads: int
    enc_layers: int
    dec_layers: int
    n_vocab: int
    n_ctx_text: int

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


def dims_from_weights(w: dict[str, np.ndarray]) -> WhisperDims:
    def count(prefix: str) -> int:
        parts = (k.split("/") for k in w if k.startswith(prefix + "/layer_"))
        return len({p[1] for p in parts if p[1].removeprefix("layer_").isdigit()})

    d_model = int(w["encoder/conv1/weight"].shape[0])
    return WhisperDims(
        n_mels=int(w["encoder/conv1/weight"].shape[1]),
        d_model=d_model,
        n_heads=int(w["encoder/num_heads"]),
        enc_layers=count("encoder"),
        dec_layers=count("decoder"),
        n_vocab=int(w["decoder/embeddings/weight"].shape[0]),
        n_ctx_text=int(w["decoder/position_encodings/encodings"].shape[0]),
    )


class _Builder:
    """Tiny graph-writing helper: unique names, initializers, nodes."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(value, n))
        return n

    def f32(self, value: np.ndarray, hint: str) -> str:
        return self.const(np.ascontiguousarray(value, dtype=np.float32), hint)

    def i64(self, values: list[int], hint: str = "shape") -> str:
        return self.const(np.array(values, dtype=np.int64), hint)

    def op(self, op_type: str, inputs: list[str], hint: str = "", n_out: int = 1,
           **attrs: Any) -> list[str]:
        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs

    def op1(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        return self.op(op_type, inputs, hint, 1, **attrs)[0]

    # --- layers -------------------------------------------------------------------------
    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
        """y = x @ W^T + b; W^T is stored as the MatMul initializer so it quantises."""
        y = self.op1("MatMul", [x, self.f32(weight.astype(np.float32).T, hint + "_w")], hint)
        if bias is not None:
            y = self.op1("Add", [y, self.f32(bias, hint + "_b")], hint + "_add")
        return y

    def layer_norm(self, x: str, w: dict[str, np.ndarray], prefix: str) -> str:
        return self.op1(
            "LayerNormalization",
            [x, self.f32(w[prefix + "/gamma"], "ln_g"), self.f32(w[prefix + "/beta"], "ln_b")],
            "ln", axis=-1, epsilon=1e-5,
        )

    def gelu(self, x: str) -> str:
        # Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))); ORT fuses this pattern.
        e = self.op1("Erf", [self.op1("Div", [x, self.f32(np.array(math.sqrt(2.0)), "sq2")])])
        one = self.op1("Add", [e, self.f32(np.array(1.0), "one")])
        return self.op1("Mul", [self.op1("Mul", [x, one]), self.f32(np.array(0.5), "half")])

    def ffn(self, x: str, w: dict[str, np.ndarray], p: str) -> str:
        h = self.layer_norm(x, w, p + "/layer_norm")
        h = self.gelu(self.linear(h, w[p + "/linear_0/weight"], w[p + "/linear_0/bias"], "fc1"))
        h = self.linear(h, w[p + "/linear_1/weight"], w[p + "/linear_1/bias"], "fc2")
        return self.op1("Add", [x, h], "res")

    def split_heads(self, x: str, dims: WhisperDims) -> str:
        """[B, T, D] -> [B, H, T, Dh]."""
        r = self.op1("Reshape", [x, self.i64([0, 0, dims.n_heads, dims.d_head])])
        return self.op1("Transpose", [r], perm=[0, 2, 1, 3])

    def merge_heads(self, x: str, dims: WhisperDims) -> str:
        t = self.op1("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op1("Reshape", [t, self.i64([0, 0, dims.d_model])])

    def attend(self, q: str, k: str, v: str, dims: WhisperDims, mask: str | None,
               k_transposed: bool = False) -> str:
        """softmax(q k^T / sqrt(Dh) + mask) v over [B, H, T, Dh] tensors."""
        kt = k if k_transposed else self.op1("Transpose", [k], perm=[0, 1, 3, 2])
        s = self.op1("MatMul", [q, kt], "scores")
        s = self.op1("Mul", [s, self.f32(np.array(1.0 / math.sqrt(dims.d_head)), "scale")])
        if mask is not None:
            s = self.op1("Add", [s, mask], "masked")
        p = self.op1("Softmax", [s], axis=-1)
        return self.op1("MatMul", [p, v], "ctx")

    def attend_cross(self, q: str, kt: str, v: str, dims: WhisperDims) -> str:
        """Cross-attention of all beams against one shared encoder output.

        q [B, H, T, Dh] is regrouped to [1, H, B*T, Dh] so that each head is a single GEMM
        over the pre-transposed keys kt [1, H, Dh, 1500] (a broadcast batched MatMul would
        run B separate products and re-read the keys for every beam).
        """
        q_shape = self.op1("Shape", [q])
        rows = self.op1("Reshape", [self.op1("Transpose", [q], perm=[1, 0, 2, 3]),
                                    self.i64([1, dims.n_heads, -1, dims.d_head])])
        ctx = self.attend(rows, kt, v, dims, None, k_transposed=True)
        hbtd = self.op1("Concat", [
            self.op1("Slice", [q_shape, self.i64([1]), self.i64([2])]),
            self.op1("Slice", [q_shape, self.i64([0]), self.i64([1])]),
            self.op1("Slice", [q_shape, self.i64([2]), self.i64([4])]),
        ], axis=0)
        return self.op1("Transpose", [self.op1("Reshape", [ctx, hbtd])], perm=[1, 0, 2, 3])

    def split3(self, x: str, d: int) -> list[str]:
        return self.op("Split", [x, self.i64([d, d, d], "split")], "qkv", 3, axis=-1)


def _f(name: str, shape: list[int | str], elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(b: _Builder, name: str, inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, name, inputs, outputs, b.inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="mediasrv-modelbuild")
    model.ir_version = 8
    return model


def build_encoder(w: dict[str, np.ndarray], dims: WhisperDims) -> onnx.ModelProto:
    b = _Builder()
    x = "mel"
    for i, stride in ((1, 1), (2, 2)):
        x = b.op1("Conv", [x, b.f32(w[f"encoder/conv{i}/weight"], "conv_w"),
                           b.f32(w[f"encoder/conv{i}/bias"], "conv_b")],
                  f"conv{i}", pads=[1, 1], strides=[stride], kernel_shape=[3])
        x = b.gelu(x)
    x = b.op1("Transpose", [x], perm=[0, 2, 1])  # [1, 1500, D]
    x = b.op1("Add", [x, b.f32(w["encoder/position_encodings/encodings"], "enc_pos")])
    for i in range(dims.enc_layers):
        p = f"encoder/layer_{i}/self_attention"
        h = b.layer_norm(x, w, p + "/layer_norm")
        qkv = b.linear(h, w[p + "/linear_0/weight"], w[p + "/linear_0/bias"], "qkv")
        # onnxruntime's fused MultiHeadAttention (com.microsoft): same arithmetic as
        # softmax(q k^T / sqrt(Dh)) v per head, ~20% faster encoder on one CPU thread.
        q, k, v = b.split3(qkv, dims.d_model)
        ctx = b.name("mha")
        b.nodes.append(helper.make_node("MultiHeadAttention", [q, k, v], [ctx],
                                        domain="com.microsoft", num_heads=dims.n_heads))
        h = b.linear(ctx, w[p + "/linear_1/weight"], w[p + "/linear_1/bias"], "attn_out")
        x = b.op1("Add", [x, h], "res")
        x = b.ffn(x, w, f"encoder/layer_{i}/ffn")
    x = b.layer_norm(x, w, "encoder/layer_norm")
    outputs: list[onnx.ValueInfoProto] = []
    for i in range(dims.dec_layers):
        p = f"decoder/layer_{i}/attention/linear_1"
        kv = b.linear(x, w[p + "/weight"], w[p + "/bias"], "cross_kv")
        k, v = b.op("Split", [kv, b.i64([dims.d_model, dims.d_model], "split")], "kv", 2, axis=-1)
        # Keys stored transposed, [1, H, Dh, 1500], so no decoder step transposes them.
        kt = b.op1("Reshape", [k, b.i64([0, 0, dims.n_heads, dims.d_head])])
        b.nodes.append(helper.make_node("Transpose", [kt], [f"cross_k{i}"], perm=[0, 2, 3, 1]))
        b.nodes.append(helper.make_node("Identity", [b.split_heads(v, dims)], [f"cross_v{i}"]))
        outputs += [_f(f"cross_k{i}", [1, dims.n_heads, dims.d_head, 1500]),
                    _f(f"cross_v{i}", [1, dims.n_heads, 1500, dims.d_head])]
    return _model(b, "whisper_encoder", [_f("mel", [1, dims.n_mels, 3000])], outputs)


def _causal_mask(b: _Builder, tokens: str, past: str) -> tuple[str, str]:
    """Return (past length P as a 1-element tensor, additive mask [T, P+T])."""
    p_len = b.op1("Slice", [b.op1("Shape", [past]), b.i64([3]), b.i64([4])], "p_len")
    t_len = b.op1("Slice", [b.op1("Shape", [tokens]), b.i64([1]), b.i64([2])], "t_len")
    total = b.op1("Add", [p_len, t_len], "total")
    zero, one = b.const(np.array(0, np.int64)), b.const(np.array(1, np.int64))
    scalar = b.i64([], "scalar")
    rows = b.op1("Range", [b.op1("Reshape", [p_len, scalar]),
                           b.op1("Reshape", [total, scalar]), one], "rows")
    cols = b.op1("Range", [zero, b.op1("Reshape", [total, scalar]), one], "cols")
    future = b.op1("Greater", [b.op1("Unsqueeze", [cols, b.i64([0])]),
                               b.op1("Unsqueeze", [rows, b.i64([1])])])
    mask = b.op1("Where", [future, b.f32(np.array(_NEG_INF), "neg"), b.f32(np.array(0.0), "z")])
    return p_len, mask


def build_decoder(w: dict[str, np.ndarray], dims: WhisperDims) -> onnx.ModelProto:
    b = _Builder()
    p_len, mask = _causal_mask(b, "tokens", "self_k")
    emb = w["decoder/embeddings/weight"].astype(np.float32)
    x = b.op1("Gather", [b.f32(emb, "tok_emb"), "tokens"], "embed", axis=0)
    t_len = b.op1("Slice", [b.op1("Shape", ["tokens"]), b.i64([1]), b.i64([2])])
    end = b.op1("Add", [p_len, t_len])
    pos = b.op1("Slice", [b.f32(w["decoder/position_encodings/encodings"], "dec_pos"),
                          p_len, end, b.i64([0])], "pos")
    x = b.op1("Add", [x, pos])
    new_k: list[str] = []
    new_v: list[str] = []
    for i in range(dims.dec_layers):
        idx = b.i64([i], "layer")
        p = f"decoder/layer_{i}"
        h = b.layer_norm(x, w, p + "/self_attention/layer_norm")
        qkv = b.linear(h, w[p + "/self_attention/linear_0/weight"],
                       w[p + "/self_attention/linear_0/bias"], "qkv")
        q, k, v = (b.split_heads(t, dims) for t in b.split3(qkv, dims.d_model))
        past_k = b.op1("Squeeze", [b.op1("Gather", [ "self_k", idx], axis=0), b.i64([0])])
        past_v = b.op1("Squeeze", [b.op1("Gather", ["self_v", idx], axis=0), b.i64([0])])
        k = b.op1("Concat", [past_k, k], axis=2)
        v = b.op1("Concat", [past_v, v], axis=2)
        new_k.append(b.op1("Unsqueeze", [k, b.i64([0])]))
        new_v.append(b.op1("Unsqueeze", [v, b.i64([0])]))
        ctx = b.merge_heads(b.attend(q, k, v, dims, mask), dims)
        h = b.linear(ctx, w[p + "/self_attention/linear_1/weight"],
                     w[p + "/self_attention/linear_1/bias"], "self_out")
        x = b.op1("Add", [x, h], "res")
        # Cross-attention against the encoder's precomputed keys/values.
        h = b.layer_norm(x, w, p + "/attention/layer_norm")
        q = b.split_heads(b.linear(h, w[p + "/attention/linear_0/weight"],
                                   w[p + "/attention/linear_0/bias"], "cross_q"), dims)
        ctx = b.merge_heads(b.attend_cross(q, f"cross_k{i}", f"cross_v{i}", dims), dims)
        h = b.linear(ctx, w[p + "/attention/linear_2/weight"],
                     w[p + "/attention/linear_2/bias"], "cross_out")
        x = b.op1("Add", [x, h], "res")
        x = b.ffn(x, w, p + "/ffn")
    x = b.layer_norm(x, w, "decoder/layer_norm")
    logits = b.linear(x, emb, None, "logits")
    b.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    b.nodes.append(helper.make_node("Concat", new_k, ["new_self_k"], axis=0))
    b.nodes.append(helper.make_node("Concat", new_v, ["new_self_v"], axis=0))
    L, H, Dh = dims.dec_layers, dims.n_heads, dims.d_head
    inputs = [
        _f("tokens", ["B", "T"], TensorProto.INT64),
        _f("self_k", [L, "B", H, "P", Dh]),
        _f("self_v", [L, "B", H, "P", Dh]),
    ]
    for i in range(L):
        inputs += [_f(f"cross_k{i}", [1, H, Dh, 1500]), _f(f"cross_v{i}", [1, H, 1500, Dh])]
    outputs = [
        _f("logits", ["B", "T", dims.n_vocab]),
        _f("new_self_k", [L, "B", H, "PT", Dh]),
        _f("new_self_v", [L, "B", H, "PT", Dh]),
    ]
    return _model(b, "whisper_decoder", inputs, outputs)
