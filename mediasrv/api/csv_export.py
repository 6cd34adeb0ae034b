"""The call log as CSV: one column per call-record field, JSON text for nested fields.

Text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) is prefixed
with ``'`` (OWASP "CSV injection"); caller display names come from the caller's From header,
so they are untrusted. Phone numbers such as ``+81312345678`` are left as they are.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable

from mediasrv.outputs.calllog import CallRecord

__all__ = ["CSV_COLUMNS", "csv_header", "csv_rows"]

CSV_COLUMNS = tuple(CallRecord.__dataclass_fields__)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(getattr(value, "value", value))
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def _encode(rows: Iterable[Iterable[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180 line breaks
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def csv_header() -> bytes:
    return _encode([CSV_COLUMNS])


def csv_rows(calls: Iterable[CallRecord]) -> bytes:
    return _encode([_cell(getattr(c, col)) for col in CSV_COLUMNS] for c in calls)
