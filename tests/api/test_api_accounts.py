"""Console accounts (issue 13 §5): scrypt hashes, the account store, session tokens, the
failed-login throttle, ``mediasrv user ...``, and the login / session / logout operations
with their CSRF defences (no cookie: header tokens, JSON bodies, the login's Origin check)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from apiserver import NUMBERS, USER_PASSWORD, ApiServerThread, Running

from mediasrv.api.accounts import (
    SESSION_TOKEN_PREFIX,
    AccountStore,
    LoginThrottle,
    hash_password,
    verify_password,
)
from mediasrv.api.auth import Scope
from mediasrv.cli import main as cli_main


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the KDF


def test_scrypt_hash_verifies_only_its_password_and_is_salted() -> None:
    one, two = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert one.startswith("scrypt$16384$8$1$") and one != two  # a new salt each time
    assert verify_password("s3cret-pass", one) and verify_password("s3cret-pass", two)
    assert not verify_password("s3cret-pasS", one)
    assert "s3cret" not in one


@pytest.mark.parametrize("stored", ["", "scrypt$1$2$3", "bcrypt$x$y$z$a$b", "scrypt$x$8$1$AA$AA",
                                    "scrypt$16384$8$1$!!$AA", "scrypt$3$8$1$AAAA$AAAA"])
def test_a_malformed_hash_never_matches_and_never_raises(stored: str) -> None:
    assert verify_password("anything", stored) is False


def test_the_hash_keeps_its_cost_parameters() -> None:
    cheap = hash_password("pw-pw-pw-pw", n=2**10)
    assert cheap.startswith("scrypt$1024$") and verify_password("pw-pw-pw-pw", cheap)


# ---------------------------------------------------------------- the store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[AccountStore, Clock]]:
    clock = Clock()
    s = AccountStore(tmp_path / "db.sqlite", clock)
    asyncio.run(s.open())
    yield s, clock
    asyncio.run(s.close())


def test_users_sessions_expiry_and_revocation(store: tuple[AccountStore, Clock], tmp_path: Path) -> None:
    s, clock = store

    async def scenario() -> None:
        hashed = hash_password("pw-for-alice")
        await s.add_user("alice", hashed, "alpha", False)
        await s.add_user("root", hashed, None, True)
        with pytest.raises(ValueError, match="exists"):
            await s.add_user("alice", hashed, "alpha", False)
        with pytest.raises(ValueError, match="either an admin"):
            await s.add_user("both", hashed, "alpha", True)
        with pytest.raises(ValueError, match="lower-case"):
            await s.add_user("Bad Name", hashed, "alpha", False)
        assert [u.name for u in await s.users()] == ["alice", "root"]

        assert await s.verify("alice", "wrong-password") is None
        assert await s.verify("nobody", "pw-for-alice") is None
        alice = await s.verify("alice", "pw-for-alice")
        assert alice is not None and alice.business == "alpha"

        _, token = await s.create_session(alice, ttl=60.0)
        assert token.startswith(SESSION_TOKEN_PREFIX) and len(token) == len(SESSION_TOKEN_PREFIX) + 43
        who = await s.authenticate(token)
        assert who is not None and who.business == "alpha" and who.scopes == {Scope.BUSINESS}
        assert who.sees("alpha") and not who.sees("bravo") and not who.is_admin
        assert await s.authenticate(token + "x") is None
        assert await s.authenticate("msrvb_" + token[6:]) is None

        clock.now += 61.0  # expired
        assert await s.authenticate(token) is None

        _, token = await s.create_session(alice, ttl=60.0)
        assert await s.revoke_session(token) and await s.authenticate(token) is None  # logout
        assert not await s.revoke_session(token)

        _, token = await s.create_session(alice, ttl=60.0)
        assert await s.set_password("alice", hash_password("a-new-password"))
        assert await s.authenticate(token) is None  # a new password ends the sessions
        assert await s.verify("alice", "pw-for-alice") is None
        assert await s.verify("alice", "a-new-password") is not None

        root = await s.verify("root", "pw-for-alice")
        assert root is not None
        _, admin_token = await s.create_session(root, ttl=60.0)
        admin = await s.authenticate(admin_token)
        assert admin is not None and admin.is_admin and admin.sees("bravo")
        assert await s.remove_user("root") and await s.authenticate(admin_token) is None
        assert not await s.remove_user("root")

    asyncio.run(scenario())
    # only hashes are stored: neither a password nor a session token is in the file
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        dump = "\n".join(db.iterdump())
    assert "pw-for-alice" not in dump and "a-new-password" not in dump
    assert SESSION_TOKEN_PREFIX not in dump


def test_throttle_counts_failures_per_key_in_a_sliding_window() -> None:
    clock = Clock()
    th = LoginThrottle(max_failures=3, window=60.0, clock=clock)
    keys = ("user:alice", "addr:10.0.0.1")
    for _ in range(2):
        th.failed(keys)
    assert th.retry_after(keys) == 0.0
    clock.now += 10
    th.failed(keys)
    assert th.retry_after(keys) == pytest.approx(50.0)  # the first failure leaves the window
    assert th.retry_after(("user:alice", "addr:10.0.0.2")) > 0  # the user is locked anywhere
    assert th.retry_after(("user:bob", "addr:10.0.0.1")) > 0  # the address for any user
    assert th.retry_after(("user:bob", "addr:10.0.0.2")) == 0.0
    clock.now += 50.0
    assert th.retry_after(keys) == 0.0  # slid past the first one
    th.succeeded("user:alice")
    assert th.retry_after(("user:alice", "addr:10.0.0.9")) == 0.0


def test_throttle_memory_is_bounded() -> None:
    th = LoginThrottle(max_failures=2, window=60.0, clock=Clock(), max_keys=100)
    for i in range(1000):
        th.failed((f"addr:{i}",))
    assert len(th._failures) == 100


# ---------------------------------------------------------------- the CLI


def _cli(monkeypatch: pytest.MonkeyPatch, data_dir: Path, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli_main(["user", *args, "--data-dir", str(data_dir)])


def test_user_cli_add_list_passwd_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "var"
    biz = tmp_path / "alpha.toml"
    biz.write_text('[business]\nslug = "alpha"\n', encoding="utf-8")
    assert cli_main(["business", "apply", str(biz), "--data-dir", str(data)]) == 0
    capsys.readouterr()

    assert _cli(monkeypatch, data, "add", "alice", "--business", "alpha", "--password-stdin",
                stdin="pw-of-alice\n") == 0
    assert _cli(monkeypatch, data, "add", "root", "--admin", "--password-stdin",
                stdin="pw-of-root!\n") == 0
    capsys.readouterr()
    assert _cli(monkeypatch, data, "list") == 0
    assert capsys.readouterr().out.splitlines() == ["alice  business alpha", "root  admin"]

    # refused, each with one line and exit 2 (1 for a user that is not there)
    assert _cli(monkeypatch, data, "add", "bob", "--business", "nope", "--password-stdin",
                stdin="pw-of-bob-1\n") == 2
    assert "no business 'nope' (businesses: alpha)" in capsys.readouterr().err
    assert _cli(monkeypatch, data, "add", "bob", "--business", "alpha", "--password-stdin",
                stdin="short\n") == 2
    assert "at least 8 characters" in capsys.readouterr().err
    assert _cli(monkeypatch, data, "add", "alice", "--business", "alpha", "--password-stdin",
                stdin="pw-of-alice\n") == 2
    assert "exists" in capsys.readouterr().err
    assert _cli(monkeypatch, data, "passwd", "nobody", "--password-stdin", stdin="whatever-1\n") == 1
    assert _cli(monkeypatch, data, "remove", "nobody") == 1

    async def check(name: str, password: str) -> bool:
        s = AccountStore(data / "mediasrv.db")
        await s.open()
        try:
            return await s.verify(name, password) is not None
        finally:
            await s.close()

    assert asyncio.run(check("alice", "pw-of-alice"))
    assert _cli(monkeypatch, data, "passwd", "alice", "--password-stdin", stdin="new-pw-alice\n") == 0
    assert not asyncio.run(check("alice", "pw-of-alice"))
    assert asyncio.run(check("alice", "new-pw-alice"))
    assert _cli(monkeypatch, data, "remove", "alice") == 0
    assert not asyncio.run(check("alice", "new-pw-alice"))
    capsys.readouterr()
    assert _cli(monkeypatch, data, "list") == 0
    assert capsys.readouterr().out.splitlines() == ["root  admin"]


def test_user_cli_asks_twice_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from mediasrv.api.user_cli import UserCliError, read_password

    answers = iter(["first-pass", "other-pass"])
    with pytest.raises(UserCliError, match="differ"):
        read_password(False, ask=lambda prompt: next(answers))
    assert read_password(False, ask=lambda prompt: "same-pass!") == "same-pass!"


# ---------------------------------------------------------------- over HTTP


def _login(api: Running, user: str, password: str, **headers: str) -> requests.Response:
    return requests.post(f"{api.base}/api/v1/login", json={"user": user, "password": password},
                         headers=headers, timeout=10)


def test_login_gives_a_session_token_used_like_an_api_token(api: Running) -> None:
    resp = _login(api, "alpha-user", USER_PASSWORD)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["business"] == "alpha" and body["user"] == "alpha-user" and not body["admin"]
    token = body["token"]
    assert token.startswith(SESSION_TOKEN_PREFIX) and token not in resp.url
    auth = {"Authorization": f"Bearer {token}"}
    b = f"{api.base}/api/v1/businesses"
    assert [x["slug"] for x in requests.get(b, headers=auth, timeout=10).json()["items"]] == ["alpha"]
    assert requests.get(f"{b}/alpha/config", headers=auth, timeout=10).status_code == 200
    assert requests.get(f"{b}/bravo/config", headers=auth, timeout=10).status_code == 404
    assert requests.get(f"{api.base}/api/v1/tokens", headers=auth, timeout=10).status_code == 403
    who = requests.get(f"{api.base}/api/v1/session", headers=auth, timeout=10).json()
    assert who["user"] == "alpha-user" and who["business"] == "alpha" and who["expires_at"] > 0
    # only its sha256 is stored
    with sqlite3.connect(api.root / "var" / "mediasrv.db") as db:
        digests = {r[0] for r in db.execute("SELECT digest FROM api_sessions")}
    assert hashlib.sha256(token.encode()).hexdigest() in digests
    # logout revokes it at once
    assert requests.delete(f"{api.base}/api/v1/session", headers=auth, timeout=10).status_code == 204
    gone = requests.get(f"{b}/alpha/config", headers=auth, timeout=10)
    assert gone.status_code == 401 and "invalid_token" in gone.headers["WWW-Authenticate"]
    # an API token is not a session: logging it "out" is refused, and it still works
    assert requests.delete(f"{api.base}/api/v1/session", headers=api.auth("alpha"),
                           timeout=10).status_code == 422
    assert requests.get(f"{b}/alpha", headers=api.auth("alpha"), timeout=10).status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(api: Running) -> None:
    wrong = _login(api, "bravo-user", "not the password")
    unknown = _login(api, "nobody-here", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert "token" not in wrong.json()
    assert _login(api, "bravo-user", USER_PASSWORD).status_code == 200  # 2 failures: not locked


def test_cross_site_requests_cannot_act(api: Running) -> None:
    """What a forged form on another site can send: no Authorization header (401), a
    form-encoded or text/plain body (415); the login also checks the Origin (403)."""
    evil = "http://evil.example:8080"
    # a form POST, text/plain shaped as JSON, to an admin write: no token, no effect
    forged = requests.post(f"{api.base}/api/v1/businesses", timeout=10,
                           data='{"text": "[business]\\nslug = \\"evil\\"\\n', headers={
                               "Content-Type": "text/plain", "Origin": evil})
    assert forged.status_code == 401
    admin = requests.get(f"{api.base}/api/v1/businesses", headers=api.auth("admin"), timeout=10)
    assert "evil" not in {b["slug"] for b in admin.json()["items"]}
    # the login from another origin, or as a form body: refused, no session made
    assert _login(api, "alpha-user", USER_PASSWORD, Origin=evil).status_code == 403
    as_form = requests.post(f"{api.base}/api/v1/login", timeout=10,
                            data={"user": "alpha-user", "password": USER_PASSWORD})
    assert as_form.status_code == 415
    same = _login(api, "alpha-user", USER_PASSWORD, Origin=api.base)
    assert same.status_code == 200
    # no cookie is ever set: nothing a browser would attach to a forged request
    assert "Set-Cookie" not in same.headers and not same.cookies
    # and no CORS grant lets another origin read answers or send the header
    pre = requests.options(f"{api.base}/api/v1/businesses", timeout=10, headers={
        "Origin": evil, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization"})
    assert not any(h.lower().startswith("access-control-allow") for h in pre.headers)


def test_the_dry_run_is_tenant_scoped(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/{{}}/numbers/{{}}/simulate"
    ok = requests.post(url.format("alpha", NUMBERS["alpha"]), headers=api.auth("alpha"),
                       json={"caller": "090-1234-5678", "at": "2026-12-29 19:00"}, timeout=10)
    assert ok.status_code == 200, ok.text
    sim = ok.json()
    assert sim["number"] == NUMBERS["alpha"] and sim["caller"] == "+819012345678"
    assert sim["at"].startswith("2026-12-29T19:00") and sim["at"].endswith("+09:00")
    assert sim["rules"] == ["blocklist: not blocked"] and sim["targets"], sim
    assert sim["targets"] == ["front"]
    blocked = requests.post(url.format("alpha", NUMBERS["alpha"]), headers=api.auth("alpha"),
                            json={"caller": "+819000000001"}, timeout=10).json()
    assert blocked["rules"][0].startswith("blocklist: blocked") and blocked["targets"] == []
    # bravo's number under alpha, or bravo's business: 404; a bad moment: 422 naming it
    assert requests.post(url.format("alpha", NUMBERS["bravo"]), headers=api.auth("alpha"),
                         json={}, timeout=10).status_code == 404
    assert requests.post(url.format("bravo", NUMBERS["bravo"]), headers=api.auth("alpha"),
                         json={}, timeout=10).status_code == 404
    bad = requests.post(url.format("alpha", NUMBERS["alpha"]), headers=api.auth("alpha"),
                        json={"at": "29/12 7pm"}, timeout=10)
    assert bad.status_code == 422 and bad.json()["field"] == "body/at"


def test_failed_logins_are_rate_limited(tmp_path: Path) -> None:
    srv = ApiServerThread(tmp_path / "throttled")  # its own server: the lock is per address
    api = srv.start()
    try:
        for _ in range(5):
            assert _login(api, "alpha-user", "guess-guess").status_code == 401
        locked = _login(api, "alpha-user", USER_PASSWORD)  # even the right password now
        assert locked.status_code == 429
        assert 1 <= int(locked.headers["Retry-After"]) <= 60
        assert _login(api, "bravo-user", USER_PASSWORD).status_code == 429  # same address
    finally:
        srv.stop()
