"""The flow modules see legs and media only through their protocols: no sip/ import at all
(issue 10 §3), and the step registry covers the whole closed set of steps."""

from __future__ import annotations

import ast
from pathlib import Path

import mediasrv.calls
from mediasrv.calls.plan import STEP_TYPES
from mediasrv.calls.steps import HANDLERS

CALLS = Path(mediasrv.calls.__file__).parent
FLOW_MODULES = [
    "clock.py",
    "compile.py",
    "disposition.py",
    "flow.py",
    "legs.py",
    "operators.py",
    "plan.py",
    "queue.py",
    "simulate.py",
    "trace.py",
    *(f"steps/{p.name}" for p in sorted((CALLS / "steps").glob("*.py"))),
]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level and node.module:
            names.add("." * node.level + node.module)
    return names


def test_flow_modules_never_import_sip() -> None:
    assert len(FLOW_MODULES) > 12
    for name in FLOW_MODULES:
        imported = _imported(CALLS / name)
        bad = {
            m for m in imported if m.startswith("mediasrv.sip") or m.lstrip(".").startswith("sip")
        }
        assert not bad, f"{name} imports {bad}"
        old = {m for m in imported if m.endswith(("call", "routing", "peers", "admission"))}
        assert not old, f"{name} imports the old flow {old}"


def test_every_step_type_has_a_handler() -> None:
    assert set(HANDLERS) == set(STEP_TYPES)
