"""Standard Webhooks signing, ids, schedule and target checks, verified with the
``standardwebhooks`` library integrators use (not with our own code)."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from mediasrv.outputs.webhooks import (
    JITTER,
    RETRY_SCHEDULE,
    TargetRefused,
    check_url,
    new_message_id,
    new_secret,
    next_delay,
    parse_retry_after,
    refused_address,
    secret_key,
    sign,
    signature_header,
)

NOW = 1_767_000_000


def _headers(msg_id: str, ts: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_the_reference_library_verifies_our_signature() -> None:
    secret = new_secret()
    body = '{"type":"call.answered","data":{"caller":"+81312345678","名前":"山田"}}'.encode()
    msg_id = new_message_id()
    ts = int(time.time())
    payload = Webhook(secret).verify(body, _headers(msg_id, ts, sign(secret, msg_id, ts, body)))
    assert payload["data"]["名前"] == "山田"


def test_a_tampered_body_or_another_secret_fails_verification() -> None:
    secret = new_secret()
    msg_id, ts = new_message_id(), int(time.time())
    body = b'{"a":1}'
    headers = _headers(msg_id, ts, sign(secret, msg_id, ts, body))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    old, new = new_secret(), new_secret()
    msg_id, ts = new_message_id(), int(time.time())
    body = b'{"type":"call.completed"}'
    header = signature_header([new, old], msg_id, ts, body)
    assert len(header.split(" ")) == 2 and all(s.startswith("v1,") for s in header.split(" "))
    for secret in (old, new):
        Webhook(secret).verify(body, _headers(msg_id, ts, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, _headers(msg_id, ts, header))


def test_known_answer_of_the_hmac() -> None:
    # The example of the spec's reference libraries: key "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    # id msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330, body {"test": 2432232314}.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    got = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_ids_are_unique_and_have_no_full_stop() -> None:
    ids = {new_message_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(i.startswith("msg_") and "." not in i for i in ids)
    with pytest.raises(ValueError, match="must not contain"):
        sign(new_secret(), "msg_a.b", NOW, b"{}")


@pytest.mark.parametrize(
    "bad", ["", "whsec_", "whsec_!!!notbase64", "secret", "whsec_" + "QUFB" * 2]
)
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        secret_key(bad)


def test_the_schedule_is_the_specs_with_bounded_jitter() -> None:
    rng = random.Random(7)
    total = 0.0
    for failed, base in enumerate(RETRY_SCHEDULE, start=1):
        for _ in range(50):
            delay = next_delay(failed, rng=rng)
            assert delay is not None
            assert base * (1 - JITTER) <= delay <= base * (1 + JITTER)
        total += base
    assert next_delay(len(RETRY_SCHEDULE) + 1) is None
    assert next_delay(0) is None
    assert 3 * 86400 < total < 3.5 * 86400  # "about three days"


def test_retry_after_only_ever_delays() -> None:
    assert next_delay(1, retry_after=600.0) == 600.0  # longer than 5 s: honoured
    first = next_delay(3, retry_after=1.0)
    assert first is not None and first > 1000  # shorter than 30 min: the schedule wins
    assert next_delay(1, retry_after=10 * 86400.0) == 86400.0  # capped at a day


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(formatdate(NOW + 90, usegmt=True), NOW) == pytest.approx(90.0)
    assert parse_retry_after(formatdate(NOW - 90, usegmt=True), NOW) == 0.0
    for bad in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(bad, NOW) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "private"),
        ("224.0.0.1", "multicast"),
        ("fc00::5", "private"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("example", "not an IP address"),
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str | None) -> None:
    assert refused_address(address) == reason


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "http:///nohost", "https://user:pw@example.com/", "x"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_url(url)
