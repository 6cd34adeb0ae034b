"""The ``[call_attributes]`` block and ``trust_asserted_identity`` (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def error_of(tmp_path: Path, text: str) -> str:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    return str(exc.value)


def test_defaults_and_example_file() -> None:
    cfg = load_config(REPO / "conf" / "mediasrv.example.toml")
    attrs = cfg.call_attributes
    assert (attrs.valid_call_seconds, attrs.duplicate_window, attrs.time_zone) == (
        60.0, 86400.0, "Asia/Tokyo",
    )  # fmt: skip
    assert cfg.trunks[0].trust_asserted_identity is False


def test_values_are_read(tmp_path: Path) -> None:
    p = tmp_path / "ok.toml"
    p.write_text(
        "[call_attributes]\nvalid_call_seconds = 30\nduplicate_window = 604800\n"
        'time_zone = "America/New_York"\n'
        '[[trunks]]\nname = "t"\naddresses = ["192.0.2.0/24"]\ntrust_asserted_identity = true\n'
    )
    cfg = load_config(p)
    assert cfg.call_attributes.valid_call_seconds == 30.0
    assert cfg.call_attributes.duplicate_window == 604800.0
    assert cfg.call_attributes.time_zone == "America/New_York"
    assert cfg.trunks[0].trust_asserted_identity is True


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[call_attributes]\ntime_zone = "Mars/Olympus"\n', "2: call_attributes.time_zone"),
        ("[call_attributes]\nvalid_call_seconds = 0\n", "2: call_attributes.valid_call_seconds"),
        ("[call_attributes]\nduplicate_window = -1\n", "2: call_attributes.duplicate_window"),
        ('[call_attributes]\nwindow = 5\n', "call_attributes.window"),
        ('[[trunks]]\nname = "t"\ntrust_asserted_identity = "yes"\n', "trust_asserted_identity"),
    ],
)
def test_bad_values_name_the_line_and_key(tmp_path: Path, text: str, needle: str) -> None:
    message = error_of(tmp_path, text)
    assert needle in message, message
