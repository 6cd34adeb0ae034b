"""TrunkAdmission (app.py): the trunk ACL, digest authentication and the auth guard wired
together, on fake clocks (the guard's moves in milliseconds), with the real Metrics."""

from __future__ import annotations

from mediasrv.app import AuthMetrics, TrunkAdmission
from mediasrv.config import AuthGuardConfig, BlockedPolicy, DigestAlgorithm, TrunkConfig
from mediasrv.outputs.metrics import Metrics
from mediasrv.sip.dialog import Peer
from mediasrv.sip.digest import DigestClient, DigestCredentials, parse_digest_params
from mediasrv.sip.message import Headers, Request
from mediasrv.sip.ua import Admission, Verdict

RURI = "sip:0312345678@192.0.2.10:5060"
RIGHT = DigestCredentials("carrier1", "s3cret")


class MsClock:
    def __init__(self) -> None:
        self.ms = 5_000_000

    def __call__(self) -> float:
        return self.ms / 1000


def trunk(algorithm: DigestAlgorithm = DigestAlgorithm.SHA256) -> TrunkConfig:
    return TrunkConfig(
        name="carrier",
        addresses=("192.0.2.0/24",),
        inbound_auth=True,
        username="carrier1",
        password="s3cret",
        realm="mediasrv",
        algorithm=algorithm,
    )


def admission(
    metrics: Metrics | None = None,
    algorithm: DigestAlgorithm = DigestAlgorithm.SHA256,
    **guard: object,
) -> tuple[TrunkAdmission, MsClock]:
    clock = MsClock()
    cfg = AuthGuardConfig(**guard)  # type: ignore[arg-type]
    adm = TrunkAdmission(
        (trunk(algorithm),),
        b"0123456789abcdef-admission-secret",
        cfg,
        clock=clock,
        metrics=AuthMetrics(metrics) if metrics is not None else None,
    )
    return adm, clock


def invite(authorization: str | None = None, uri: str = RURI) -> Request:
    headers = Headers([("Via", "SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKx"), ("CSeq", "1 INVITE")])
    if authorization is not None:
        headers.add("Authorization", authorization)
    return Request("INVITE", uri, headers, b"")


def peer(host: str = "192.0.2.5") -> Peer:
    return Peer("UDP", host, 5060)


def challenge_of(verdict: Admission) -> str:
    assert verdict.code == 401, verdict
    [(name, value)] = verdict.headers
    assert name == "WWW-Authenticate"
    return value


def attempt(adm: TrunkAdmission, creds: DigestCredentials, host: str = "192.0.2.5") -> Admission:
    first = adm(invite(), peer(host))
    if first.code != 401:
        return first
    auth = DigestClient().authorization(challenge_of(first), "INVITE", RURI, creds)
    return adm(invite(auth), peer(host))


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value if value is not None else 0.0


def test_right_password_admitted_wrong_refused() -> None:
    adm, _ = admission()
    assert attempt(adm, RIGHT).verdict is Verdict.ACCEPT
    assert attempt(adm, RIGHT).trunk == "carrier"
    assert attempt(adm, DigestCredentials("carrier1", "nope")).code == 403


def test_sha256_trunk_offers_only_sha256() -> None:
    adm, _ = admission()
    verdict = adm(invite(), peer())
    assert [parse_digest_params(v)["algorithm"] for _, v in verdict.headers] == ["SHA-256"]
    md5_adm, _ = admission(algorithm=DigestAlgorithm.MD5)
    verdict = md5_adm(invite(), peer())
    assert [parse_digest_params(v)["algorithm"] for _, v in verdict.headers] == ["MD5"]


def test_uri_mismatch_is_400() -> None:
    adm, _ = admission()
    challenge = challenge_of(adm(invite(), peer()))
    auth = DigestClient().authorization(challenge, "INVITE", RURI, RIGHT)
    other = adm(invite(auth, "sip:0398765432@192.0.2.10:5060"), peer())
    assert other.code == 400


