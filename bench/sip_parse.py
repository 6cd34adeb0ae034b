"""Micro-benchmark of the SIP message layer: parse_message (+ the accessors a transaction layer
touches) and serialize, for a typical INVITE (pjsua2's, with SDP) and a 200 OK (SIPp's).

If Sippy B2BUA (``pip install sippy``) is importable, its parser is measured in the same run on
the same bytes with the equivalent accessors, and the ratio is printed. Bounded in count and
time so it is safe on a shared 2-core machine. The last line is
``RESULT sip_parse invite_per_s=<n> ok_per_s=<n> folded_per_s=<n>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":  # run by path; bench/ is not on sys.path under PYTHONSAFEPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchenv

    benchenv.use_project_python(__file__)

from mediasrv.sip.message import make_response, serialize
from mediasrv.sip.parser import parse_message

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "sip"


CLOCK: Callable[[], float] = time.perf_counter  # --cpu: this thread's CPU time instead


def rate(fn: Callable[[], object], seconds: float, max_count: int) -> float:
    """Best of three runs of ``fn`` repeated for about ``seconds`` / 3 each; calls per second
    of ``CLOCK`` (wall time, or with --cpu CPU time, which a loaded machine disturbs less)."""
    best = 0.0
    for _ in range(3):
        count = 0
        start = CLOCK()
        deadline = time.perf_counter() + seconds / 3
        while count < max_count:
            for _ in range(100):
                fn()
            count += 100
            if time.perf_counter() >= deadline:
                break
        best = max(best, count / (CLOCK() - start))
    return best


def sippy_baseline(
    invite: bytes, ok: bytes, seconds: float, max_count: int
) -> tuple[float, float] | None:
    try:
        from sippy.SipRequest import SipRequest
        from sippy.SipResponse import SipResponse
    except ImportError:
        print("sippy not installed: no baseline")
        return None

    def parse_invite() -> None:
        # Sippy's transport hands the parser a str; decoding is part of the work
        r = SipRequest(buf=invite.decode())
        _ = (
            r.getHFBody("via").getBranch(),
            r.getHFBody("call-id"),
            r.getHFBody("cseq").getCSeq(),
            r.getHFBody("from").getTag(),
            r.getHFBody("to").getTag(),
        )

    def parse_ok() -> None:
        r = SipResponse(buf=ok.decode())
        _ = (
            r.getHFBody("via").getBranch(),
            r.getHFBody("cseq").getCSeq(),
            r.getHFBody("to").getTag(),
        )

    return rate(parse_invite, seconds, max_count), rate(parse_ok, seconds, max_count)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--max-count", type=int, default=2_000_000)
    ap.add_argument("--cpu", action="store_true", help="rate per CPU second of this thread")
    args = ap.parse_args()
    if args.cpu:
        global CLOCK
        CLOCK = time.thread_time

    invite = (DATA / "pjsua2_invite.sip").read_bytes()
    ok = (DATA / "sipp_200_ok_sdp.sip").read_bytes()

    def parse_invite() -> None:
        msg = parse_message(invite)
        # what the server transaction / UA reads from every new INVITE
        _ = (msg.branch, msg.call_id, msg.cseq, msg.from_tag, msg.to_tag)

    def parse_ok() -> None:
        msg = parse_message(ok)
        _ = (msg.branch, msg.cseq, msg.to_tag)

    # the same INVITE with its headers folded (RFC 3261 §7.3.1): the unfolding path
    folded = invite.replace(b";branch=", b"\r\n ;branch=").replace(b"From: ", b"From:\r\n\t ")

    def parse_folded() -> None:
        msg = parse_message(folded)
        _ = (msg.branch, msg.call_id, msg.cseq, msg.from_tag, msg.to_tag)

    req = parse_message(invite)
    assert req.__class__.__name__ == "Request"

    def respond() -> None:
        serialize(make_response(req, 180, to_tag="abcdef"))  # type: ignore[arg-type]

    results = {
        "parse INVITE + accessors": rate(parse_invite, args.seconds, args.max_count),
        "parse 200 OK + accessors": rate(parse_ok, args.seconds, args.max_count),
        "parse folded INVITE + accessors": rate(parse_folded, args.seconds, args.max_count),
        "make_response + serialize 180": rate(respond, args.seconds, args.max_count),
        "serialize INVITE": rate(lambda: serialize(req), args.seconds, args.max_count),
    }
    for name, value in results.items():
        print(f"{name:32s} {value:12,.0f} /s")
    baseline = sippy_baseline(invite, ok, args.seconds, args.max_count)
    if baseline is not None:
        sippy_invite, sippy_ok = baseline
        print(f"{'sippy parse INVITE + accessors':32s} {sippy_invite:12,.0f} /s")
        print(f"{'sippy parse 200 OK + accessors':32s} {sippy_ok:12,.0f} /s")
        print(
            f"ratio vs sippy: INVITE {results['parse INVITE + accessors'] / sippy_invite:.2f}x, "
            f"200 OK {results['parse 200 OK + accessors'] / sippy_ok:.2f}x"
        )
    print(
        "RESULT sip_parse "
        f"invite_per_s={results['parse INVITE + accessors']:.0f} "
        f"ok_per_s={results['parse 200 OK + accessors']:.0f} "
        f"folded_per_s={results['parse folded INVITE + accessors']:.0f}"
    )


if __name__ == "__main__":
    main()
