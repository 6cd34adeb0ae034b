"""Digest authentication: published vectors, round trips, failures, stale nonces."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mediasrv.sip.digest import (
    DigestAlgorithm,
    DigestClient,
    DigestCredentials,
    DigestError,
    DigestServer,
    DigestStatus,
    choose_challenge,
    parse_digest_params,
)
from mediasrv.sip.parser import SipParseError

SECRET = b"0123456789abcdef-test-secret"


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fixed(value: str) -> Callable[[], str]:
    return lambda: value


def response_of(authorization: str) -> str:
    return parse_digest_params(authorization)["response"]


def test_rfc2617_section_3_5_md5_vector() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    client = DigestClient(cnonce_factory=fixed("0a4f113b"))
    auth = client.authorization(
        challenge, "GET", "/dir/index.html", DigestCredentials("Mufasa", "Circle Of Life")
    )
    assert response_of(auth) == "6629fae49393a05397450978507c4ef1"
    params = parse_digest_params(auth)
    assert params["nc"] == "00000001" and params["qop"] == "auth"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, expected: str) -> None:
    challenge = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    client = DigestClient(cnonce_factory=fixed("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"))
    auth = client.authorization(
        challenge, "GET", "/dir/index.html", DigestCredentials("Mufasa", "Circle of Life")
    )
    assert response_of(auth) == expected
    assert parse_digest_params(auth)["algorithm"] == algorithm


@pytest.mark.parametrize("algorithm", list(DigestAlgorithm))
def test_round_trip(algorithm: DigestAlgorithm) -> None:
    clock = FakeClock()
    server = DigestServer("trunk.example", SECRET, algorithms=[algorithm], clock=clock)
    [challenge] = server.challenges()
    assert f"algorithm={algorithm.value}" in challenge
    creds = DigestCredentials("trunk1", "s3cret", realm="trunk.example")
    auth = DigestClient().authorization(challenge, "INVITE", "sip:0312345678@10.0.0.1", creds)
    passwords = {"trunk1": "s3cret"}
    uri = "sip:0312345678@10.0.0.1"
    result = server.verify(auth, "INVITE", passwords.get, uri)
    assert result.ok and result.username == "trunk1"
    # the same answer does not authorise a different method or Request-URI
    bye = server.verify(auth, "BYE", passwords.get, uri)
    assert bye.status is DigestStatus.FAILED and bye.guess
    other = server.verify(auth, "INVITE", passwords.get, "sip:other@10.0.0.1")
    assert other.status is DigestStatus.URI_MISMATCH and not other.guess


def test_challenges_sha256_first_and_stale_flag() -> None:
    server = DigestServer(
        "r", SECRET, algorithms=[DigestAlgorithm.MD5, DigestAlgorithm.SHA256], clock=FakeClock()
    )
    values = server.challenges()
    assert [parse_digest_params(v)["algorithm"] for v in values] == ["SHA-256", "MD5"]
    assert all(parse_digest_params(v)["qop"] == "auth" for v in values)
    assert "stale" not in parse_digest_params(values[0])
    assert parse_digest_params(server.challenges(stale=True)[1])["stale"] == "true"
    assert choose_challenge(list(reversed(values))) == values[0]
    assert choose_challenge(['Digest realm="r", nonce="n", algorithm=SHA-512-256']) is None


def test_wrong_password() -> None:
    server = DigestServer("r", SECRET, clock=FakeClock())
    auth = DigestClient().authorization(
        server.challenges()[0], "INVITE", "sip:a@b", DigestCredentials("u", "guess")
    )
    result = server.verify(auth, "INVITE", {"u": "right"}.get, "sip:a@b")
    assert result.status is DigestStatus.FAILED and result.reason == "wrong response"
    assert result.guess  # a password was compared: rate limits count it
    nobody: dict[str, str] = {}
    unknown = server.verify(auth, "INVITE", nobody.get, "sip:a@b")
    assert unknown.reason == "unknown user" and unknown.guess


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    clock = FakeClock()
    server = DigestServer("r", SECRET, nonce_ttl=300, clock=clock)
    challenge = server.challenges()[0]
    creds = DigestCredentials("u", "pw")
    auth = DigestClient().authorization(challenge, "INVITE", "sip:a@b", creds)
    assert server.verify(auth, "INVITE", {"u": "pw"}.get, "sip:a@b").ok
    clock.now += 301
    # the honest client's next answer to the old nonce after expiry: stale, so it retries
    later = DigestClient()
    later._counts[parse_digest_params(challenge)["nonce"]] = 1  # it used nc=1 already
    auth_later = later.authorization(challenge, "INVITE", "sip:a@b", creds)
    stale = server.verify(auth_later, "INVITE", {"u": "pw"}.get, "sip:a@b")
    assert stale.status is DigestStatus.STALE and stale.reason == "nonce expired"
    bad = DigestClient().authorization(challenge, "INVITE", "sip:a@b", DigestCredentials("u", "x"))
    assert server.verify(bad, "INVITE", {"u": "pw"}.get, "sip:a@b").status is DigestStatus.FAILED
    # and the fresh challenge works again
    fresh = server.challenges(stale=True)[0]
    auth2 = DigestClient().authorization(fresh, "INVITE", "sip:a@b", creds)
    assert server.verify(auth2, "INVITE", {"u": "pw"}.get, "sip:a@b").ok


def test_forged_or_foreign_nonce() -> None:
    clock = FakeClock()
    ours = DigestServer("r", SECRET, clock=clock)
    theirs = DigestServer("r", b"another-secret-of-16+bytes", clock=clock)
    creds = DigestCredentials("u", "pw")
    auth = DigestClient().authorization(theirs.challenges()[0], "INVITE", "sip:a@b", creds)
    assert ours.verify(auth, "INVITE", {"u": "pw"}.get, "sip:a@b").reason == "unknown nonce"
    stamp, _, mac = parse_digest_params(ours.challenges()[0])["nonce"].partition(".")
    ms, _, salt = stamp.partition("-")
    forged = f'Digest realm="r", nonce="{int(ms, 16) + 999999:x}-{salt}.{mac}"'
    forged_auth = DigestClient().authorization(forged, "INVITE", "sip:a@b", creds)
    result = ours.verify(forged_auth, "INVITE", {"u": "pw"}.get, "sip:a@b")
    assert result.reason == "unknown nonce" and not result.guess


def test_server_rejects_disallowed_algorithm_and_realm() -> None:
    clock = FakeClock()
    server = DigestServer("r", SECRET, algorithms=[DigestAlgorithm.SHA256], clock=clock)
    nonce = parse_digest_params(server.challenges()[0])["nonce"]
    creds = DigestCredentials("u", "pw")
    md5 = DigestClient().authorization(
        f'Digest realm="r", nonce="{nonce}", algorithm=MD5, qop="auth"', "INVITE", "sip:a@b", creds
    )
    result = server.verify(md5, "INVITE", {"u": "pw"}.get, "sip:a@b")
    assert result.reason == "algorithm MD5 not allowed" and not result.guess
    # an answer that names no algorithm means MD5 (RFC 7616 §3.4): refused too
    no_alg = md5.replace(", algorithm=MD5", "")
    assert "algorithm" not in parse_digest_params(no_alg)
    result = server.verify(no_alg, "INVITE", {"u": "pw"}.get, "sip:a@b")
    assert result.reason == "algorithm MD5 not allowed"
    other_realm = DigestClient().authorization(
        f'Digest realm="x", nonce="{nonce}", algorithm=SHA-256', "INVITE", "sip:a@b", creds
    )
    assert server.verify(other_realm, "INVITE", {"u": "pw"}.get, "sip:a@b").reason == "wrong realm"


def test_legacy_no_qop_response_accepted() -> None:
    """RFC 2617 §3.2.2.1 backwards-compatible form (no qop, no cnonce)."""
    server = DigestServer("r", SECRET, clock=FakeClock())
    nonce = parse_digest_params(server.challenges()[0])["nonce"]
    auth = DigestClient().authorization(
        f'Digest realm="r", nonce="{nonce}", algorithm=SHA-256',
        "BYE",
        "sip:a@b",
        DigestCredentials("u", "pw"),
    )
    assert "qop" not in parse_digest_params(auth)
    assert server.verify(auth, "BYE", {"u": "pw"}.get, "sip:a@b").ok
    # without qop there is no nc to tell a replay from a new request: good once
    again = server.verify(auth, "BYE", {"u": "pw"}.get, "sip:a@b")
    assert again.status is DigestStatus.STALE and again.reason == "nonce used without qop"


def test_nonce_count_increments_per_nonce() -> None:
    client = DigestClient()
    creds = DigestCredentials("u", "pw")
    challenge = 'Digest realm="r", nonce="abc", qop="auth"'
    ncs = [
        parse_digest_params(client.authorization(challenge, "INVITE", "sip:a@b", creds))["nc"]
        for _ in range(3)
    ]
    assert ncs == ["00000001", "00000002", "00000003"]
    other = client.authorization('Digest realm="r", nonce="xyz", qop="auth"', "A", "b", creds)
    assert parse_digest_params(other)["nc"] == "00000001"


def test_verify_never_raises_on_junk() -> None:
    server = DigestServer("r", SECRET, clock=FakeClock())
    for junk in (
        "",
        "Basic dXNlcjpwdw==",
        "Digest",
        "Digest username",
        'Digest username="u", realm="r", nonce="zz", uri="x", response="y"',
        'Digest username="u", realm="r", nonce=".", uri="x", response="y", qop=auth, nc=1',
        'Digest username="u", realm="r", nonce="g.h", uri="x", response="y", qop=auth-int',
        'Digest username="unterminated',
    ):
        result = server.verify(junk, "INVITE", {"u": "pw"}.get, "x")
        assert result.status is DigestStatus.FAILED and not result.guess


def test_client_errors() -> None:
    creds = DigestCredentials("u", "pw", realm="mine")
    client = DigestClient()
    with pytest.raises(DigestError, match="realm"):
        client.authorization('Digest realm="other", nonce="n"', "INVITE", "sip:a@b", creds)
    with pytest.raises(DigestError, match="algorithm"):
        client.authorization(
            'Digest realm="mine", nonce="n", algorithm=SHA-512-256', "INVITE", "sip:a@b", creds
        )
    with pytest.raises(DigestError, match="qop"):
        client.authorization('Digest realm="mine", nonce="n", qop="auth-int"', "I", "u", creds)
    with pytest.raises(DigestError):
        client.authorization("Basic realm=x", "INVITE", "sip:a@b", creds)


def test_parse_digest_params() -> None:
    params = parse_digest_params(
        'Digest realm="a, b", nonce="n\\"q", qop="auth,auth-int" , algorithm=MD5,stale=TRUE'
    )
    assert params == {
        "realm": "a, b",
        "nonce": 'n"q',
        "qop": "auth,auth-int",
        "algorithm": "MD5",
        "stale": "TRUE",
    }
    with pytest.raises(SipParseError):
        parse_digest_params('Digest realm="x')
    with pytest.raises(SipParseError):
        parse_digest_params("Bearer abc")


def test_credentials_with_quotes_round_trip() -> None:
    server = DigestServer("r", SECRET, clock=FakeClock())
    creds = DigestCredentials('we"ird\\user', "pw")
    auth = DigestClient().authorization(server.challenges()[0], "INVITE", "sip:a@b", creds)
    assert server.verify(auth, "INVITE", {creds.username: "pw"}.get, "sip:a@b").ok


def test_server_config_errors() -> None:
    with pytest.raises(ValueError):
        DigestServer("r", b"short")
    with pytest.raises(ValueError):
        DigestServer("r", SECRET, algorithms=[])
    with pytest.raises(ValueError):
        DigestServer("r", SECRET, max_failures=0)
    with pytest.raises(ValueError):
        DigestServer("r", SECRET, max_nonces=0)


# -- nonces bounded in use (issue 8, finding 3) ------------------------------------------------


def answer(server: DigestServer, client: DigestClient, challenge: str, password: str) -> str:
    return client.authorization(challenge, "INVITE", "sip:a@b", DigestCredentials("u", password))


def check(server: DigestServer, auth: str, source: str = "") -> DigestStatus:
    return server.verify(auth, "INVITE", {"u": "pw"}.get, "sip:a@b", source).status


def test_nonce_count_must_grow() -> None:
    """RFC 7616 §3.4: nc counts the requests made with a nonce; a count seen before (or a
    lower one) is a replay. A correct replay is re-challenged (stale), never admitted."""
    server = DigestServer("r", SECRET, clock=FakeClock())
    challenge = server.challenges()[0]
    client = DigestClient()
    first = answer(server, client, challenge, "pw")
    assert check(server, first) is DigestStatus.OK
    assert check(server, first) is DigestStatus.STALE  # the same header again
    second = answer(server, client, challenge, "pw")  # nc=00000002
    third = answer(server, client, challenge, "pw")  # nc=00000003
    assert check(server, third) is DigestStatus.OK
    result = server.verify(second, "INVITE", {"u": "pw"}.get, "sip:a@b")
    assert result.status is DigestStatus.STALE and result.reason == "nonce count replayed"
    # a hand-made nc=00000000 on a fresh nonce is no count at all
    fresh = server.challenges()[0]
    zero = answer(server, DigestClient(), fresh, "pw").replace("nc=00000001", "nc=00000000")
    assert check(server, zero) is not DigestStatus.OK


def test_a_wrong_answer_does_not_burn_the_count() -> None:
    """Only accepted answers move nc: a guess with nc=ffffffff must not lock the honest
    client out of its nonce."""
    server = DigestServer("r", SECRET, clock=FakeClock())
    challenge = server.challenges()[0]
    attacker = DigestClient()
    attacker._counts[parse_digest_params(challenge)["nonce"]] = 0xFFFFFFFE
    assert check(server, answer(server, attacker, challenge, "guess")) is DigestStatus.FAILED
    assert check(server, answer(server, DigestClient(), challenge, "pw")) is DigestStatus.OK


def test_nonce_spent_after_max_failures() -> None:
    server = DigestServer("r", SECRET, clock=FakeClock(), max_failures=3)
    challenge = server.challenges()[0]
    client = DigestClient()
    for i in range(3):
        assert check(server, answer(server, client, challenge, f"x{i}")) is DigestStatus.FAILED
    right = server.verify(
        answer(server, client, challenge, "pw"), "INVITE", {"u": "pw"}.get, "sip:a@b"
    )
    assert right.status is DigestStatus.FAILED and right.reason == "nonce spent"
    assert not right.guess  # not compared with the password: nothing learned, not counted
    # another nonce is untouched
    assert check(server, answer(server, DigestClient(), server.challenges()[0], "pw")).name == "OK"


def test_nonce_table_is_bounded_and_a_forgotten_nonce_is_stale() -> None:
    clock = FakeClock()
    server = DigestServer("r", SECRET, clock=clock, max_nonces=100)
    oldest = server.challenges()[0]
    for _ in range(10_000):  # a flood of challenges (unauthenticated INVITEs)
        clock.now += 0.001
        server.challenges()
    assert len(server.nonces) == 100
    assert server.nonces.evicted == 9_901
    # the right answer to the forgotten nonce: stale=true, and the fresh nonce works
    result = server.verify(
        answer(server, DigestClient(), oldest, "pw"), "INVITE", {"u": "pw"}.get, "sip:a@b"
    )
    assert result.status is DigestStatus.STALE and result.reason == "nonce not in the table"
    assert (
        check(server, answer(server, DigestClient(), server.challenges(stale=True)[0], "pw")).name
        == "OK"
    )


def test_expired_nonces_leave_the_table() -> None:
    clock = FakeClock()
    server = DigestServer("r", SECRET, clock=clock, nonce_ttl=300)
    for _ in range(50):
        server.challenges()
    clock.now += 301
    server.challenges()
    assert len(server.nonces) == 1


def test_nonce_answered_from_another_address_is_foreign() -> None:
    """The nonce is bound to the address it was sent to: a nonce obtained at one address
    cannot be answered from another (a spoofer cannot charge its guesses to a carrier)."""
    server = DigestServer("r", SECRET, clock=FakeClock())
    challenge = server.challenges(source="192.0.2.7")[0]
    auth = answer(server, DigestClient(), challenge, "pw")
    elsewhere = server.verify(auth, "INVITE", {"u": "pw"}.get, "sip:a@b", "198.51.100.9")
    assert elsewhere.reason == "unknown nonce" and not elsewhere.guess
    assert check(server, auth, "192.0.2.7") is DigestStatus.OK


@pytest.mark.parametrize(
    ("digest_uri", "request_uri", "same"),
    [
        ("sip:0312345678@10.0.0.1:5060", "sip:0312345678@10.0.0.1:5060", True),
        # RFC 3261 §19.1.4: scheme and host case-insensitive, escapes decoded, transport
        # value case-insensitive
        ("SIP:0312345678@MEDIASRV.example", "sip:0312345678@mediasrv.example", True),
        ("sip:%30312345678@10.0.0.1", "sip:0312345678@10.0.0.1", True),
        ("sip:031@10.0.0.1;transport=UDP", "sip:031@10.0.0.1;transport=udp", True),
        # another number, host, port or transport is another resource
        ("sip:0312345678@10.0.0.1", "sip:0398765432@10.0.0.1", False),
        ("sip:0312345678@10.0.0.1", "sip:0312345678@10.0.0.2", False),
        ("sip:0312345678@10.0.0.1", "sip:0312345678@10.0.0.1:5060", False),
        ("sip:031@10.0.0.1;transport=tcp", "sip:031@10.0.0.1", False),
        ("sip:0312345678@10.0.0.1", "sips:0312345678@10.0.0.1", False),
        ("not a uri", "sip:0312345678@10.0.0.1", False),
    ],
)
def test_digest_uri_must_name_the_request_uri(
    digest_uri: str, request_uri: str, same: bool
) -> None:
    server = DigestServer("r", SECRET, clock=FakeClock())
    auth = DigestClient().authorization(
        server.challenges()[0], "INVITE", digest_uri, DigestCredentials("u", "pw")
    )
    result = server.verify(auth, "INVITE", {"u": "pw"}.get, request_uri)
    assert result.ok is same
    if not same:
        assert result.status is DigestStatus.URI_MISMATCH and not result.guess
