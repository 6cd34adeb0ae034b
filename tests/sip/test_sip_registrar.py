"""The operators' registrar (RFC 3261 §10.3) through a real UserAgent on a fake clock: wire
bytes in, responses out; digest with MD5 and SHA-256, expiry, several contacts, ``*``,
queries, CSeq ordering, malformed REGISTERs, and the auth guard."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sip_fakeclock import FakeClock

from mediasrv.sip.auth_guard import AuthGuard, GuardPolicy
from mediasrv.sip.dialog import LocalContact, Peer
from mediasrv.sip.digest import (
    DigestAlgorithm,
    DigestClient,
    DigestCredentials,
    DigestServer,
    stored_ha1,
)
from mediasrv.sip.message import Response
from mediasrv.sip.parser import parse_message
from mediasrv.sip.registrar import (
    MemoryBindingStore,
    Registrar,
    RegistrarPolicy,
    RegistrarUser,
)
from mediasrv.sip.transaction import TimerConfig
from mediasrv.sip.ua import UserAgent

DATA = Path(__file__).parent.parent / "data" / "sip" / "register"
PHONE = Peer("UDP", "127.0.0.1", 5072)
REALM = "mediasrv"
_branches = itertools.count(1)


class Harness:
    def __init__(
        self,
        algorithms: tuple[DigestAlgorithm, ...] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5),
        users: tuple[RegistrarUser, ...] = (
            RegistrarUser("alice", "wonderland"),
            RegistrarUser("bob", "builder"),
        ),
        policy: RegistrarPolicy | None = None,
        guard: bool = False,
    ) -> None:
        self.clock = FakeClock()
        self.wall = 1_800_000_000.0
        self.sent: list[Response] = []
        digest = DigestServer(REALM, b"k" * 32, algorithms, clock=lambda: self.wall)
        self.guard = (
            AuthGuard(GuardPolicy(max_failures=3, backoff=0), self.clock.time) if guard else None
        )
        self.store = MemoryBindingStore()
        self.registrar = Registrar(
            digest,
            users,
            self.store,
            policy or RegistrarPolicy(min_expires=60),
            self.guard,
            clock=lambda: self.wall,
        )
        self.ua = UserAgent(
            self.clock,
            lambda data, peer: self.sent.append(_response(data)),
            LocalContact("127.0.0.1", 5060),
            lambda leg, trunk: None,
            cfg=TimerConfig(),
            registrar=self.registrar,
        )
        self.client = DigestClient()
        self.cseq = 0

    def raw(self, data: bytes, peer: Peer = PHONE) -> Response:
        self.ua.receive(data, peer)
        assert self.sent, "no response"
        return self.sent.pop()

    def register(
        self,
        user: str = "alice",
        contacts: tuple[str, ...] = ("<sip:alice@127.0.0.1:5072>",),
        expires: int | None = None,
        password: str | None = None,
        call_id: str = "reg-1@phone",
        auth_user: str | None = None,
        cseq: int | None = None,
        peer: Peer = PHONE,
    ) -> Response:
        """REGISTER, answer the 401 with digest, return the final response."""
        first = self.raw(self._request(user, contacts, expires, call_id, None, cseq), peer)
        if first.status != 401:
            return first
        challenge = first.headers.get_all("WWW-Authenticate")[0]
        name = auth_user or user
        creds = DigestCredentials(name, password or _PASSWORDS.get(name, "x"))
        authorization = self.client.authorization(challenge, "REGISTER", "sip:127.0.0.1", creds)
        return self.raw(self._request(user, contacts, expires, call_id, authorization, cseq), peer)

    def _request(
        self,
        user: str,
        contacts: tuple[str, ...],
        expires: int | None,
        call_id: str,
        authorization: str | None,
        cseq: int | None,
    ) -> bytes:
        self.cseq += 1
        lines = [
            "REGISTER sip:127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKreg{next(_branches)}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@127.0.0.1>;tag=ph1",
            f"To: <sip:{user}@127.0.0.1>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq if cseq is not None else self.cseq} REGISTER",
        ]
        lines += [f"Contact: {c}" for c in contacts]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()


_PASSWORDS = {"alice": "wonderland", "bob": "builder"}


def _response(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


def _contacts(response: Response) -> dict[str, int]:
    out = {}
    for value in response.headers.get_all("Contact"):
        uri, _, params = value.partition(">;")
        out[uri.lstrip("<")] = int(params.removeprefix("expires="))
    return out


def test_register_with_sha256_digest_binds_the_contact() -> None:
    h = Harness()
    first = h.raw(h._request("alice", ("<sip:alice@127.0.0.1:5072>",), 600, "c1", None, 1))
    assert first.status == 401
    offered = first.headers.get_all("WWW-Authenticate")
    assert "algorithm=SHA-256" in offered[0] and "algorithm=MD5" in offered[1]  # RFC 8760 §2.4
    ok = h.register(expires=600)
    assert ok.status == 200
    assert _contacts(ok) == {"sip:alice@127.0.0.1:5072": 600}
    assert ok.headers.get("Date")
    [contact] = h.registrar.contacts_for("alice")
    assert contact.uri == "sip:alice@127.0.0.1:5072"
    assert contact.source == "UDP 127.0.0.1:5072"
    assert h.registrar.contacts_for("sip:alice@127.0.0.1") == [contact]


@pytest.mark.parametrize("algorithm", [DigestAlgorithm.MD5, DigestAlgorithm.SHA256])
def test_a_registrar_with_a_stored_ha1(algorithm: DigestAlgorithm) -> None:
    ha1 = stored_ha1(algorithm, "carol", REALM, "secret")
    h = Harness(
        algorithms=(algorithm,),
        users=(RegistrarUser("carol", None, {algorithm: ha1.upper()}),),
    )
    assert h.register("carol", ("<sip:carol@127.0.0.1:5072>",), password="secret").status == 200
    assert h.register("carol", ("<sip:carol@127.0.0.1:5072>",), password="wrong").status == 403


def test_wrong_password_and_unknown_user_get_the_same_403() -> None:
    h = Harness()
    wrong = h.register(password="nope")
    unknown = h.register("mallory", ("<sip:m@127.0.0.1>",))
    assert (wrong.status, wrong.reason) == (403, "Forbidden (bad credentials)")
    assert (unknown.status, unknown.reason) == (403, "Forbidden (bad credentials)")
    assert h.registrar.contacts_for("alice") == []


def test_a_user_cannot_register_anothers_address() -> None:
    h = Harness()
    response = h.register("alice", auth_user="bob")
    assert response.status == 403 and "address of record" in (response.reason or "")


def test_refresh_keeps_one_binding_and_new_expiry() -> None:
    h = Harness()
    assert h.register(expires=600).status == 200
    h.wall += 300
    again = h.register(expires=900)
    assert _contacts(again) == {"sip:alice@127.0.0.1:5072": 900}
    assert len(h.registrar.contacts_for("alice")) == 1


def test_contacts_expire_by_the_clock() -> None:
    h = Harness()
    h.register(expires=120)
    h.wall += 119
    assert h.registrar.contacts_for("alice")
    h.wall += 2
    assert h.registrar.contacts_for("alice") == []
    assert h.registrar.registered() == []


def test_several_contacts_per_aor_with_their_own_expiry_and_q() -> None:
    h = Harness()
    response = h.register(
        contacts=(
            "<sip:alice@10.0.0.5:5060>;expires=300;q=0.5",
            '"desk" <sip:alice@10.0.0.6:5060>',
        ),
        expires=1200,
    )
    assert _contacts(response) == {"sip:alice@10.0.0.5:5060": 300, "sip:alice@10.0.0.6:5060": 1200}
    second = h.register(contacts=("<sip:alice@10.0.0.7:5060>",), expires=600, call_id="other")
    assert len(_contacts(second)) == 3  # another phone adds its own
    best = h.registrar.contacts_for("alice")
    assert [c.uri for c in best][-1] == "sip:alice@10.0.0.5:5060"  # q=0.5 last


def test_expires_zero_removes_one_contact() -> None:
    h = Harness()
    h.register(contacts=("<sip:alice@10.0.0.5>", "<sip:alice@10.0.0.6>"), expires=600)
    response = h.register(contacts=("<sip:alice@10.0.0.5>;expires=0",))
    assert _contacts(response) == {"sip:alice@10.0.0.6": 600}


def test_contact_uris_compare_as_sip_uris() -> None:
    """§10.3 step 7 / §19.1.4: SIP:ALICE@10.0.0.5 host case differs, same contact."""
    h = Harness()
    h.register(contacts=("<sip:alice@10.0.0.5;transport=udp>",), expires=600)
    h.register(contacts=("<sip:alice@10.0.0.5;transport=UDP>",), expires=700)
    assert len(h.registrar.contacts_for("alice")) == 1


def test_star_with_expires_zero_removes_every_binding() -> None:
    h = Harness()
    h.register(contacts=("<sip:alice@10.0.0.5>", "<sip:alice@10.0.0.6>"), expires=600)
    response = h.register(contacts=("*",), expires=0)
    assert response.status == 200 and response.headers.get_all("Contact") == []
    assert h.registrar.contacts_for("alice") == []


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(("*",), 60), (("*",), None), (("*", "<sip:alice@10.0.0.5>"), 0)],
)
def test_star_needs_expires_zero_and_to_be_alone(
    contacts: tuple[str, ...], expires: int | None
) -> None:
    h = Harness()
    assert h.register(contacts=contacts, expires=expires).status == 400


def test_query_without_contact_lists_the_bindings() -> None:
    h = Harness()
    h.register(expires=600)
    h.wall += 100
    query = h.register(contacts=())
    assert query.status == 200 and _contacts(query) == {"sip:alice@127.0.0.1:5072": 500}
    assert len(h.registrar.contacts_for("alice")) == 1


def test_too_brief_gets_423_with_min_expires() -> None:
    h = Harness()
    response = h.register(expires=30)
    assert response.status == 423 and response.headers.get("Min-Expires") == "60"
    assert h.registrar.contacts_for("alice") == []


def test_long_expiry_is_cut_to_the_maximum() -> None:
    h = Harness(policy=RegistrarPolicy(min_expires=60, max_expires=3600))
    assert _contacts(h.register(expires=99_999_999_999)) == {"sip:alice@127.0.0.1:5072": 3600}


def test_leading_zeros_and_huge_values_are_delta_seconds() -> None:
    """§25.1 delta-seconds: 0000600 is 600 (not cut to 0, which would unregister)."""
    h = Harness(policy=RegistrarPolicy(min_expires=60, max_expires=3600))
    contact = "<sip:alice@10.0.0.5>;expires=" + "0" * 15 + "600"
    assert _contacts(h.register(contacts=(contact,))) == {"sip:alice@10.0.0.5": 600}
    huge = "<sip:alice@10.0.0.5>;expires=" + "9" * 40
    assert _contacts(h.register(contacts=(huge,))) == {"sip:alice@10.0.0.5": 3600}


def test_default_expiry_applies_when_none_is_named() -> None:
    h = Harness(policy=RegistrarPolicy(default_expires=1800))
    assert _contacts(h.register()) == {"sip:alice@127.0.0.1:5072": 1800}


def test_an_old_cseq_of_the_same_call_id_is_refused() -> None:
    """§10.3 step 7: a REGISTER reordered behind a newer one must not undo it."""
    h = Harness()
    assert h.register(expires=600, cseq=10).status == 200
    stale = h.register(contacts=("<sip:alice@127.0.0.1:5072>;expires=0",), cseq=9)
    assert stale.status == 500
    assert len(h.registrar.contacts_for("alice")) == 1


def test_too_many_contacts_are_refused() -> None:
    h = Harness(policy=RegistrarPolicy(max_contacts=2))
    contacts = tuple(f"<sip:alice@10.0.0.{i}>" for i in range(3))
    assert h.register(contacts=contacts, expires=600).status == 403
    assert h.registrar.contacts_for("alice") == []


def test_a_foreign_domain_gets_404() -> None:
    h = Harness(policy=RegistrarPolicy(domain="pbx.example"))
    assert h.register().status == 404


def test_sources_outside_the_networks_are_refused() -> None:
    import ipaddress

    policy = RegistrarPolicy(networks=(ipaddress.ip_network("10.0.0.0/8"),))
    h = Harness(policy=policy)
    assert h.register().status == 403
    assert h.register(peer=Peer("UDP", "10.1.2.3", 5060)).status == 200


def test_the_auth_guard_blocks_a_guessing_source_and_then_the_right_password() -> None:
    h = Harness(guard=True)
    for _ in range(3):
        assert h.register(password="guess").status == 403
    assert h.register().status == 403  # blocked: even the right password
    assert h.registrar.contacts_for("alice") == []


def test_allow_names_register_when_the_registrar_is_on() -> None:
    h = Harness()
    options = (
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKo1\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert "REGISTER" in (h.raw(options).headers.get("Allow") or "")


def test_without_a_registrar_register_still_gets_405() -> None:
    sent: list[Response] = []
    ua = UserAgent(
        FakeClock(),
        lambda data, peer: sent.append(_response(data)),
        LocalContact("127.0.0.1", 5060),
        lambda leg, trunk: None,
    )
    ua.receive(Harness()._request("alice", (), None, "x", None, 1), PHONE)
    assert sent[-1].status == 405 and "REGISTER" not in (sent[-1].headers.get("Allow") or "")


def test_a_retransmitted_register_gets_the_same_answer_once_processed() -> None:
    h = Harness()
    data = h._request("alice", ("<sip:alice@127.0.0.1:5072>",), 600, "c9", None, 1)
    first = h.raw(data)
    h.ua.receive(data, PHONE)  # the same branch: absorbed by the server transaction
    assert h.sent.pop().status == first.status == 401


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.sip")))
def test_malformed_registers_get_400_and_change_nothing(name: str) -> None:
    """Hand-built wire fixtures (tests/data/sip/register/). Those with an ``{AUTH}`` line are
    sent with valid credentials (authentication comes first, RFC 3261 §10.3 step 3), so
    what is refused is the request itself: 400 each time, never a crash, and the existing
    binding survives."""
    h = Harness()
    h.register(expires=600)  # a binding that must survive every bad request
    template = (DATA / name).read_bytes().decode()
    text = template.replace("{BRANCH}", f"m{next(_branches)}")
    if "{AUTH}" in text:
        first = h.raw(text.replace("{AUTH}\r\n", "").encode())
        assert first.status == 401, name
        challenge = first.headers.get_all("WWW-Authenticate")[0]
        creds = DigestCredentials("alice", "wonderland")
        auth = h.client.authorization(challenge, "REGISTER", "sip:127.0.0.1", creds)
        text = template.replace("{BRANCH}", f"m{next(_branches)}")
        text = text.replace("{AUTH}", f"Authorization: {auth}")
    answer = h.raw(text.encode())
    assert answer.status == 400, (name, answer.status, answer.reason)
    assert [c.uri for c in h.registrar.contacts_for("alice")] == ["sip:alice@127.0.0.1:5072"]
