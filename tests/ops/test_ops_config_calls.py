"""The ``[calls]`` block (issue 10): the plan interpreter is the one call path; the removed
``"call"`` interpreter is refused with what to use instead, naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.config import ConfigError, FlowInterpreter, load_config

REPO = Path(__file__).resolve().parents[2]


def test_plan_is_the_default_and_the_example_says_so(tmp_path: Path) -> None:
    assert load_config(REPO / "conf" / "mediasrv.example.toml").calls.interpreter is (
        FlowInterpreter.PLAN
    )
    p = tmp_path / "empty.toml"
    p.write_text("")
    assert load_config(p).calls.interpreter is FlowInterpreter.PLAN
    p.write_text('[calls]\ninterpreter = "plan"\n')
    assert load_config(p).calls.interpreter is FlowInterpreter.PLAN


@pytest.mark.parametrize(
    ("value", "needles"),
    [
        ('"call"', ('"call" was removed', 'use "plan"', "2: calls.interpreter")),
        ('"CALL"', ('"call" was removed',)),
        ('"plain"', ("unknown value 'plain'", "did you mean 'plan'?")),
        ("1", ("expected a string",)),
    ],
)
def test_other_values_are_refused_naming_the_line_and_key(
    tmp_path: Path, value: str, needles: tuple[str, ...]
) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(f"[calls]\ninterpreter = {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    message = str(exc.value)
    assert str(p) in message and all(n in message for n in needles), message
