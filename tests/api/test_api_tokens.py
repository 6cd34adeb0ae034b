"""Business tokens (issue 12 §4): created by the CLI or the API (admin), shown once, stored
as sha256 with a scanner-friendly prefix, listed without secrets, revocable."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import requests
from apiserver import Running

from mediasrv.api.v1.store import TOKEN_SCAN_REGEX


def test_api_token_lifecycle(api: Running) -> None:
    url = f"{api.base}/api/v1/tokens"
    made = requests.post(url, json={"business": "alpha", "name": "crm"},
                         headers=api.auth("admin"), timeout=10)
    assert made.status_code == 201
    body = made.json()
    token = body["token"]
    assert re.fullmatch(TOKEN_SCAN_REGEX.strip("\\b"), token) and token.startswith("msrvb_")
    # works, and only for its business
    mine = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{api.base}/api/v1/businesses/alpha", headers=mine,
                        timeout=10).status_code == 200
    assert requests.get(f"{api.base}/api/v1/businesses/bravo", headers=mine,
                        timeout=10).status_code == 404
    # listed without the secret
    listed = requests.get(url, params={"business": "alpha"}, headers=api.auth("admin"),
                          timeout=10)
    assert token not in listed.text and token[6:] not in listed.text
    assert body["token_id"] in {t["token_id"] for t in listed.json()["items"]}
    # stored hashed
    db = api.root / "var" / "mediasrv.db"
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump and hashlib.sha256(token.encode()).hexdigest() in dump
    # revoked: 401 from then on
    gone = requests.delete(f"{url}/{body['token_id']}", headers=api.auth("admin"), timeout=10)
    assert gone.status_code == 204
    after = requests.get(f"{api.base}/api/v1/businesses/alpha", headers=mine, timeout=10)
    assert after.status_code == 401
    assert requests.get(f"{url}/{body['token_id']}", headers=api.auth("admin"),
                        timeout=10).json()["revoked_at"] is not None


def test_token_for_an_unknown_business_is_refused(api: Running) -> None:
    resp = requests.post(f"{api.base}/api/v1/tokens", json={"business": "nobody"},
                         headers=api.auth("admin"), timeout=10)
    assert resp.status_code == 422 and resp.json()["field"] == "business"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mediasrv", "token", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    data = tmp_path / "var"
    biz = tmp_path / "b.toml"
    biz.write_text('[business]\nslug = "kappa"\n')
    applied = subprocess.run([sys.executable, "-m", "mediasrv", "business", "apply", str(biz),
                              "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    made = _cli("create", "--business", "kappa", "--name", "ci", "--data-dir", str(data))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("msrvb_") and len(token) == 6 + 43
    listed = _cli("list", "--data-dir", str(data))
    assert listed.returncode == 0 and token not in listed.stdout and "kappa" in listed.stdout
    token_id = listed.stdout.split()[0]
    assert _cli("revoke", token_id, "--data-dir", str(data)).returncode == 0
    assert "revoked" in _cli("list", "--data-dir", str(data)).stdout
    assert _cli("revoke", token_id, "--data-dir", str(data)).returncode == 1
    unknown = _cli("create", "--business", "nope", "--data-dir", str(data))
    assert unknown.returncode == 2 and "nope" in unknown.stderr