def test_brute_force_blocks_the_source_and_refuses_the_right_password() -> None:
    metrics = Metrics()
    adm, clock = admission(metrics, max_failures=5, backoff=0.0, base_block=60.0)
    early = challenge_of(adm(invite(), peer()))  # a nonce obtained before the block
    codes = [attempt(adm, DigestCredentials("carrier1", f"g{i}")).code for i in range(200)]
    assert codes[:5] == [403] * 5 and codes.count(403) == 200
    assert sample(metrics, "mediasrv_sip_auth_attempts_total", result="failed") == 5
    assert sample(metrics, "mediasrv_sip_auth_attempts_total", result="blocked") == 195
    assert sample(metrics, "mediasrv_sip_auth_blocks_total", scope="source") == 1
    right = DigestClient().authorization(early, "INVITE", RURI, RIGHT)
    assert adm(invite(right), peer()).code == 403  # unchecked while blocked
    assert attempt(adm, RIGHT, "192.0.2.6").verdict is Verdict.ACCEPT  # another source
    clock.ms += 60_000
    assert attempt(adm, RIGHT).verdict is Verdict.ACCEPT  # the block has ended


def test_drop_policy_answers_nothing_while_blocked() -> None:
    adm, _ = admission(max_failures=2, backoff=0.0, blocked_policy=BlockedPolicy.DROP)
    attempt(adm, DigestCredentials("carrier1", "a"))
    attempt(adm, DigestCredentials("carrier1", "b"))
    assert adm(invite(), peer()).verdict is Verdict.DROP
    assert adm(invite(), peer("192.0.2.6")).code == 401


def test_username_block_refuses_the_account_from_every_source() -> None:
    metrics = Metrics()
    adm, _ = admission(metrics, max_failures=5, max_user_failures=6, backoff=0.0)
    for host in ("192.0.2.21", "192.0.2.22", "192.0.2.23"):
        for _ in range(2):
            assert attempt(adm, DigestCredentials("carrier1", "x"), host).code == 403
    assert sample(metrics, "mediasrv_sip_auth_blocks_total", scope="user") == 1
    assert attempt(adm, RIGHT, "192.0.2.30").code == 403
    # guesses for a name that is no account are counted per source only
    for _ in range(3):
        attempt(adm, DigestCredentials("nobody", "x"), "192.0.2.40")
    assert sample(metrics, "mediasrv_sip_auth_blocks_total", scope="user") == 1


def test_backoff_refuses_between_guesses() -> None:
    adm, clock = admission(max_failures=5, backoff=0.25)
    assert attempt(adm, DigestCredentials("carrier1", "x")).code == 403
    assert adm(invite(), peer()).code == 403  # no challenge during the back-off
    clock.ms += 250
    assert adm(invite(), peer()).code == 401


def test_disabled_guard_still_bounds_nonces() -> None:
    adm, _ = admission(enabled=False, nonce_max_failures=2)
    assert adm.guard is None
    challenge = challenge_of(adm(invite(), peer()))
    client = DigestClient()
    for pw in ("a", "b"):
        auth = client.authorization(challenge, "INVITE", RURI, DigestCredentials("carrier1", pw))
        assert adm(invite(auth), peer()).code == 403
    auth = client.authorization(challenge, "INVITE", RURI, RIGHT)
    assert adm(invite(auth), peer()).code == 403  # spent
    assert attempt(adm, RIGHT).verdict is Verdict.ACCEPT


def test_replayed_header_is_rechallenged_stale() -> None:
    metrics = Metrics()
    adm, _ = admission(metrics)
    challenge = challenge_of(adm(invite(), peer()))
    auth = DigestClient().authorization(challenge, "INVITE", RURI, RIGHT)
    assert adm(invite(auth), peer()).verdict is Verdict.ACCEPT
    replay = adm(invite(auth), peer())
    assert parse_digest_params(challenge_of(replay))["stale"] == "true"
    assert sample(metrics, "mediasrv_sip_auth_attempts_total", result="stale") == 1
    # a stale answer is no failure
    assert sample(metrics, "mediasrv_sip_auth_attempts_total", result="failed") == 0


def test_source_outside_every_trunk_is_403_before_any_digest() -> None:
    metrics = Metrics()
    adm, _ = admission(metrics)
    assert adm(invite(), peer("203.0.113.9")).code == 403
    assert sample(metrics, "mediasrv_sip_auth_attempts_total", result="challenged") == 0
