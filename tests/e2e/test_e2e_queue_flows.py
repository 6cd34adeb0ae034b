"""Issue 10's queue, round-robin and whisper scenarios and issue 9's end-to-end scenario, with
real pjsua2 phones (one process per phone, at most 4 calls each) through ONE server in plan
mode, one tracking number per scenario:

- ``QUEUE``: two callers for one operator; the second waits (music, its position announced)
  and is connected when the first call ends.
- ``ROTATE``: round robin over two operators; each answers in turn.
- ``WHISPER``: the operator hears a whisper that neither the caller's phone nor the caller
  channel of the stereo recording contains.
- ``JOURNEY``: a prompt before any operator exists, digits that barge in, looping hold music,
  operator 1, then (``on_operator_hangup``, Asterisk Dial ``g``) operator 2, audio both ways.

Every prompt is a distinct synthetic signal, so what a phone heard is told apart by
correlation. Waits are on events (phone events, RTP counters, call-log rows), bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FAST_SIP
from peers_plugin import StartPhone

from mediasrv.demo.audio import (
    correlate_aligned,
    correlate_piecewise,
    level_db,
    read_wav,
    speech_like,
    split_stereo,
    write_wav,
)
from mediasrv.demo.phones import PhoneProcess
from mediasrv.demo.server import ServerProcess, ServerSpec

pytest.importorskip("pjsua2")
pytestmark = [pytest.mark.e2e]

RATE = 8000
QUEUE, ROTATE, WHISPER, JOURNEY = "0312340001", "0312340002", "0312340003", "0312340004"
# Fixed phone ports (this module's range 32100-32199), so the business file can name them.
PORTS = {"qop": 32101, "rr1": 32102, "rr2": 32103, "wop": 32104, "op1": 32105, "op2": 32106}
HEARD = 0.9  # a signal that reached a phone correlates at least this well
ABSENT = 0.5  # ... and one that did not stays well below

# name -> (seconds, seed, f0): distinct speech-like signals
SIGNALS = {
    "greet": (3.0, 101, 170.0),
    "music": (1.0, 102, 260.0),
    "queue-position": (1.2, 103, 190.0),
    "digit-1": (0.6, 104, 230.0),
    "digit-2": (0.6, 105, 150.0),
    "hello": (0.6, 106, 200.0),
    "whisper": (1.6, 107, 240.0),
    "caller-says": (16.0, 108, 120.0),
    "op-says": (2.5, 109, 210.0),
    "wop-says": (4.0, 112, 220.0),
    "op1-says": (2.5, 110, 180.0),
    "op2-says": (2.5, 111, 140.0),
}
PROMPTS = ("greet", "music", "queue-position", "digit-1", "digit-2", "hello", "whisper")


def uri(name: str) -> str:
    return f"sip:{name}@127.0.0.1:{PORTS[name]}"


def business_toml(wavs: dict[str, Path]) -> str:
    prompts = "".join(f'[[prompts]]\nname = "{p}"\nfile = "{wavs[p]}"\n\n' for p in PROMPTS)
    operators = "".join(
        f'[[operators]]\nname = "{n}"\nsip = "{uri(n)}"\ngroups = ["{n}"]\n\n' for n in PORTS
    )
    return f"""
[business]
slug = "queuee2e"
name = "Queue scenarios"
time_zone = "Asia/Tokyo"

{prompts}{operators}
[[numbers]]
number = "{QUEUE}"
medium = "web"
record = "off"
start = "queue"

[numbers.queue]
group = "qop"
music = ["music"]
announce_position = true
position_prompts = ["queue-position"]
periodic_interval = 0
max_wait = 60
wrap_up = 0
overflow = "hangup"

[[numbers]]
number = "{ROTATE}"
medium = "web"
record = "off"
start = "forward"

[numbers.forwarding]
strategy = "round_robin"
on_exhausted = "hangup"

[[numbers.forwarding.targets]]
operator = "rr1"
ring_timeout = 10

[[numbers.forwarding.targets]]
operator = "rr2"
ring_timeout = 10

[[numbers]]
number = "{WHISPER}"
medium = "newspaper"
record = "both"
start = "forward"

