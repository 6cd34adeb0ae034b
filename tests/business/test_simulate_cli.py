"""``mediasrv simulate`` (issue 10 §5): the dry run from the stored configuration, through the
real SQLite business store in a temp data dir (the example business and the realistic flow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediasrv.business_file import dump_business, load_business_text
from mediasrv.cli import main
from mediasrv.config import ConfigError
from mediasrv.demo.flows import BLOCKED_CALLER, REALISTIC_NUMBER, realistic_business_toml

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "business.example.toml"
TARGETS = ("sip:a@127.0.0.1:30501", "sip:b@127.0.0.1:30502")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    args = ["--data-dir", str(tmp_path / "var")]
    realistic = tmp_path / "realistic.toml"
    realistic.write_text(realistic_business_toml(TARGETS), encoding="utf-8")
    for path in (EXAMPLE, realistic):
        assert run(capsys, "business", "apply", str(path), *args)[0] == 0
    return args


def test_after_hours_on_a_year_end_override_goes_to_voicemail(
    data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "simulate",
        "--number", "03-1234-5678",
        "--caller", "0311112222",
        "--at", "2026-12-29 19:00",
        *data,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("number +81312345678 (flow version 1), caller +81311112222")
    assert "hours:clinic: closed (override: 年末年始)" in out
    assert "ends:    voicemail" in out


def test_json_names_the_targets_in_rotation_order(
    data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "simulate",
        "--number", REALISTIC_NUMBER,
        "--caller", "09011113333",
        "--at", "2026-12-29 10:00",
        "--json",
        *data,
    )  # fmt: skip
    assert code == 0, err
    sim = json.loads(out)
    assert sim["number"] == "+81312340000" and sim["version"] == 2  # applied second
    assert sim["at"] == "2026-12-29T10:00:00+09:00"
    assert sim["targets"] == ["op-a", "op-b"]
    assert sim["rules"] == ["blocklist: not blocked", "hours:always: open (week)"]


def test_a_blocked_caller_names_the_rule(
    data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "simulate", "--number", REALISTIC_NUMBER, "--caller", BLOCKED_CALLER, *data
    )
    assert code == 0
    assert "blocked by number list: exact +81399990000" in out
    assert "targets: none" in out


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--number", "0399999999"], "no business in the store has this tracking number"),
        (["--number", REALISTIC_NUMBER, "--at", "tomorrow"], "expected YYYY-MM-DD HH:MM"),
    ],
)
def test_errors_name_the_problem_and_exit_2(
    data: list[str], capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    code, out, err = run(capsys, "simulate", *argv, *data)
    assert code == 2 and out == ""
    assert err.startswith("mediasrv: ") and problem in err and err.count("\n") == 1


def test_shared_operators_round_trip_and_a_shared_softphone_is_refused() -> None:
    business = load_business_text(realistic_business_toml(TARGETS))
    assert [op.shared for op in business.operators] == [True, True]
    assert load_business_text(dump_business(business)) == business
    bad = realistic_business_toml(TARGETS).replace(
        f'sip = "{TARGETS[0]}"', 'softphone = "desk1"', 1
    )
    with pytest.raises(ConfigError, match="'shared' is for sip or phone"):
        load_business_text(bad)
