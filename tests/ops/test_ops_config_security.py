"""Config keys of issue 8, findings 4 and 5: [sip] tcp_* limits and the [http] section."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mediasrv.api.auth import generate_token, hash_token
from mediasrv.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.toml"
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def test_defaults() -> None:
    cfg = load_config(None)
    assert (cfg.sip.tcp_idle_timeout, cfg.sip.tcp_max_per_source) == (60.0, 64)
    assert cfg.sip.tcp_max_connections == 0  # derived from RLIMIT_NOFILE at start
    http = cfg.http
    assert http.api_token_sha256 == "" and http.api_token_file == ""
    assert http.open_endpoints == ("/health", "/ready", "/metrics")
    assert http.allowed_hosts == () and http.server_header == "" and http.idle_timeout == 15.0


def test_every_key_typed(tmp_path: Path) -> None:
    digest = hash_token(generate_token())
    cfg = load_config(
        write(
            tmp_path,
            f"""
            [sip]
            tcp_idle_timeout = 0.5
            tcp_max_per_source = 8
            tcp_max_connections = 100
            [http]
            api_token_sha256 = "{digest.upper()}"
            open_endpoints = ["/health"]
            allowed_hosts = ["API.example.com", "[::1]:8443", "*"]
            server_header = "mediasrv"
            idle_timeout = 5
            """,
        )
    )
    assert (cfg.sip.tcp_idle_timeout, cfg.sip.tcp_max_per_source) == (0.5, 8)
    assert cfg.sip.tcp_max_connections == 100
    assert cfg.http.api_token_sha256 == digest  # normalised to lower case
    assert cfg.http.open_endpoints == ("/health",)
    assert cfg.http.allowed_hosts == ("api.example.com", "[::1]:8443", "*")
    assert (cfg.http.server_header, cfg.http.idle_timeout) == ("mediasrv", 5.0)


def test_token_file_is_read_and_hashed(tmp_path: Path) -> None:
    token = generate_token()
    (tmp_path / "token").write_text(token + "\n")
    cfg = load_config(write(tmp_path, f'[http]\napi_token_file = "{tmp_path / "token"}"\n'))
    assert cfg.http.api_token_sha256 == hash_token(token)
    assert token not in repr(cfg)


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        ("[sip]\ntcp_idle_timeout = 0\n", 2, "sip.tcp_idle_timeout", "greater than 0"),
        ("[sip]\ntcp_max_per_source = 0\n", 2, "sip.tcp_max_per_source", "from 1 to"),
        ("[sip]\ntcp_max_connections = -1\n", 2, "sip.tcp_max_connections", "from 0 to"),
        ('[http]\napi_token_sha256 = "abc"\n', 2, "http.api_token_sha256", "64 hex digits"),
        (
            f'[http]\napi_token_sha256 = "{"0" * 64}"\napi_token_file = "/x"\n',
            3,
            "http.api_token_file",
            "not both",
        ),
        ('[http]\napi_token_file = "/nonexistent/t"\n', 2, "http.api_token_file", "cannot read"),
        ('[http]\nopen_endpoints = ["/api/v1/calls"]\n', 2, "http.open_endpoints[0]", "not one of"),
        ('[http]\nallowed_hosts = ["bad host"]\n', 2, "http.allowed_hosts[0]", "host or host:port"),
        ('[http]\nserver_header = "a\\u0007"\n', 2, "http.server_header", "printable ASCII"),
        ("[http]\nidle_timeout = 0\n", 2, "http.idle_timeout", "greater than 0"),
        ('[http]\napi_tokn = ""\n', 2, "http.api_tokn", "did you mean"),
    ],
)
def test_bad_values_are_located(
    tmp_path: Path, text: str, line: int, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    e = exc.value
    assert (e.line, e.key) == (line, key), str(e)
    assert fragment in e.message


def test_short_token_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("secret\n")
    with pytest.raises(ConfigError, match="shorter than 32"):
        load_config(write(tmp_path, f'[http]\napi_token_file = "{tmp_path / "token"}"\n'))


def test_tcp_cap_is_derived_from_the_open_files_limit() -> None:
    from mediasrv.app import BASE_FD_RESERVE, FDS_PER_CALL, tcp_limits

    cfg = load_config(None)  # RTP 20000-29999: 2,500 calls of 4 ports
    reserve = BASE_FD_RESERVE + FDS_PER_CALL * 2500
    assert tcp_limits(cfg, 20_000).max_total == 20_000 - reserve
    assert tcp_limits(cfg, 2_048).max_total == 512  # too small for the reserve: a quarter
    assert tcp_limits(cfg, 10_000_000).max_total == 10_000  # the memory ceiling
    limits = tcp_limits(cfg, 20_000)
    assert (limits.idle_timeout, limits.max_per_source) == (60.0, 64)


def test_tcp_cap_from_the_config_wins(tmp_path: Path) -> None:
    from mediasrv.app import tcp_limits

    cfg = load_config(write(tmp_path, "[sip]\ntcp_max_connections = 300\n"))
    assert tcp_limits(cfg, 2_048).max_total == 300


def test_open_files_soft_limit_is_raised_to_the_hard_limit() -> None:
    import resource

    from mediasrv.app import raise_open_files_limit

    soft = raise_open_files_limit()
    now, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == now
    if hard != resource.RLIM_INFINITY:
        assert now == hard
