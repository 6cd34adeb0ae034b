"""Train the caller-gender classifier and export it to ONNX (reproducible).

Data: per-speaker mean F0 of VoxCeleb1 speakers (546 female, 665 male) shipped in the
PyPI package ``speech-gender-statistics`` 1.0.9 (MIT), file ``sgs/data/vox1_data.json``.
Only pitch is used: formant and spectral-tilt statistics do not survive the 300-3400 Hz
telephone band, while F0 (from the harmonic spacing) does.

Model: logistic regression on log(mean F0 in Hz), exported with skl2onnx (no ZipMap), input
``f0_log`` float [N, 1], outputs ``label`` int64 (0 female, 1 male) and ``probabilities``.

    python models/train_gender.py [--out mediasrv/analysis/data/gender.onnx]

prints the 10-fold cross-validated accuracy and the output file's sha256, which must equal
``GENDER_SHA256`` in mediasrv/analysis/modelbuild.py (the shipped file is reproduced
bit for bit with the pinned package versions below).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

import numpy as np

PINNED = {"speech-gender-statistics": "1.0.9"}
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "mediasrv" / "analysis" / "data" / "gender.onnx"


def load_data() -> tuple[np.ndarray, np.ndarray]:
    dist = md.distribution("speech-gender-statistics")
    if dist.version != PINNED["speech-gender-statistics"]:
        raise SystemExit(f"need speech-gender-statistics=={PINNED['speech-gender-statistics']}")
    raw = json.loads(Path(str(dist.locate_file("sgs/data/vox1_data.json"))).read_text())
    pitch = {k.lower(): v for k, v in raw.items()}["pitch"]
    f = np.asarray(pitch["f"], dtype=np.float64)
    m = np.asarray(pitch["m"], dtype=np.float64)
    x = np.log(np.concatenate([f, m]))[:, None]
    y = np.concatenate([np.zeros(f.size, np.int64), np.ones(m.size, np.int64)])
    return x, y


def main(argv: list[str] | None = None) -> int:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    x, y = load_data()
    clf = LogisticRegression(C=10.0, solver="lbfgs")
    cv = StratifiedKFold(n_splits=10, shuffle=True, random_state=0)
    acc = cross_val_score(clf, x, y, cv=cv)
    clf.fit(x, y)
    boundary = float(np.exp(-clf.intercept_[0] / clf.coef_[0, 0]))
    onx = to_onnx(clf, initial_types=[("f0_log", FloatTensorType([None, 1]))],
                  options={id(clf): {"zipmap": False}}, target_opset=17)
    onx.doc_string = f"P(male | log mean F0); 50% boundary {boundary:.1f} Hz"
    data = onx.SerializeToString()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"cv accuracy {acc.mean():.3f} +- {acc.std():.3f} on {y.size} speakers; "
          f"boundary {boundary:.1f} Hz")
    print(f"{args.out} sha256 {hashlib.sha256(data).hexdigest()} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
