"""Issue 8 keys: [sip] untrusted_source_policy, options_policy, user_agent "" and
[sip.rate_limit]; bad values are refused naming file:line: key (exit 2 in the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.config import (
    ConfigError,
    OptionsPolicy,
    RateLimitConfig,
    UntrustedSourcePolicy,
    load_config,
)

REPO = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_defaults() -> None:
    sip = load_config(None).sip
    assert sip.untrusted_source_policy is UntrustedSourcePolicy.REJECT
    assert sip.options_policy is OptionsPolicy.TRUNKS
    assert sip.rate_limit == RateLimitConfig()
    assert sip.user_agent == "mediasrv"


def test_every_key_is_read(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
[sip]
user_agent = ""
untrusted_source_policy = "DROP"
options_policy = "any"

[sip.rate_limit]
enabled = false
rate = 5
burst = 7
trusted_rate = 900.5
trusted_burst = 1800
block_seconds = 12
max_sources = 1000
unknown_number_rate = 0
unknown_number_burst = 3
unknown_number_block_seconds = 9
""",
    )
    sip = cfg.sip
    assert sip.user_agent == ""
    assert sip.untrusted_source_policy is UntrustedSourcePolicy.DROP
    assert sip.options_policy is OptionsPolicy.ANY
    assert sip.rate_limit == RateLimitConfig(
        enabled=False,
        rate=5.0,
        burst=7,
        trusted_rate=900.5,
        trusted_burst=1800,
        block_seconds=12.0,
        max_sources=1000,
        unknown_number_rate=0.0,
        unknown_number_burst=3,
        unknown_number_block_seconds=9.0,
    )


def test_example_documents_the_issue_8_keys() -> None:
    text = (REPO / "conf" / "mediasrv.example.toml").read_text(encoding="utf-8")
    for key in ("untrusted_source_policy", "options_policy", "[sip.rate_limit]"):
        assert key in text
    for key in RateLimitConfig.__dataclass_fields__:
        assert f"\n{key} = " in text, key


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ('[sip]\nuntrusted_source_policy = "ignore"\n', 2, "sip.untrusted_source_policy", "reject"),
        ('[sip]\noptions_policy = "trunk"\n', 2, "sip.options_policy", "did you mean"),
        ('[sip]\nuser_agent = "a\\r\\nX-Evil: 1"\n', 2, "sip.user_agent", "letters"),
        ("[sip.rate_limit]\nrate = -1\n", 2, "sip.rate_limit.rate", "from 0"),
        ("[sip.rate_limit]\nburst = 0\n", 2, "sip.rate_limit.burst", "from 1"),
        ("[sip.rate_limit]\nblock_seconds = 0\n", 2, "sip.rate_limit.block_seconds", "greater"),
        ('[sip.rate_limit]\nenabled = "yes"\n', 2, "sip.rate_limit.enabled", "true or false"),
        ("[sip.rate_limit]\nrat = 1\n", 2, "sip.rate_limit.rat", "did you mean 'rate'"),
    ],
)
def test_bad_values_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    assert exc.value.line == line, str(exc.value)
    assert exc.value.key == key, str(exc.value)
    assert message in str(exc.value)
    assert str(exc.value).startswith(f"{tmp_path / 'm.toml'}:{line}: {key}: ")
