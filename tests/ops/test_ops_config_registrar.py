"""[registrar] and [media] dtmf_merge_window_ms (issue 10 "Registrar", issue 9 §4): defaults,
validation with file, line and key, and the documented example."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.config import BindingStoreKind, ConfigError, DigestAlgorithm, load_config
from mediasrv.media.digits import InbandPolicy

REPO = Path(__file__).resolve().parents[2]


def test_registrar_is_off_by_default_and_documented() -> None:
    assert load_config(None).registrar.enabled is False
    example = load_config(REPO / "conf" / "mediasrv.example.toml")
    assert example.registrar.enabled is False
    assert example.registrar.store is BindingStoreKind.SQLITE
    assert [u.name for u in example.registrar.users] == ["alice"]
    assert example.media.dtmf_merge_window_ms == 200
    assert example.media.inband_dtmf is InbandPolicy.CALLER
    assert load_config(None).media.inband_dtmf is InbandPolicy.CALLER


def test_a_bad_inband_policy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('[media]\ninband_dtmf = "sometimes"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}:2: media.inband_dtmf: "), str(exc.value)
    assert "always, caller, fallback" in exc.value.message


def test_a_registrar_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(
        '[registrar]\nenabled = true\nrealm = "ops"\nalgorithms = ["md5"]\nmin_expires = 30\n'
        'networks = ["10.0.0.0/8"]\nstore = "memory"\n'
        '[[registrar.users]]\nname = "alice"\npassword = "pw"\n'
        '[[registrar.users]]\nname = "bob"\nha1_md5 = "' + "a" * 32 + '"\n'
    )
    cfg = load_config(path).registrar
    assert cfg.enabled and cfg.realm == "ops" and cfg.algorithms == (DigestAlgorithm.MD5,)
    assert cfg.min_expires == 30 and cfg.networks == ("10.0.0.0/8",)
    assert cfg.store is BindingStoreKind.MEMORY
    assert [(u.name, u.password, u.ha1_md5) for u in cfg.users] == [
        ("alice", "pw", ""),
        ("bob", "", "a" * 32),
    ]
    assert "pw" not in repr(cfg)  # secrets stay out of logs and tracebacks


@pytest.mark.parametrize(
    ("body", "line", "key", "fragment"),
    [
        ("enabled = true\n", 2, "registrar.enabled", "at least one"),
        ('algorithms = ["SHA-512"]\n', 2, "registrar.algorithms[0]", "SHA-256 or MD5"),
        ('networks = ["10.0.0.0/33"]\n', 2, "registrar.networks[0]", "not a CIDR"),
        ("min_expires = 0\n", 2, "registrar.min_expires", "from 1 to"),
        ("max_expires = 30\n", 2, "registrar.max_expires", "at least min_expires"),
        ('store = "redis"\n', 2, "registrar.store", "sqlite, memory"),
        ("expire = 60\n", 2, "registrar.expire", "unknown key"),
        (
            '[[registrar.users]]\nname = "a b"\npassword = "x"\n',
            3,
            "registrar.users[0].name",
            "SIP user part",
        ),
        ('[[registrar.users]]\nname = "a"\n', 3, "registrar.users[0].name", "password or an HA1"),
        (
            '[[registrar.users]]\nname = "a"\nha1_md5 = "xyz"\n',
            4,
            "registrar.users[0].ha1_md5",
            "32 hex digits",
        ),
        (
            '[[registrar.users]]\nname = "a"\npassword = "p"\nha1_sha256 = "' + "b" * 64 + '"\n',
            4,
            "registrar.users[0].password",
            "not both",
        ),
        (
            '[[registrar.users]]\nname = "a"\npassword = "p"\n[[registrar.users]]\nname = "a"\n'
            'password = "q"\n',
            6,
            "registrar.users[1].name",
            "duplicate",
        ),
    ],
)
def test_bad_registrar_settings_name_file_line_and_key(
    tmp_path: Path, body: str, line: int, key: str, fragment: str
) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[registrar]\n" + body)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}:{line}: {key}: "), str(exc.value)
    assert fragment in exc.value.message


@pytest.mark.parametrize("value", ["-1", "2001", '"200ms"', "0.2"])
def test_bad_merge_windows_are_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "x.toml"
    path.write_text(f"[media]\ndtmf_merge_window_ms = {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}:2: media.dtmf_merge_window_ms: "), str(exc.value)
