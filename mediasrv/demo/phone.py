"""A real SIP phone (pjsua2) in its own process, driven by JSON lines.

Run as ``python -m mediasrv.demo.phone --name caller --port 5071 [options]``. The phone reads
commands from stdin, one JSON object per line::

    {"cmd": "dial", "uri": "sip:0312345678@127.0.0.1:5060"}
    {"cmd": "answer", "code": 200}        {"cmd": "hangup"}
    {"cmd": "dtmf", "digits": "123#", "methods": ["rfc4733", "inband", "info"]}     {"cmd": "hold"}   {"cmd": "unhold"}
    {"cmd": "stats"}                      {"cmd": "quit"}

Every command may name a call with ``"call": <id>``; without it the most recent live call is
used. The phone reports on stdout, one JSON object per line, with ``"event"`` set to one of
``ready``, ``incoming``, ``calling``, ``state``, ``media_active``, ``dtmf``, ``hold_state``,
``played`` (the ``--play`` file, not looped, reached its end), ``stats``, ``disconnected``,
``recorded``, ``error``, ``bye``.

pjsua2 facts this module relies on (see ../../shared/TOOLS.md): one ``Endpoint`` per process,
at most 4 calls, the null audio device, worker-thread mode for clean audio, and every Python
reference to a ``Call`` dropped before ``libDestroy()`` (else the process aborts). pjsua2
callbacks run on pjsip's worker thread; everything that creates or destroys pjsua2 objects
outside a callback runs on the main thread, which registered itself with pjlib by creating the
endpoint.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import pjsua2 as pj

MAX_CALLS = 4
CLOCK_RATE = 8000
PJ_EINVALIDOP = 70013  # pj_status_t: "Invalid operation" (e.g. an INVITE still pending)
REINVITE_RETRY_S = 0.05
REINVITE_ATTEMPTS = 60
CODEC_IDS = {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1"}


class AutoAnswer(Enum):
    """What the phone does with an incoming call on its own."""

    OK = "200"
    BUSY = "486"
    NONE = "none"


class MediaStatus(Enum):
    """pjsua's media states, named for the events we report."""

    NONE = "none"
    ACTIVE = "active"
    LOCAL_HOLD = "local_hold"
    REMOTE_HOLD = "remote_hold"
    ERROR = "error"


_MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_NONE: MediaStatus.NONE,
    pj.PJSUA_CALL_MEDIA_ACTIVE: MediaStatus.ACTIVE,
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: MediaStatus.LOCAL_HOLD,
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: MediaStatus.REMOTE_HOLD,
    pj.PJSUA_CALL_MEDIA_ERROR: MediaStatus.ERROR,
}

_INV_STATE = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}


@dataclass(frozen=True)
class PhoneOptions:
    """Command-line options of one phone process."""

    name: str
    port: int
    auto_answer: AutoAnswer
    answer_delay: float
    play: Path | None
    play_loop: bool
    record: Path | None
    codecs: tuple[str, ...]
    tcp: bool
    log_file: Path | None
    log_level: int
    max_lifetime: float


class Emitter:
    """Writes JSON event lines to a private copy of stdout, from any thread."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "t": round(time.monotonic() - self._t0, 4), **fields}
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class ReportingPlayer(pj.AudioMediaPlayer):
    """A WAV player that reports once when a file it does not loop has played to its end."""

    def __init__(self, on_end: Callable[[], None]) -> None:
        super().__init__()
        self._on_end: Callable[[], None] | None = on_end

    def onEof2(self) -> None:  # pjsua2 names the callback
        # pjmedia calls this on its clock thread; the emitter is thread-safe.
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()


@dataclass
class CallMedia:
    """The audio plumbing of one call: what it plays and where it records."""

    player: pj.AudioMediaPlayer | None = None
    recorder: pj.AudioMediaRecorder | None = None
    record_path: Path | None = None
    status: MediaStatus = MediaStatus.NONE
    playing: bool = False
    tones: list[pj.ToneGenerator] = field(default_factory=list)


@dataclass
class CallSlot:
    """Phone-side bookkeeping for one pjsua2 call."""

    call: PhoneCall
    call_id: int
    incoming: bool
    media: CallMedia = field(default_factory=CallMedia)
    confirmed: bool = False
    disconnected: bool = False


class PhoneCall(pj.Call):
    """A pjsua2 call whose callbacks (pjsip worker thread) report to the phone."""

    def __init__(self, phone: Phone, acc: pj.Account, incoming: bool,
                 call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.phone = phone
        self.slot = CallSlot(call=self, call_id=call_id, incoming=incoming)

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self.phone.on_call_state(self)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.phone.on_media_state(self)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.phone.emitter.emit("dtmf", call=self.getId(), digit=prm.digit)


class PhoneAccount(pj.Account):
    """The phone's single local account (no registrar)."""

    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.phone.on_incoming(PhoneCall(self.phone, self, True, prm.callId))


