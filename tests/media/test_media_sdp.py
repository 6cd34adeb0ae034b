"""SDP parse/serialize and offer/answer (RFC 4566, RFC 3264) on real peers' bodies."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediasrv.media import sdp
from mediasrv.media.api import Direction, NoCommonCodec, SdpError
from mediasrv.media.codec import Codec

DATA = Path(__file__).parent / "data"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_pjsua2_offer_parses_with_its_telephone_event_at_8000() -> None:
    offer = sdp.parse(load("pjsua2_offer.sdp"))
    assert offer.origin.sess_version == offer.origin.sess_id  # pjmedia starts there
    found = offer.audio()
    assert found is not None
    _, m = found
    assert m.port == 4000 and m.rtcp_port == 4001
    assert m.direction is Direction.SENDRECV
    codecs, te_pt = sdp.offered_codecs(offer)
    assert codecs == [Codec.PCMU, Codec.PCMA]  # speex, iLBC, GSM, G722 are not ours
    assert te_pt == 121  # the 8 kHz one of pjsua2's three telephone-event PTs


def test_answer_to_pjsua2_keeps_offer_order_and_te_pt() -> None:
    answer, neg = sdp.answer_offer(sdp.parse(load("pjsua2_offer.sdp")), "127.0.0.1", 20000)
    assert (neg.codec, neg.pt, neg.te_pt) == (Codec.PCMU, 0, 121)
    assert neg.remote == ("127.0.0.1", 4000)
    assert neg.direction is Direction.SENDRECV
    text = answer.to_bytes().decode()
    assert "m=audio 20000 RTP/AVP 0 121\r\n" in text
    assert "a=rtpmap:121 telephone-event/8000\r\n" in text
    assert "a=fmtp:121 0-16\r\n" in text
    assert text.endswith("\r\n") and "\n\n" not in text


def test_prefer_picks_the_other_legs_codec() -> None:
    _, neg = sdp.answer_offer(
        sdp.parse(load("pjsua2_offer.sdp")), "127.0.0.1", 20000, prefer=["PCMA"]
    )
    assert (neg.codec, neg.pt) == (Codec.PCMA, 8)


def test_prefer_ignores_codecs_not_offered() -> None:
    _, neg = sdp.answer_offer(sdp.parse(load("sipp_uac.sdp")), "127.0.0.1", 20000, prefer=["PCMA"])
    assert neg.codec is Codec.PCMU and neg.te_pt is None


def test_sipp_pcap_offer_pcma_with_events() -> None:
    answer, neg = sdp.answer_offer(sdp.parse(load("sipp_uac_pcap.sdp")), "127.0.0.1", 20000)
    assert (neg.codec, neg.te_pt, neg.remote) == (Codec.PCMA, 101, ("127.0.0.1", 6000))
    assert b"a=fmtp:101 0-11,16\r\n" in answer.to_bytes()  # the offer's event list is kept


@pytest.mark.parametrize(
    ("fixture", "remote", "ours"),
    [
        ("hold_sendonly.sdp", ("127.0.0.1", 4000), Direction.RECVONLY),
        ("hold_inactive.sdp", ("127.0.0.1", 4000), Direction.INACTIVE),
        ("hold_rfc2543.sdp", None, Direction.RECVONLY),
    ],
)
def test_hold_forms(fixture: str, remote: tuple[str, int] | None, ours: Direction) -> None:
    answer, neg = sdp.answer_offer(sdp.parse(load(fixture)), "127.0.0.1", 20000)
    assert neg.remote == remote
    assert neg.direction is ours
    assert f"a={ours.value}\r\n".encode() in answer.to_bytes()


def test_direction_complement_table() -> None:
    # RFC 3264 §6.1
    assert sdp.complement(Direction.SENDONLY) is Direction.RECVONLY
    assert sdp.complement(Direction.RECVONLY) is Direction.SENDONLY
    assert sdp.complement(Direction.SENDRECV) is Direction.SENDRECV
    assert sdp.complement(Direction.INACTIVE) is Direction.INACTIVE


def test_recvonly_offer_gets_sendonly_answer() -> None:
    body = load("sipp_uac.sdp") + b"a=recvonly\r\n"
    _, neg = sdp.answer_offer(sdp.parse(body), "127.0.0.1", 20000)
    assert neg.direction is Direction.SENDONLY


def test_ipv6_and_rejected_video_stream() -> None:
    offer = sdp.parse(load("ipv6_with_video.sdp"))
    answer, neg = sdp.answer_offer(offer, "::1", 20000)
    assert neg.remote == ("2001:db8::2", 5004)
    assert (neg.codec, neg.ptime, neg.te_pt) == (Codec.PCMA, 30, 101)
    text = answer.to_bytes().decode()
    assert "c=IN IP6 ::1\r\n" in text
    assert "m=video 0 RTP/AVP 96\r\n" in text  # RFC 3264 §6: same m= count, port 0
    assert "a=ptime:30\r\n" in text
    assert len(sdp.parse(answer.to_bytes()).media) == 2


def test_no_common_codec_is_explained() -> None:
    body = load("pjsua2_offer.sdp").replace(b" 3 0 8 9 ", b" 3 9 ")
    with pytest.raises(NoCommonCodec, match=r"offer has .*GSM/8000.*we support PCMU, PCMA"):
        sdp.answer_offer(sdp.parse(body), "127.0.0.1", 20000)


def test_offer_without_audio_is_no_common_codec() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5 RTP/AVP 96\r\n"
    with pytest.raises(NoCommonCodec, match="no usable RTP/AVP audio"):
        sdp.answer_offer(sdp.parse(body), "127.0.0.1", 20000)


def test_offer_answer_round_trip_and_accept() -> None:
    offer = sdp.build_offer("127.0.0.1", 30000, [Codec.PCMA, Codec.PCMU])
    answer, peer_view = sdp.answer_offer(sdp.parse(offer.to_bytes()), "127.0.0.2", 40000)
    assert peer_view.codec is Codec.PCMA  # the answerer follows the offerer's order
    ours = sdp.accept_answer(offer, sdp.parse(answer.to_bytes()))
    assert (ours.codec, ours.pt, ours.te_pt) == (Codec.PCMA, 8, 101)
    assert ours.remote == ("127.0.0.2", 40000)
    assert ours.direction is Direction.SENDRECV


def test_our_hold_offer_and_its_answer() -> None:
    offer = sdp.build_offer("127.0.0.1", 30000, direction=Direction.SENDONLY)
    answer, peer_view = sdp.answer_offer(sdp.parse(offer.to_bytes()), "127.0.0.2", 40000)
    assert peer_view.direction is Direction.RECVONLY
    assert sdp.accept_answer(offer, answer).direction is Direction.SENDONLY


def test_accept_answer_rejected_stream_and_wrong_mline_count() -> None:
    offer = sdp.build_offer("127.0.0.1", 30000)
    rejected = load("sipp_uac.sdp").replace(b"m=audio 6000", b"m=audio 0")
    with pytest.raises(NoCommonCodec, match="rejected"):
        sdp.accept_answer(offer, sdp.parse(rejected))
    with pytest.raises(SdpError, match="m= lines"):
        sdp.accept_answer(offer, sdp.parse(load("ipv6_with_video.sdp")))


def test_accept_answer_with_codec_we_did_not_offer() -> None:
    offer = sdp.build_offer("127.0.0.1", 30000, [Codec.PCMU])
    with pytest.raises(NoCommonCodec, match="no codec we offered"):
        sdp.accept_answer(offer, sdp.parse(load("sipp_uac_pcap.sdp")))


def test_origin_version_increments_only_when_sdp_changes() -> None:
    # RFC 3264 §8: same o= except a version incremented by one when the SDP changes.
    origin = sdp.OriginState(42, "127.0.0.1")
    first = sdp.parse(origin.stamp(sdp.build_offer("127.0.0.1", 30000)))
    again = sdp.parse(origin.stamp(sdp.build_offer("127.0.0.1", 30000)))
    hold = sdp.parse(
        origin.stamp(sdp.build_offer("127.0.0.1", 30000, direction=Direction.SENDONLY))
    )
    resume = sdp.parse(origin.stamp(sdp.build_offer("127.0.0.1", 30000)))
    assert first.origin.sess_id == hold.origin.sess_id == 42
    assert again.origin.sess_version == first.origin.sess_version
    assert hold.origin.sess_version == first.origin.sess_version + 1
    assert resume.origin.sess_version == first.origin.sess_version + 2


def test_serialize_round_trip_of_fixtures() -> None:
    for path in sorted(DATA.glob("*.sdp")):
        once = sdp.parse(path.read_bytes()).to_bytes()
        assert sdp.parse(once).to_bytes() == once, path.name


def test_bare_lf_accepted() -> None:
    body = load("sipp_uac.sdp").replace(b"\r\n", b"\n")
    assert sdp.parse(body).media[0].port == 6000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "no v= line"),
        (b"v=1\r\n", "unsupported version"),
        (b"v=0\r\ns=-\r\n", "no o= line"),
        (b"v=0\r\no=- 1\r\n", "o= needs 6 fields"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 nowhere\r\n", "not an IP address"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP6 1.2.3.4\r\n", "does not match"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "m= port is not a number"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n", "out of range"),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
            "encoding/clock",
        ),
        (b"v=0\r\nthis is not sdp\r\n", "not 'x=value'"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_parse_errors_are_sdp_errors(body: bytes, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        sdp.parse(body)


def test_missing_connection_is_sdp_error_on_answer() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\n"
    with pytest.raises(SdpError, match="no c= line"):
        sdp.answer_offer(sdp.parse(body), "127.0.0.1", 20000)


def _mutations() -> st.SearchStrategy[bytes]:
    seeds = [p.read_bytes() for p in sorted(DATA.glob("*.sdp"))]
    return st.tuples(
        st.sampled_from(seeds), st.integers(0, 2000), st.integers(0, 40), st.binary(max_size=40)
    ).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)] + t[3] + t[0][t[1] % (len(t[0]) + 1) + t[2] :])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), _mutations()))
def test_fuzz_never_raises_anything_but_media_errors(body: bytes) -> None:
    try:
        offer = sdp.parse(body)
        answer, _ = sdp.answer_offer(offer, "127.0.0.1", 20000)
        sdp.parse(answer.to_bytes())
        sdp.accept_answer(sdp.build_offer("127.0.0.1", 2), offer)
    except (SdpError, NoCommonCodec):
        pass


def test_pjsua2_hold_and_resume_reinvites() -> None:
    offer = sdp.parse(load("pjsua2_offer.sdp"))
    hold = sdp.parse(load("pjsua2_hold.sdp"))
    resume = sdp.parse(load("pjsua2_resume.sdp"))
    # pjsua2 follows RFC 3264 §8: same o= session, version +1 per change.
    assert hold.origin.sess_id == offer.origin.sess_id == resume.origin.sess_id
    assert resume.origin.sess_version == hold.origin.sess_version + 1
    assert sdp.offered_direction(hold) is Direction.SENDONLY
    _, on_hold = sdp.answer_offer(hold, "127.0.0.1", 20000, prefer=["PCMU"])
    assert (on_hold.direction, on_hold.remote) == (Direction.RECVONLY, ("127.0.0.1", 4000))
    _, resumed = sdp.answer_offer(resume, "127.0.0.1", 20000, prefer=["PCMU"])
    assert resumed.direction is Direction.SENDRECV


@pytest.fixture(autouse=True)
def packet_path() -> str:
    """Overrides tests/media/conftest.py: this module never builds an engine, so it runs once,
    not once per packet path."""
    return "none"
