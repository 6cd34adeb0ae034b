"""How often would an AVX2 u8s8 kernel saturate on this model? (issue 7, the cause)

    python scripts/int8_saturation.py [--model whisper-base] [--models-dir DIR] [--rows 1500]

onnxruntime runs the quantised MatMuls as MatMulInteger on u8 activations and s8 weights.
Without VNNI (AVX2, AVX-512 before VNNI) its kernel multiplies with ``vpmaddubsw``, which
adds each pair of adjacent u8*s8 products into a signed 16-bit lane with saturation; VNNI's
``vpdpbusd`` adds in 32 bits. So the two CPUs give the same model different integers exactly
where a pair sum leaves [-32768, 32767]. This script runs the encoder natively on the fixed
window of scripts/portability_probe.py, takes the real u8 inputs of every MatMulInteger and
counts, on ``--rows`` rows of each, the pair sums that would saturate and how much the int32
accumulators would change. Exact numpy arithmetic, no emulation: fast, and it measures the
cause, not a symptom.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from portability_probe import fixed_window


def _activations(path: Path) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Run the encoder with every MatMulInteger's u8 input exposed as an output."""
    from mediasrv.analysis.mel import log_mel_window

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type == "MatMulInteger" and n.input[1] in inits]
    del model.graph.output[:]
    for n in nodes:
        model.graph.output.append(helper.make_tensor_value_info(n.input[0], TensorProto.UINT8, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the nodes
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    n_mels = int(sess.get_inputs()[0].shape[1])
    outs = sess.run(None, {"mel": log_mel_window(fixed_window(), n_mels)})
    return [(n.name, a, inits[n.input[1]]) for n, a in zip(nodes, outs, strict=True)], inits


def saturation(a: np.ndarray, w: np.ndarray, rows: int) -> tuple[int, int, int, int, float]:
    """(pair sums, saturated ones, outputs, changed ones, max |change| / max |acc|)."""
    a2 = a.reshape(-1, a.shape[-1]).astype(np.int32)
    pick = np.linspace(0, a2.shape[0] - 1, min(rows, a2.shape[0])).astype(int)
    a2 = a2[pick]
    k = a2.shape[1] - a2.shape[1] % 2
    wt = w.astype(np.int32).T
    n_sat = n_changed = 0
    worst_change = max_acc = 0
    for r in range(0, a2.shape[0], 8):  # 8 rows at a time: [8, N, K/2] int32 pair sums
        blk = a2[r : r + 8]
        pairs = blk[:, None, 0:k:2] * wt[None, :, 0:k:2] + blk[:, None, 1:k:2] * wt[None, :, 1:k:2]
        clipped = np.clip(pairs, -32768, 32767)
        exact = pairs.sum(-1)
        changed = exact - clipped.sum(-1)
        n_sat += int(np.count_nonzero(pairs != clipped))
        n_changed += int(np.count_nonzero(changed))
        worst_change = max(worst_change, int(np.max(np.abs(changed))))
        max_acc = max(max_acc, int(np.max(np.abs(exact))))
    n_pairs = a2.shape[0] * wt.shape[0] * (k // 2)
    return (n_pairs, n_sat, a2.shape[0] * wt.shape[0], n_changed,
            worst_change / max(1, max_acc))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--rows", type=int, default=1500)
    args = ap.parse_args()
    from mediasrv.analysis.manifest import default_models_dir

    path = (args.models_dir or default_models_dir()) / args.model / "encoder.onnx"
    layers, _ = _activations(path)
    pairs = sat = outs = changed = 0
    worst = 0.0
    wmax = 0
    for _name, a, w in layers:
        n_p, n_s, n_o, n_c, rel = saturation(a, w, args.rows)
        pairs, sat, outs, changed = pairs + n_p, sat + n_s, outs + n_o, changed + n_c
        worst = max(worst, rel)
        wmax = max(wmax, int(np.abs(w.astype(np.int32)).max()))
    print(f"{path}: {len(layers)} int8 MatMuls, weights within +-{wmax}; on up to {args.rows} "
          f"rows of each: {sat} of {pairs} pair sums saturate ({sat / pairs:.2g}), {changed} of "
          f"{outs} accumulators change ({changed / outs:.2g}), the largest by {100 * worst:.3f} "
          f"% of the largest accumulator")
    print(f"RESULT int8_saturation saturated_pairs={sat} pairs={pairs} changed_outputs={changed} "
          f"outputs={outs} weight_max={wmax}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
