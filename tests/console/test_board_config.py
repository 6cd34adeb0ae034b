"""``[[http.business_tokens]]`` (issue 13): parsed into tenant tokens; bad values are one
line naming file:line: key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mediasrv.api.auth import Scope, generate_token, hash_token
from mediasrv.app import server_token_store
from mediasrv.config import ConfigError, load_config

DIGEST = "a" * 64


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "x.toml"
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_config(p)


def test_business_tokens_become_board_principals(tmp_path: Path) -> None:
    token = generate_token()
    cfg = load(
        tmp_path,
        f"""
        [http]
        api_token_sha256 = "{DIGEST}"
        [[http.business_tokens]]
        business = "acme"
        token_sha256 = "{hash_token(token).upper()}"
        """,
    )
    assert [(t.business, t.token_sha256) for t in cfg.http.business_tokens] == [
        ("acme", hash_token(token))
    ]
    store, _ = server_token_store(cfg)
    who = store.authenticate(token)
    assert who is not None and who.business == "acme"
    assert who.allows(Scope.BOARD) and not who.allows(Scope.ADMIN)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (f'business = "Acme!"\ntoken_sha256 = "{DIGEST[:-1]}b"', "business"),
        ('business = "acme"\ntoken_sha256 = "xyz"', "token_sha256"),
        (f'business = "acme"\ntoken_sha256 = "{DIGEST}"', "already configured"),
        ('token_sha256 = "' + "c" * 64 + '"', "business"),
    ],
)
def test_bad_business_tokens_name_file_line_and_key(
    tmp_path: Path, entry: str, message: str
) -> None:
    text = f'[http]\napi_token_sha256 = "{DIGEST}"\n[[http.business_tokens]]\n{entry}\n'
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    line = str(exc.value)
    assert "\n" not in line and "x.toml:" in line and message in line, line
    assert "http.business_tokens" in line, line
