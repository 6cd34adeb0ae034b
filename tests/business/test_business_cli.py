"""``mediasrv business apply | export | list`` against the SQLite store in a temp data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.business_file import load_business_file
from mediasrv.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "business.example.toml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_apply_export_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "var")]
    assert run(capsys, "business", "apply", str(EXAMPLE), *data)[:2] == (
        0,
        "sakura-dental: new version 1\n",
    )
    code, out, _ = run(capsys, "business", "apply", str(EXAMPLE), *data)
    assert (code, out) == (0, "sakura-dental: unchanged, same as version 1\n")
    code, out, _ = run(capsys, "business", "list", *data)
    assert code == 0 and out.startswith("sakura-dental\tversion 1\t") and "+81312345678" in out
    exported = tmp_path / "out.toml"
    assert run(capsys, "business", "export", "sakura-dental", "-o", str(exported), *data)[0] == 0
    assert load_business_file(exported) == load_business_file(EXAMPLE)
    code, out, _ = run(capsys, "business", "export", "sakura-dental", *data)
    assert code == 0 and out == exported.read_text(encoding="utf-8")


def test_a_bad_file_is_one_located_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        '"3" = "forward:doctors"', '"3" = "menu:nowhere"'
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "menu:nowhere" in s)
    code, out, err = run(capsys, "business", "apply", str(bad), "--data-dir", str(tmp_path / "var"))
    assert code == 2 and out == ""
    assert (
        err
        == f"mediasrv: {bad}:{line}: numbers[0].menus[0].choices.3: unknown menu 'nowhere' (known: hours, main)\n"
    )
    code, _, err = run(
        capsys, "business", "apply", str(bad), "--check", "--data-dir", str(tmp_path / "var")
    )
    assert code == 2 and "unknown menu" in err
    assert (
        not (tmp_path / "var").exists()
        or run(capsys, "business", "list", "--data-dir", str(tmp_path / "var"))[1] == ""
    )


def test_check_stores_nothing_and_unknown_export_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "var")]
    code, out, _ = run(capsys, "business", "apply", str(EXAMPLE), "--check", *data)
    assert code == 0 and "is valid (2 numbers)" in out
    code, out, err = run(capsys, "business", "export", "sakura-dental", *data)
    assert code == 2 and out == "" and "no business 'sakura-dental'" in err


def test_a_number_of_another_business_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "var")]
    assert run(capsys, "business", "apply", str(EXAMPLE), *data)[0] == 0
    other = tmp_path / "other.toml"
    other.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace('slug = "sakura-dental"', 'slug = "other"'),
        encoding="utf-8",
    )
    code, _, err = run(capsys, "business", "apply", str(other), *data)
    assert code == 2 and "belongs to business 'sakura-dental'" in err


def test_operator_trunks_are_checked_against_the_server_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = tmp_path / "mediasrv.toml"
    server.write_text(
        '[[trunks]]\nname = "carrier-b"\naddresses = ["127.0.0.1/32"]\n', encoding="utf-8"
    )
    line = next(
        i
        for i, s in enumerate(EXAMPLE.read_text(encoding="utf-8").splitlines(), 1)
        if s.startswith('trunk = "carrier-a"')
    )
    code, _, err = run(
        capsys,
        "business",
        "apply",
        str(EXAMPLE),
        "-c",
        str(server),
        "--data-dir",
        str(tmp_path / "var"),
    )
    assert code == 2
    assert (
        err
        == f"mediasrv: {EXAMPLE}:{line}: operators[1].trunk: unknown trunk 'carrier-a' (known: carrier-b)\n"
    )
    server.write_text(
        '[[trunks]]\nname = "carrier-a"\naddresses = ["127.0.0.1/32"]\n', encoding="utf-8"
    )
    code, _, _ = run(
        capsys,
        "business",
        "apply",
        str(EXAMPLE),
        "-c",
        str(server),
        "--data-dir",
        str(tmp_path / "var"),
    )
    assert code == 0


def test_the_global_blocklist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "var")]
    rules = tmp_path / "global.toml"
    rules.write_text('[blocklist]\nprefixes = ["050"]\nwithheld = ["payphone"]\n', encoding="utf-8")
    code, out, _ = run(capsys, "business", "blocklist", str(rules), *data)
    assert code == 0 and out == '[blocklist]\nprefixes = ["+8150"]\nwithheld = ["payphone"]\n'
    assert run(capsys, "business", "blocklist", *data)[1] == out  # shown from the store
    rules.write_text('[blocklist]\nwithheld = ["secret"]\n', encoding="utf-8")
    code, _, err = run(capsys, "business", "blocklist", str(rules), *data)
    assert code == 2 and f"{rules}:2: blocklist.withheld[0]: unknown category 'secret'" in err
