"""Digest authentication against the running server, probed as an attacker would (issue 8,
finding 3): replayed credentials, MD5 under a SHA-256 trunk, nonce-count replay, one nonce for
many guesses, and a brute force from one source. Every probe is an INVITE over loopback UDP;
an INVITE the server admits has no SDP, so it is answered 488, which is how a probe tells
"admitted" from "refused" (401/403) without any operator behind the number."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FAST_SIP, StartServer
from digest_prober import Prober

from mediasrv.demo.server import ServerProcess
from mediasrv.sip.digest import DigestClient, DigestCredentials, parse_digest_params

pytestmark = pytest.mark.e2e

NUMBER = "0312345678"
OTHER = "0398765432"
USER, PASSWORD = "carrier1", "s3cret"
RIGHT = DigestCredentials(USER, PASSWORD)
ADMITTED = 488  # admitted, then refused for want of an SDP offer (no operator is dialled)


def trunk(algorithm: str = "SHA-256", addresses: tuple[str, ...] = ("127.0.0.1/32",)) -> dict:
    return {
        "name": "carrier",
        "addresses": list(addresses),
        "inbound_auth": True,
        "username": USER,
        "password": PASSWORD,
        "realm": "mediasrv",
        "algorithm": algorithm,
    }


NUMBERS = [
    {"number": NUMBER, "destinations": ["sip:op@127.0.0.1:9"]},
    {"number": OTHER, "destinations": ["sip:op@127.0.0.1:9"]},
]


def start(start_server: StartServer, guard: dict[str, Any] | None = None, **trunk_kw: Any):
    sip: dict[str, object] = dict(FAST_SIP)
    if guard is not None:
        sip["auth_guard"] = guard
    return start_server(trunks=[trunk(**trunk_kw)], numbers=NUMBERS, sip=sip)


@pytest.fixture
def prober() -> Iterator[Any]:
    probers: list[Prober] = []

    def make(server: ServerProcess, host: str = "127.0.0.1") -> Prober:
        p = Prober(server.sip_port, host)
        probers.append(p)
        return p

    yield make
    for p in probers:
        p.close()


def authenticated(p: Prober, user: str, creds: DigestCredentials = RIGHT) -> tuple[str, int]:
    """Challenge, answer; returns (the Authorization we sent, the final code)."""
    challenge = p.challenge(user)
    assert challenge.code == 401, challenge.final
    auth = p.answer(challenge.challenges()[0], user, creds)
    return auth, p.invite(user, auth).code


def auth_metric(server: ServerProcess, name: str, **labels: str) -> float:
    key = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return server.metrics().get(f"mediasrv_sip_auth_{name}_total{{{key}}}", 0.0)


def test_credentials_replayed_to_another_number_are_refused(start_server: StartServer, prober):
    """RFC 7616 §3.4.6 / RFC 3261 §22.4: the digest uri must be the Request-URI."""
    server = start(start_server)
    p = prober(server)
    auth, code = authenticated(p, NUMBER)
    assert code == ADMITTED
    # the captured header, byte for byte, on INVITEs to another number (3 tries, as the
    # security review did): the response hash covers the uri, the check must too
    codes = [p.invite(OTHER, auth).code for _ in range(3)]
    assert codes == [400, 400, 400], codes


def test_sha256_trunk_neither_offers_nor_accepts_md5(start_server: StartServer, prober):
    server = start(start_server, algorithm="SHA-256")
    p = prober(server)
    challenge = p.challenge(NUMBER)
    assert challenge.code == 401
    assert challenge.algorithms() == ["SHA-256"]  # RFC 8760 §2.4: only what is configured
    # an MD5 answer to our nonce, with the right password: refused
    nonce = parse_digest_params(challenge.challenges()[0])["nonce"]
    md5_challenge = f'Digest realm="mediasrv", nonce="{nonce}", algorithm=MD5, qop="auth"'
    md5 = p.answer(md5_challenge, NUMBER, RIGHT)
    assert p.invite(NUMBER, md5).code == 403
    # the SHA-256 answer to a fresh challenge is admitted
    assert authenticated(p, NUMBER)[1] == ADMITTED


def test_md5_trunk_offers_only_md5(start_server: StartServer, prober):
    server = start(start_server, algorithm="MD5")
    p = prober(server)
    challenge = p.challenge(NUMBER)
    assert challenge.algorithms() == ["MD5"]
    assert authenticated(p, NUMBER)[1] == ADMITTED


def test_nonce_count_replay_is_refused_and_a_higher_count_accepted(
    start_server: StartServer, prober
):
    """RFC 7616 §3.4: nc counts requests per nonce; a count seen before is a replay."""
    server = start(start_server)
    p = prober(server)
    challenge = p.challenge(NUMBER).challenges()[0]
    client = DigestClient()
    first = client.authorization(challenge, "INVITE", p.request_uri(NUMBER), RIGHT)
    assert p.invite(NUMBER, first).code == ADMITTED
    replay = p.invite(NUMBER, first)  # same header in a new INVITE (new Call-ID, branch)
    assert replay.code == 401, replay.final
    assert parse_digest_params(replay.challenges()[0]).get("stale") == "true"
    # the honest client's next request on the same nonce has nc=2: admitted
    second = client.authorization(challenge, "INVITE", p.request_uri(NUMBER), RIGHT)
    assert parse_digest_params(second)["nc"] == "00000002"
    assert p.invite(NUMBER, second).code == ADMITTED


def test_one_nonce_is_spent_after_n_failures(start_server: StartServer, prober):
    """The review had one nonce serve 10,000 guesses; now it serves nonce_max_failures."""
    server = start(start_server, guard={"enabled": False, "nonce_max_failures": 3})
    p = prober(server)
    challenge = p.challenge(NUMBER).challenges()[0]
    client = DigestClient()  # nc goes up by one per answer, as svcrack -n does
    uri = p.request_uri(NUMBER)
    for i in range(3):
        wrong = client.authorization(challenge, "INVITE", uri, DigestCredentials(USER, f"x{i}"))
        assert p.invite(NUMBER, wrong).code == 403
    right = client.authorization(challenge, "INVITE", uri, RIGHT)
    assert p.invite(NUMBER, right).code == 403  # the nonce is spent: not even checked
    assert authenticated(p, NUMBER)[1] == ADMITTED  # a fresh nonce works


def test_brute_force_from_one_source_is_blocked(start_server: StartServer, prober):
    """200 wrong guesses from one source: 5 are checked, then the source is blocked and the
    right password is refused too (counts, not rates)."""
    guard = {"max_failures": 5, "window": 60.0, "backoff": 0.0, "base_block": 60.0}
    server = start(start_server, guard=guard, addresses=("127.0.0.0/29",))
    p = prober(server)
    first_challenge: str | None = None
    codes: dict[int, int] = {}
    checked = 0
    for i in range(200):
        ex = p.challenge(NUMBER)
        codes[ex.code] = codes.get(ex.code, 0) + 1
        if ex.code != 401:
            continue
        first_challenge = first_challenge or ex.challenges()[0]
        wrong = p.answer(ex.challenges()[0], NUMBER, DigestCredentials(USER, f"guess{i}"))
        assert p.invite(NUMBER, wrong).code == 403
        checked += 1
    assert checked == 5, codes  # today: 200
    assert codes == {401: 5, 403: 195}, codes
    # the right password, on a nonce issued before the block, is refused while it lasts
    assert first_challenge is not None
    right = p.answer(first_challenge, NUMBER, RIGHT)
    assert p.invite(NUMBER, right).code == 403
    assert auth_metric(server, "blocks", scope="source") == 1
    assert auth_metric(server, "attempts", result="failed") == 5
    assert auth_metric(server, "attempts", result="blocked") == 196
    # logged once per block, not per refused attempt
    lines = [json.loads(x) for x in server.log_tail(200_000).splitlines() if x.startswith("{")]
    blocked = [x for x in lines if x.get("msg") == "digest authentication: blocked"]
    assert len(blocked) == 1 and blocked[0]["scope"] == "source", blocked
    # another source of the same trunk is not blocked: the block is per source, and the
    # user is below its own threshold (max_user_failures)
    q = prober(server, "127.0.0.2")
    assert authenticated(q, NUMBER)[1] == ADMITTED


def test_nonce_table_stays_bounded_under_a_challenge_flood(start_server: StartServer, prober):
    """1,000 unauthenticated INVITEs, each answered 401 with a new nonce: the server holds at
    most nonce_table_size nonces, and an honest client still gets in afterwards."""
    server = start(start_server, guard={"nonce_table_size": 100})
    p = prober(server)
    codes = [p.challenge(NUMBER).code for _ in range(1000)]
    assert codes.count(401) == 1000
    assert server.metrics()["mediasrv_sip_auth_nonces"] == 100
    assert authenticated(prober(server), NUMBER)[1] == ADMITTED