[numbers.guidance]
prompts = ["hello"]

[numbers.forwarding]
whisper = ["whisper"]
ringback = "music"
on_exhausted = "hangup"

[[numbers.forwarding.targets]]
operator = "wop"
ring_timeout = 10

[[numbers]]
number = "{JOURNEY}"
medium = "web"
record = "both"
start = "menu:main"

[[numbers.menus]]
name = "main"
prompts = ["greet"]
first_digit_timeout = 5
inter_digit_timeout = 3
total_timeout = 15
max_digits = 2
valid_digits = "12"
barge_in = true
retries = 0
on_failure = "hangup"

[numbers.menus.choices]
"12" = "forward:first"

[[numbers.forwards]]
name = "first"
ringback = "music"
on_operator_hangup = "forward:second"
on_exhausted = "hangup"

[[numbers.forwards.targets]]
operator = "op1"
ring_timeout = 10

[[numbers.forwards]]
name = "second"
ringback = "music"
on_exhausted = "hangup"

[[numbers.forwards.targets]]
operator = "op2"
ring_timeout = 10
"""


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("signals")
    return {
        name: write_wav(folder / f"{name}.wav", speech_like(sec, seed=seed, f0=f0))
        for name, (sec, seed, f0) in SIGNALS.items()
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, wavs: dict[str, Path]
) -> Iterator[ServerProcess]:
    """One server for the module: the business applied to its store before it starts."""
    workdir = tmp_path_factory.mktemp("server")
    (workdir / "var").mkdir()
    business = workdir / "queuee2e.toml"
    business.write_text(business_toml(wavs), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mediasrv", "business", "apply", str(business),
         "--data-dir", str(workdir / "var")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spec = ServerSpec(
        workdir=workdir,
        sip=dict(FAST_SIP),
        analysis={"enabled": False},
        extra_sections={
            "calls": {"interpreter": "plan"},
            "prompts": {"dir": str(workdir / "prompts")},
        },
    )
    proc = ServerProcess(spec)
    proc.start()
    try:
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"mediasrv exited {code} on SIGTERM:\n{proc.log_tail()}"


# -- helpers ----------------------------------------------------------------------------------


def tracking(server: ServerProcess, number: str) -> str:
    return f"sip:{number}@{server.sip_uri_host}"


async def rows_of(
    server: ServerProcess, number: str, n: int, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """The ``n`` finished call-log rows of one tracking number, oldest first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    e164 = "+81" + number[1:]
    while True:
        rows = [
            r for r in await asyncio.to_thread(server.calls, 100) if r["tracking_number"] == e164
        ]
        done = [r for r in rows if r["disposition"] != "in-progress"]
        if len(done) >= n and len(done) == len(rows):
            return sorted(done, key=lambda r: float(r["start_time"]))
        if loop.time() > deadline:
            raise AssertionError(
                f"{len(done)} of {n} rows for {number}: {rows}\n{server.log_tail(3000)}"
            )
        await asyncio.sleep(0.2)