class Phone:
    """One pjsua2 endpoint with one account; commands run on the main thread."""

    def __init__(self, opts: PhoneOptions, emitter: Emitter) -> None:
        self.opts = opts
        self.emitter = emitter
        self.ep = pj.Endpoint()
        self.account: PhoneAccount | None = None
        self.slots: dict[int, CallSlot] = {}
        self.lock = threading.RLock()
        self.actions: queue.Queue[tuple[float, Callable[[], None]]] = queue.Queue()
        self.port = 0
        self.running = True
        self._records = 0
        self._pending_dial: PhoneCall | None = None

    # ---- lifecycle (main thread) -------------------------------------------------------
    def start(self) -> None:
        self.ep.libCreate()
        self.ep.libInit(self._ep_config())
        self.ep.audDevManager().setNullDev()
        self.port = self._create_transports()
        self.ep.libStart()
        self._restrict_codecs()
        self.account = PhoneAccount(self)
        self.account.create(self._account_config())
        self.emitter.emit("ready", name=self.opts.name, port=self.port, pid=os.getpid())

    def _ep_config(self) -> pj.EpConfig:
        cfg = pj.EpConfig()
        cfg.uaConfig.maxCalls = MAX_CALLS
        cfg.uaConfig.threadCnt = 1  # worker-thread mode: clean audio (TOOLS.md)
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.userAgent = f"mediasrv-demo-phone/{self.opts.name}"
        cfg.uaConfig.natTypeInSdp = 0
        cfg.logConfig.level = self.opts.log_level
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.msgLogging = self.opts.log_level >= 4
        if self.opts.log_file is not None:
            cfg.logConfig.filename = str(self.opts.log_file)
        cfg.medConfig.clockRate = CLOCK_RATE
        cfg.medConfig.sndClockRate = CLOCK_RATE
        cfg.medConfig.channelCount = 1
        cfg.medConfig.noVad = True  # keep RTP flowing through silence: media is continuous
        cfg.medConfig.ecTailLen = 0  # no echo canceller: received audio must stay untouched
        return cfg

    def _create_transports(self) -> int:
        tcfg = pj.TransportConfig()
        tcfg.port = self.opts.port
        tcfg.boundAddress = "127.0.0.1"
        tcfg.publicAddress = "127.0.0.1"
        tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        port = int(self.ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
        if self.opts.tcp:
            tcfg.port = port
            self.ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcfg)
        return port

    def _restrict_codecs(self) -> None:
        # Only G.711 (plus telephone-event, which pjmedia always offers): the server under
        # test speaks PCMU/PCMA only (SPEC F3).
        for info in self.ep.codecEnum2():
            self.ep.codecSetPriority(info.codecId, 0)
        for rank, name in enumerate(self.opts.codecs):
            self.ep.codecSetPriority(CODEC_IDS[name], 255 - rank)

    def _account_config(self) -> pj.AccountConfig:
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{self.opts.name}@127.0.0.1:{self.port}"
        acfg.natConfig.iceEnabled = False
        acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.natConfig.sdpNatRewriteUse = 0
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_DISABLED
        acfg.mediaConfig.lockCodecEnabled = False  # no surprise re-INVITE after answer
        acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        return acfg

    def shutdown(self) -> None:
        """Hang up, finish recordings, drop every Call reference, then destroy the library."""
        with self.lock:
            live = [s for s in self.slots.values() if not s.disconnected]
        for slot in live:
            try:
                self._hangup_slot(slot, 0)
            except pj.Error:
                pass  # already ending (the peer's BYE crossed ours): nothing left to do
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            with self.lock:
                if all(s.disconnected for s in self.slots.values()):
                    break
            time.sleep(0.02)
        for call_id in list(self.slots):
            self._reap(call_id)
        if self.account is not None:
            self.account.shutdown()
            self.account = None
        self.ep.libDestroy()
        self.emitter.emit("bye")

    # ---- callbacks (pjsip worker thread) --------------------------------------------------
    def on_incoming(self, call: PhoneCall) -> None:
        info = call.getInfo()
        self._register(call.slot)
        self.emitter.emit("incoming", call=info.id, remote=info.remoteUri, local=info.localUri,
                          call_id=info.callIdString)
        mode = self.opts.auto_answer
        if mode is AutoAnswer.BUSY and self.opts.answer_delay <= 0:
            self._answer(call, 486)
            return
        self._answer(call, 180)
        if mode is AutoAnswer.NONE:
            return
        code = 200 if mode is AutoAnswer.OK else 486
        self.schedule(self.opts.answer_delay, lambda: self.answer_call(info.id, code))

    def on_call_state(self, call: PhoneCall) -> None:
        info = call.getInfo()
        state = _INV_STATE.get(info.state, str(info.state))
        self.emitter.emit("state", call=info.id, state=state, code=info.lastStatusCode,
                          reason=info.lastReason)
        slot = self._register(call.slot)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            slot.confirmed = True
            self._connect_media(slot)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            slot.disconnected = True
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.emitter.emit("disconnected", call=info.id, code=info.lastStatusCode,
                              reason=info.lastReason,
                              duration=info.connectDuration.sec
                              + info.connectDuration.msec / 1000.0)
            # Destroying a Call inside its own callback is unsafe: reap on the main thread.
            self.schedule(0.0, lambda: self._reap(info.id))

    def on_media_state(self, call: PhoneCall) -> None:
        info = call.getInfo()
        slot = self._register(call.slot)
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = _MEDIA_STATUS.get(media.status, MediaStatus.ERROR)
            previous, slot.media.status = slot.media.status, status
            if status is MediaStatus.ACTIVE:
                self._connect_media(slot)
            if status is not previous:
                self._report_media(slot, previous, status, media.index)
            break

    def _register(self, slot: CallSlot) -> CallSlot:
        """Index a call by its pjsua id (known only once pjsua has accepted the call).

        The lock guards our dict only; no pjsua2 function is ever called while holding it,
        so it cannot deadlock against pjsua's own locks.
        """
        if slot.call_id < 0:
            slot.call_id = slot.call.getId()
        with self.lock:
            self.slots.setdefault(slot.call_id, slot)
        return slot

    def _report_media(self, slot: CallSlot, previous: MediaStatus, status: MediaStatus,
                      index: int) -> None:
        if status is MediaStatus.ACTIVE and previous is MediaStatus.NONE:
            stream = slot.call.getStreamInfo(index)
            self.emitter.emit("media_active", call=slot.call_id, codec=stream.codecName,
                              remote_rtp=stream.remoteRtpAddress)
        else:
            self.emitter.emit("hold_state", call=slot.call_id, state=status.value)

    def _connect_media(self, slot: CallSlot) -> None:
        """Record whatever arrives from the moment media is up; once the call is confirmed,
        send the capture device's silence and play the file (mixed by the conference bridge)."""
        if slot.media.status is not MediaStatus.ACTIVE:
            return
        audio = slot.call.getAudioMedia(-1)
        if self.opts.record is not None and slot.media.recorder is None:
            path = self._record_path()
            recorder = pj.AudioMediaRecorder()
            recorder.createRecorder(str(path))
            slot.media.recorder, slot.media.record_path = recorder, path
        if slot.media.recorder is not None:
            audio.startTransmit(slot.media.recorder)
        if slot.confirmed:
            # The (null) capture device's silence, as a real phone sends its microphone:
            # with no source at all, pjsua2 stopped sending RTP on one of two phones after
            # about a second (seen 2026-12, both with and without load), taking DTMF with it.
            self.ep.audDevManager().getCaptureDevMedia().startTransmit(audio)
        if self.opts.play is not None and slot.confirmed:
            if slot.media.player is None:
                player = ReportingPlayer(
                    functools.partial(self.emitter.emit, "played", call=slot.call_id))
                flags = 0 if self.opts.play_loop else pj.PJMEDIA_FILE_NO_LOOP
                player.createPlayer(str(self.opts.play), flags)
                slot.media.player = player
            slot.media.player.startTransmit(audio)

    def _record_path(self) -> Path:
        assert self.opts.record is not None
        self._records += 1
        if self._records == 1:
            return self.opts.record
        base = self.opts.record
        return base.with_name(f"{base.stem}-{self._records}{base.suffix}")

    # ---- commands (main thread) ------------------------------------------------------------
    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        self.actions.put((time.monotonic() + max(0.0, delay), action))

    def dial(self, uri: str) -> None:
        assert self.account is not None
        call = PhoneCall(self, self.account, False)
        self._pending_dial = call  # keep it alive until pjsua knows it
        call.makeCall(uri, pj.CallOpParam(True))
        slot = self._register(call.slot)
        self._pending_dial = None
        self.emitter.emit("calling", call=slot.call_id, uri=uri)

    def answer_call(self, call_id: int | None, code: int) -> None:
        slot = self.find(call_id)
        if slot is not None and not slot.disconnected:
            self._answer(slot.call, code)

    def _answer(self, call: PhoneCall, code: int) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        call.answer(prm)

    def hangup(self, call_id: int | None, code: int = 0) -> None:
        slot = self.find(call_id)
        if slot is None:
            raise ValueError("no live call to hang up")
        self._hangup_slot(slot, code)

    def _hangup_slot(self, slot: CallSlot, code: int) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        slot.call.hangup(prm)

    def dtmf(self, call_id: int | None, digits: str, methods: Sequence[str] = ("rfc4733",)) -> None:
        """Send ``digits`` each way in ``methods`` at once, as a gateway sending a key both
        as RFC 4733 and as tones would: "rfc4733" (pjsua2 replaces the audio with events
        while they last), "inband" (tones into the call's audio), "info" (SIP INFO,
        application/dtmf-relay)."""
        slot = self._live(call_id)
        for method in methods:
            if method == "rfc4733":
                slot.call.dialDtmf(digits)
            elif method == "info":
                prm = pj.CallSendDtmfParam()
                prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
                prm.digits, prm.duration = digits, 160
                slot.call.sendDtmf(prm)
            elif method == "inband":
                self._play_tones(slot, digits)
            else:
                raise ValueError(f"unknown DTMF method {method!r}")

    def _play_tones(self, slot: CallSlot, digits: str) -> None:
        tones = pj.ToneGenerator()
        tones.createToneGenerator(8000, 1)
        sequence = pj.ToneDigitVector()
        for key in digits:
            digit = pj.ToneDigit()
            digit.digit, digit.on_msec, digit.off_msec, digit.volume = key, 200, 150, 0
            sequence.append(digit)
        tones.startTransmit(slot.call.getAudioMedia(-1))
        tones.playDigits(sequence)
        slot.media.tones.append(tones)  # alive as long as the call

    def hold(self, call_id: int | None) -> None:
        slot = self._live(call_id)
        self._reinvite_when_idle(slot, "hold", lambda: slot.call.setHold(pj.CallOpParam(True)))

    def unhold(self, call_id: int | None) -> None:
        slot = self._live(call_id)
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self._reinvite_when_idle(slot, "unhold", lambda: slot.call.reinvite(prm))

    def _reinvite_when_idle(self, slot: CallSlot, what: str, send: Callable[[], None],
                            attempts: int = REINVITE_ATTEMPTS) -> None:
        """Send a re-INVITE; while the previous one is still open, try again shortly.

        pjsua refuses a re-INVITE while another INVITE transaction of the dialog is still in
        progress (PJ_EINVALIDOP; RFC 3261 14.1 forbids overlapping ones), e.g. an unhold sent
        as soon as the far end has seen the hold but before our side has its 200.
        """
        try:
            send()
        except pj.Error as exc:
            if exc.status != PJ_EINVALIDOP or attempts <= 1 or slot.disconnected:
                raise
            self.schedule(REINVITE_RETRY_S,
                          lambda: self._retry_reinvite(slot, what, send, attempts - 1))

    def _retry_reinvite(self, slot: CallSlot, what: str, send: Callable[[], None],
                        attempts: int) -> None:
        try:
            self._reinvite_when_idle(slot, what, send, attempts)
        except pj.Error as exc:
            self.emitter.emit("error", command=what, message=exc.info())

    def stats(self, call_id: int | None) -> None:
        """Report RTP counters of a call's audio stream (RTCP-level, as pjmedia sees them)."""
        slot = self._live(call_id)
        info = slot.call.getInfo()
        index = next((m.index for m in info.media if m.type == pj.PJMEDIA_TYPE_AUDIO), -1)
        if index < 0:
            raise ValueError("call has no audio stream")
        stat = slot.call.getStreamStat(index)
        rx, tx, jb = stat.rtcp.rxStat, stat.rtcp.txStat, stat.jbuf
        self.emitter.emit("stats", call=slot.call_id, rx_packets=rx.pkt, rx_bytes=rx.bytes,
                          rx_loss=rx.loss, rx_discard=rx.discard, rx_reorder=rx.reorder,
                          rx_dup=rx.dup, rx_jitter_ms=rx.jitterUsec.mean / 1000.0,
                          tx_packets=tx.pkt, tx_bytes=tx.bytes, jb_lost=jb.lost,
                          jb_discard=jb.discard, jb_empty=jb.empty)

    def find(self, call_id: int | None) -> CallSlot | None:
        with self.lock:
            if call_id is not None:
                return self.slots.get(call_id)
            live = [s for s in self.slots.values() if not s.disconnected]
            return live[-1] if live else None

    def _live(self, call_id: int | None) -> CallSlot:
        slot = self.find(call_id)
        if slot is None or slot.disconnected:
            raise ValueError("no live call")
        return slot

    def _reap(self, call_id: int) -> None:
        with self.lock:
            slot = self.slots.pop(call_id, None)
        if slot is None:
            return
        media = slot.media
        if media.player is not None:
            media.player = None
        if media.recorder is not None and media.record_path is not None:
            media.recorder = None  # destroying the recorder finalises the WAV header ...
            finished = _wait_wav_closed(media.record_path)  # ... a moment later (see below)
            self.emitter.emit("recorded", call=call_id, path=str(media.record_path),
                              complete=finished)
        slot.media = CallMedia()
        del slot


