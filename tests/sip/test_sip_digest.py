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
    result = server.verify(auth, "INVITE", passwords.get, request_uri="sip:0312345678@10.0.0.1")
    assert result.ok and result.username == "trunk1"
    # the same answer does not authorise a different method or Request-URI
    assert server.verify(auth, "BYE", passwords.get).status is DigestStatus.FAILED
    other = server.verify(auth, "INVITE", passwords.get, request_uri="sip:other@10.0.0.1")
    assert other.reason == "uri does not match Request-URI"
    # scheme and host are case-insensitive (RFC 3261 §19.1.4), the user part is not
    same = server.verify(auth, "INVITE", passwords.get, request_uri="SIP:0312345678@10.0.0.1")
    assert same.ok


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
    result = server.verify(auth, "INVITE", {"u": "right"}.get)
    assert result.status is DigestStatus.FAILED and result.reason == "wrong response"
    nobody: dict[str, str] = {}
    assert server.verify(auth, "INVITE", nobody.get).reason == "unknown user"


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    clock = FakeClock()
    server = DigestServer("r", SECRET, nonce_ttl=300, clock=clock)
    challenge = server.challenges()[0]
    creds = DigestCredentials("u", "pw")
    auth = DigestClient().authorization(challenge, "INVITE", "sip:a@b", creds)
    assert server.verify(auth, "INVITE", {"u": "pw"}.get).ok
    clock.now += 301
    # a replay of the old answer after expiry: stale, so an honest client retries
    stale = server.verify(auth, "INVITE", {"u": "pw"}.get)
    assert stale.status is DigestStatus.STALE
    bad = DigestClient().authorization(challenge, "INVITE", "sip:a@b", DigestCredentials("u", "x"))
    assert server.verify(bad, "INVITE", {"u": "pw"}.get).status is DigestStatus.FAILED
    # and the fresh challenge works again
    fresh = server.challenges(stale=True)[0]
    auth2 = DigestClient().authorization(fresh, "INVITE", "sip:a@b", creds)
    assert server.verify(auth2, "INVITE", {"u": "pw"}.get).ok


def test_forged_or_foreign_nonce() -> None:
    clock = FakeClock()
    ours = DigestServer("r", SECRET, clock=clock)
    theirs = DigestServer("r", b"another-secret-of-16+bytes", clock=clock)
    creds = DigestCredentials("u", "pw")
    auth = DigestClient().authorization(theirs.challenges()[0], "INVITE", "sip:a@b", creds)
    assert ours.verify(auth, "INVITE", {"u": "pw"}.get).reason == "unknown nonce"
    stamp, _, mac = parse_digest_params(ours.challenges()[0])["nonce"].partition(".")
    forged = f'Digest realm="r", nonce="{int(stamp, 16) + 999999:x}.{mac}"'
    forged_auth = DigestClient().authorization(forged, "INVITE", "sip:a@b", creds)
    assert ours.verify(forged_auth, "INVITE", {"u": "pw"}.get).reason == "unknown nonce"


def test_server_rejects_disallowed_algorithm_and_realm() -> None:
    clock = FakeClock()
    server = DigestServer("r", SECRET, algorithms=[DigestAlgorithm.SHA256], clock=clock)
    nonce = parse_digest_params(server.challenges()[0])["nonce"]
    creds = DigestCredentials("u", "pw")
    md5 = DigestClient().authorization(
        f'Digest realm="r", nonce="{nonce}", algorithm=MD5, qop="auth"', "INVITE", "sip:a@b", creds
    )
    assert server.verify(md5, "INVITE", {"u": "pw"}.get).reason == "algorithm MD5 not allowed"
    other_realm = DigestClient().authorization(
        f'Digest realm="x", nonce="{nonce}", algorithm=SHA-256', "INVITE", "sip:a@b", creds
    )
    assert server.verify(other_realm, "INVITE", {"u": "pw"}.get).reason == "wrong realm"


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
    assert server.verify(auth, "BYE", {"u": "pw"}.get).ok


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
        assert server.verify(junk, "INVITE", {"u": "pw"}.get).status is DigestStatus.FAILED


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
    assert server.verify(auth, "INVITE", {creds.username: "pw"}.get).ok


def test_server_config_errors() -> None:
    with pytest.raises(ValueError):
        DigestServer("r", b"short")
    with pytest.raises(ValueError):
        DigestServer("r", SECRET, algorithms=[])