async def received_at_least(phone: PhoneProcess, packets: int, timeout: float = 15.0) -> None:
    """Until the phone's live call has received ``packets`` RTP packets (20 ms each)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stats = await phone.stats()
        if int(stats.get("rx_packets", 0)) >= packets:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{phone.name}: {stats} after {timeout} s")
        await asyncio.sleep(0.1)


async def hear_more(phone: PhoneProcess, packets: int = 25) -> None:
    """Until ``packets`` more have arrived: what was sent last has left the jitter buffer."""
    now = int((await phone.stats()).get("rx_packets", 0))
    await received_at_least(phone, now + packets)


async def event_after(
    phone: PhoneProcess, kind: str, since: dict[str, Any], timeout: float = 15.0
) -> dict[str, Any]:
    """The first event of ``kind`` reported after the event ``since`` (pjsua2 reuses call
    ids, so a call id alone does not tell a second call's events from the first's)."""
    while True:
        event = await phone.wait_event(kind, timeout=timeout)
        if float(event["t"]) >= float(since["t"]):
            return event


async def assert_idle(server: ServerProcess) -> None:
    leaks = await asyncio.to_thread(server.wait_idle, 20)
    assert not any(leaks.values()), leaks


def samples(path: Path | str) -> np.ndarray:
    return read_wav(path).samples


def score(ref: np.ndarray, heard: np.ndarray) -> float:
    """How well ``ref`` is found in ``heard``, in quarter-second windows each aligned on its
    own within 0.6 s: a phone's jitter buffer that drops or inserts frames (a loaded machine
    delays packets by a few hundred ms) costs one window, not all."""
    return correlate_piecewise(ref, heard, window_s=0.25, search_s=0.6).score


def leaked(ref: np.ndarray, heard: np.ndarray) -> float:
    """:func:`score` for a signal that should be absent: half-second windows, where chance
    correlation of unrelated speech-like audio stays low (measured here: at most 0.35)."""
    return correlate_piecewise(ref, heard, window_s=0.5, search_s=0.6).score


def active(heard: np.ndarray, floor_db: float = -45.0) -> np.ndarray:
    """``heard`` from its first to its last 20 ms frame above ``floor_db``."""
    frames = [level_db(heard[i : i + 160]) > floor_db for i in range(0, len(heard) - 159, 160)]
    on = [i for i, loud in enumerate(frames) if loud]
    return heard[on[0] * 160 : (on[-1] + 1) * 160] if on else heard[:0]


def occurrences(ref: np.ndarray, heard: np.ndarray, threshold: float = HEARD) -> list[float]:
    """Where copies of ``ref`` are in ``heard`` (seconds), found by its quarter second with no
    pause in it (a copy may be cut short by what comes next)."""
    step = RATE // 4
    start = max(
        range(0, len(ref) - step + 1, 160),
        key=lambda i: min(level_db(ref[j : j + 160]) for j in range(i, i + step, 160)),
    )
    part = ref[start : start + step]
    found: list[float] = []
    for offset in range(0, len(heard) - step + 1, step):
        peak, lag = correlate_aligned(part, heard[offset : offset + 2 * step], min_overlap_s=0.25)
        at = (offset - start) / RATE + lag
        if peak >= threshold and not any(abs(at - seen) < 0.1 for seen in found):
            found.append(at)
    return found


async def recorded(phone: PhoneProcess, call: int) -> np.ndarray:
    return samples((await phone.wait_event("recorded", timeout=10, call=call))["path"])


# -- 1. the queue -----------------------------------------------------------------------------


async def test_second_caller_waits_hears_its_position_and_gets_the_operator_next(
    server: ServerProcess, start_phone: StartPhone, wavs: dict[str, Path], tmp_path: Path
) -> None:
    qop = await start_phone(
        "qop",
        port=PORTS["qop"],
        auto_answer="200",
        answer_delay=0.3,
        play=wavs["op-says"],
        record=tmp_path / "qop.wav",
    )
    first = await start_phone("first", record=tmp_path / "first.wav")
    second = await start_phone("second", record=tmp_path / "second.wav")
    call_a = await first.dial(tracking(server, QUEUE))
    await first.wait_event("state", state="CONFIRMED", timeout=10)
    await qop.wait_event("incoming", timeout=10)
    call_b = await second.dial(tracking(server, QUEUE))
    await second.wait_event("state", state="CONFIRMED", timeout=10)  # the queue answers
    await received_at_least(second, 150)  # 3 s: the announcement (1.8 s), then music
    assert len(qop.seen("incoming")) == 1  # the operator is busy: nobody offered the 2nd
    await first.command("hangup", call=call_a)
    await qop.wait_event("disconnected", timeout=10)
    offered = await qop.wait_event("incoming", timeout=10)  # to the waiting caller at once
    await event_after(qop, "played", offered)  # the operator's speech to the second caller
    await hear_more(second)
    await second.command("hangup", call=call_b)
    heard = await recorded(second, call_b)

    # "you are number" + "1", from 0.6 s on: its start may precede the phone's recorder
    position = np.concatenate([samples(wavs["queue-position"]), samples(wavs["digit-1"])])
    assert score(position[int(0.6 * RATE) :], heard) >= HEARD, "no position announcement"
    assert score(samples(wavs["music"]), heard) >= HEARD  # then hold music
    assert score(samples(wavs["op-says"]), heard) >= HEARD  # and then the operator

    a, b = await rows_of(server, QUEUE, 2)
    assert [a["disposition"], b["disposition"]] == ["answered", "answered"]
    assert a["operator_uri"] == b["operator_uri"] == uri("qop")
    # the second caller was bridged only after the first call ended
    assert float(b["answer_time"]) >= float(a["end_time"]), (a, b)
    assert any(step.startswith("enqueue") for step in b["flow_path"]), b["flow_path"]
    await assert_idle(server)


# -- 2. round robin ---------------------------------------------------------------------------


async def test_round_robin_gives_each_operator_a_call_in_turn(
    server: ServerProcess, start_phone: StartPhone
) -> None:
    ops = {n: await start_phone(n, port=PORTS[n], auto_answer="200") for n in ("rr1", "rr2")}
    caller = await start_phone("rr-caller")
    calls = 4
    for _ in range(calls):
        call = await caller.dial(tracking(server, ROTATE))
        await caller.wait_event("state", state="CONFIRMED", timeout=10, call=call)
        await caller.command("hangup", call=call)
        await caller.wait_event("disconnected", timeout=10, call=call)
    rows = await rows_of(server, ROTATE, calls)
    order = [r["operator_uri"] for r in rows]
    firsts = [r["attempts"][0]["uri"] for r in rows]
    assert all(r["disposition"] == "answered" for r in rows), rows
    assert all(len(r["attempts"]) == 1 for r in rows), [r["attempts"] for r in rows]
    assert firsts == order  # each call's first attempt answered: nobody was skipped
    assert set(order) == {uri("rr1"), uri("rr2")}
    assert all(x != y for x, y in itertools.pairwise(order)), order  # in turn
    assert len(ops["rr1"].seen("incoming")) == len(ops["rr2"].seen("incoming")) == calls // 2
    await assert_idle(server)


# -- 3. the whisper ---------------------------------------------------------------------------


async def test_whisper_reaches_only_the_operator(
    server: ServerProcess, start_phone: StartPhone, wavs: dict[str, Path], tmp_path: Path
) -> None:
    # the operator's phone talks from its answer, over the whisper: the caller hears the rest
    operator = await start_phone(
        "wop",
        port=PORTS["wop"],
        auto_answer="200",
        answer_delay=0.5,
        play=wavs["wop-says"],
        record=tmp_path / "wop.wav",
    )
    caller = await start_phone(
        "w-caller", play=wavs["caller-says"], record=tmp_path / "w-caller.wav"
    )
    call = await caller.dial(tracking(server, WHISPER))
    await operator.wait_event("incoming", timeout=10)
    await operator.wait_event("played", timeout=20)  # whisper, then the bridge, then speech
    await hear_more(caller)
    await caller.command("hangup", call=call)
    op_heard = samples((await operator.wait_event("recorded", timeout=10))["path"])
    caller_heard = await recorded(caller, call)

    whisper = samples(wavs["whisper"])
    # (from 0.5 s on: the whisper starts at the answer, maybe before the phone's recorder)
    assert score(whisper[RATE // 2 :], op_heard) >= HEARD, "the operator did not hear the whisper"
    assert leaked(whisper, caller_heard) < ABSENT, "the whisper leaked to the caller's phone"
    # the caller heard music while the operator heard the whisper, then the operator
    assert occurrences(samples(wavs["music"]), caller_heard)
    assert score(samples(wavs["wop-says"])[2 * RATE :], caller_heard) >= HEARD
    _, whisper_at = correlate_aligned(whisper, op_heard)
    after_whisper = op_heard[int(whisper_at * RATE) + len(whisper) :]
    # the bridge carried the caller to the operator after the whisper
    assert score(active(after_whisper), samples(wavs["caller-says"])) >= HEARD

    (row,) = await rows_of(server, WHISPER, 1)
    assert row["disposition"] == "answered" and row["recording_path"], row
    caller_ch, operator_ch = split_stereo(row["recording_path"])
    assert leaked(whisper, caller_ch) < ABSENT, "the whisper is on the recording's caller channel"
    assert score(samples(wavs["wop-says"])[2 * RATE :], operator_ch) >= HEARD  # a real one
    assert leaked(whisper, operator_ch) < ABSENT  # nor is it the operator's own speech
    await assert_idle(server)


# -- 4. issue 9's scenario --------------------------------------------------------------------


async def test_prompt_barge_in_hold_music_then_two_operators_in_turn(
    server: ServerProcess, start_phone: StartPhone, wavs: dict[str, Path], tmp_path: Path
) -> None:
    op1 = await start_phone(
        "op1",
        port=PORTS["op1"],
        auto_answer="200",
        answer_delay=2.6,
        play=wavs["op1-says"],
        record=tmp_path / "op1.wav",
    )
    op2 = await start_phone(
        "op2",
        port=PORTS["op2"],
        auto_answer="200",
        answer_delay=1.2,
        play=wavs["op2-says"],
        record=tmp_path / "op2.wav",
    )
    caller = await start_phone(
        "j-caller", play=wavs["caller-says"], record=tmp_path / "j-caller.wav"
    )
    call = await caller.dial(tracking(server, JOURNEY))
    await caller.wait_event("state", state="CONFIRMED", timeout=10)  # the menu answers
    await received_at_least(caller, 50)  # 1 s of the 3 s prompt; no operator exists yet
    assert not op1.seen("incoming") and not op2.seen("incoming")
    await caller.command("dtmf", call=call, digits="12", methods=["rfc4733", "inband"])
    await op1.wait_event("incoming", timeout=10)
    await op1.wait_event("played", timeout=20)
    await hear_more(caller)
    await op1.command("hangup")  # operator 1 leaves; the caller stays (Dial ``g``)
    await op2.wait_event("incoming", timeout=10)
    await op2.wait_event("played", timeout=20)
    await hear_more(caller)
    await caller.command("hangup", call=call)
    heard = await recorded(caller, call)
    heard1 = samples((await op1.wait_event("recorded", timeout=10))["path"])
    heard2 = samples((await op2.wait_event("recorded", timeout=10))["path"])

    greet = samples(wavs["greet"])
    music = occurrences(samples(wavs["music"]), heard)
    assert len(music) >= 3, music  # looped while operator 1 rang (2.6 s), again for op 2
    # what the caller heard before the music is the prompt (its start may precede the
    # phone's recorder), and its last second never played: the digits barged in
    before_music = active(heard[: int(music[0] * RATE)])
    assert len(before_music) >= RATE // 2, len(before_music)
    assert score(before_music, greet) >= HEARD
    assert leaked(greet[-RATE:], heard) < ABSENT
    assert score(samples(wavs["op1-says"]), heard) >= HEARD  # both bridges, down ...
    assert score(samples(wavs["op2-says"]), heard) >= HEARD
    says = samples(wavs["caller-says"])
    assert score(active(heard1), says) >= HEARD  # ... and up
    assert score(active(heard2), says) >= HEARD

    (row,) = await rows_of(server, JOURNEY, 1)
    assert row["dtmf"] == "12", row["dtmf"]  # each key once (sent as RFC 4733 and tones)
    assert row["disposition"] == "answered" and row["operator_uri"] == uri("op2")
    first, second = row["attempts"]
    assert [first["uri"], second["uri"]] == [uri("op1"), uri("op2")]
    # answered when operator 1 connected (F13), not when operator 2 did
    assert float(first["end"]) <= float(row["answer_time"]) < float(second["start"]), row
    assert "operator-hung-up=op1" in row["flow_rules"], row["flow_rules"]
    assert row["hung_up_by"] == "caller"
    # one stereo recording across both bridges: each operator on the operator channel
    caller_ch, operator_ch = split_stereo(row["recording_path"])
    assert score(samples(wavs["op1-says"]), operator_ch) >= HEARD
    assert score(samples(wavs["op2-says"]), operator_ch) >= HEARD
    assert leaked(samples(wavs["op2-says"]), caller_ch) < ABSENT
    assert score(active(caller_ch), says) >= HEARD
    await assert_idle(server)