def _wait_wav_closed(path: Path, timeout: float = 2.0) -> bool:
    """Wait until pjmedia's WAV writer has closed ``path``.

    pjsua 2.15 removes conference ports asynchronously ("Remove port queued"): the writer
    flushes and fills in the RIFF sizes on the conference clock thread shortly after the
    recorder is destroyed. The file is complete once its RIFF size equals its length - 8.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with path.open("rb") as fh:
                head = fh.read(8)
            size = path.stat().st_size
        except OSError:
            head, size = b"", 0
        if len(head) == 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:], "little") == size - 8:
            return True
        time.sleep(0.01)
    return False


def _call_ref(command: dict[str, Any]) -> int | None:
    ref = command.get("call")
    return int(ref) if ref is not None else None


def run_command(phone: Phone, command: dict[str, Any]) -> None:
    """Execute one stdin command on the main thread."""
    name = command.get("cmd")
    call = _call_ref(command)
    if name == "dial":
        phone.dial(str(command["uri"]))
    elif name == "answer":
        phone.answer_call(call, int(command.get("code", 200)))
    elif name == "hangup":
        phone.hangup(call, int(command.get("code", 0)))
    elif name == "dtmf":
        phone.dtmf(call, str(command["digits"]), command.get("methods", ("rfc4733",)))
    elif name == "hold":
        phone.hold(call)
    elif name == "unhold":
        phone.unhold(call)
    elif name == "stats":
        phone.stats(call)
    elif name == "quit":
        phone.running = False
    else:
        raise ValueError(f"unknown command {name!r}")


def _read_stdin(phone: Phone) -> None:
    """Reader thread: turns stdin lines into main-thread actions; EOF means quit."""
    for line in sys.stdin:
        text = line.strip()
        if text:
            phone.schedule(0.0, functools.partial(_dispatch, phone, text))
    phone.schedule(0.0, lambda: setattr(phone, "running", False))


def _dispatch(phone: Phone, text: str) -> None:
    try:
        command = json.loads(text)
        if not isinstance(command, dict):
            raise ValueError("a command must be a JSON object")
        run_command(phone, command)
    except (ValueError, KeyError, TypeError, pj.Error) as exc:
        detail = exc.info() if isinstance(exc, pj.Error) else str(exc)
        phone.emitter.emit("error", command=text, message=detail)


def main_loop(phone: Phone) -> None:
    """Run scheduled actions (commands, delayed answers, reaping) until quit or lifetime."""
    pending: list[tuple[float, Callable[[], None]]] = []
    deadline = time.monotonic() + phone.opts.max_lifetime
    while phone.running and time.monotonic() < deadline:
        try:
            pending.append(phone.actions.get(timeout=0.02))
        except queue.Empty:
            pass
        now = time.monotonic()
        due = [item for item in pending if item[0] <= now]
        pending = [item for item in pending if item[0] > now]
        for _, action in sorted(due, key=lambda item: item[0]):
            action()


def parse_args(argv: list[str] | None) -> PhoneOptions:
    parser = argparse.ArgumentParser(prog="python -m mediasrv.demo.phone")
    parser.add_argument("--name", required=True, help="user part of the phone's SIP URI")
    parser.add_argument("--port", type=int, default=0, help="SIP port on 127.0.0.1 (0: any)")
    parser.add_argument("--auto-answer", choices=[a.value for a in AutoAnswer], default="none")
    parser.add_argument("--answer-delay", type=float, default=0.0)
    parser.add_argument("--play", type=Path, help="8 kHz 16-bit mono WAV to play into calls")
    parser.add_argument("--play-loop", action="store_true")
    parser.add_argument("--record", type=Path, help="WAV path for what the phone hears")
    parser.add_argument("--codec", default="PCMU,PCMA",
                        help="enabled codecs in order of preference (PCMU, PCMA)")
    parser.add_argument("--tcp", action="store_true", help="also listen on TCP")
    parser.add_argument("--log-file", type=Path)
    parser.add_argument("--log-level", type=int, default=3)
    parser.add_argument("--max-lifetime", type=float, default=600.0,
                        help="quit on its own after this many seconds")
    ns = parser.parse_args(argv)
    codecs = tuple(c.strip().upper() for c in ns.codec.split(",") if c.strip())
    unknown = [c for c in codecs if c not in CODEC_IDS]
    if not codecs or unknown:
        parser.error(f"--codec: choose from {', '.join(CODEC_IDS)}")
    if ns.play is not None and not ns.play.is_file():
        parser.error(f"--play: no such file {ns.play}")
    return PhoneOptions(
        name=ns.name, port=ns.port, auto_answer=AutoAnswer(ns.auto_answer),
        answer_delay=ns.answer_delay, play=ns.play, play_loop=ns.play_loop, record=ns.record,
        codecs=codecs, tcp=ns.tcp, log_file=ns.log_file,
        log_level=ns.log_level if ns.log_file is not None else 0,
        max_lifetime=ns.max_lifetime,
    )


def _private_stdout() -> TextIO:
    """Keep fd 1 for JSON events only: C-level prints from pjsip go to stderr instead."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    emitter = Emitter(_private_stdout())
    phone = Phone(opts, emitter)
    signal.signal(signal.SIGTERM, lambda *_: setattr(phone, "running", False))
    try:
        phone.start()
    except pj.Error as exc:
        emitter.emit("error", message=f"start failed: {exc.info()}")
        return 1
    threading.Thread(target=_read_stdin, args=(phone,), daemon=True).start()
    try:
        main_loop(phone)
    finally:
        phone.shutdown()
    # Skip interpreter teardown: SWIG destructors running after libDestroy() can abort.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
