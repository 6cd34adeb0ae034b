"""[media] latch_learning_ms (issue 8 finding 1): default off, validated, documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_latching_locks_on_the_first_packet_by_default() -> None:
    assert load_config(None).media.latch_learning_ms == 0
    example = load_config(REPO / "conf" / "mediasrv.example.toml")
    assert example.media.latch_learning_ms == 0


def test_a_learning_window_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[media]\nlatch_learning_ms = 2000\n")
    assert load_config(path).media.latch_learning_ms == 2000


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("-1", "from 0 to 60000"), ("60001", "from 0 to 60000"), ('"2s"', "expected an integer"),
     ("1.5", "expected an integer"), ("true", "expected an integer")],
)
def test_bad_windows_are_refused_with_file_line_and_key(
    tmp_path: Path, value: str, fragment: str
) -> None:
    path = tmp_path / "x.toml"
    path.write_text(f"[server]\n\n[media]\nlatch_learning_ms = {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}:4: media.latch_learning_ms: "), str(exc.value)
    assert fragment in exc.value.message
