"""Reader for CTranslate2 ``model.bin`` files (binary version 6).

Layout (ctranslate2/specs/model_spec.py, ``ModelSpec._serialize``): little-endian
``u32 version``, string spec name, ``u32 revision``, ``u32 count`` then per variable: string
name, ``u8 rank``, ``u32`` dims, ``u8 dtype``, ``u32 nbytes``, raw bytes; then ``u32`` aliases
as (alias, target) string pairs. Strings are ``u16 length`` (including a trailing NUL) + bytes.
Used at model-build time only; the run time needs only the ONNX files.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

# ctranslate2 DataType enum ids -> numpy dtypes.
_DTYPES: dict[int, type[np.generic]] = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
}


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands."""


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CT2FormatError("truncated CTranslate2 model file")
    return data


def _u32(f: BinaryIO) -> int:
    value: int = struct.unpack("<I", _read_exact(f, 4))[0]
    return value


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<H", _read_exact(f, 2))
    return _read_exact(f, length)[:-1].decode("utf-8")


def read_ct2_model(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Return (spec name, {variable name: array}) with aliases resolved."""
    variables: dict[str, np.ndarray] = {}
    with path.open("rb") as f:
        version = _u32(f)
        if version != 6:
            raise CT2FormatError(f"unsupported CTranslate2 binary version {version}")
        spec = _string(f)
        _u32(f)  # spec revision
        for _ in range(_u32(f)):
            name = _string(f)
            rank = _read_exact(f, 1)[0]
            shape = struct.unpack(f"<{rank}I", _read_exact(f, 4 * rank))
            dtype_id = _read_exact(f, 1)[0]
            nbytes = _u32(f)
            raw = _read_exact(f, nbytes)
            dtype = _DTYPES.get(dtype_id)
            if dtype is None:
                raise CT2FormatError(f"variable {name}: unsupported dtype id {dtype_id}")
            variables[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        for _ in range(_u32(f)):
            alias, target = _string(f), _string(f)
            variables[alias] = variables[target]
    return spec, variables
