"""A running ``mediasrv run`` serves the v1 API (issue 12): a business token made by the CLI
while the server runs works at once for its business only, a configuration change over the
API is what ``mediasrv business export`` then shows, and a token revoked by the CLI is
refused on the next request (tokens are looked up in the store per request)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

BUSINESS = """
[business]
slug = "{slug}"

[[operators]]
name = "front"
sip = "sip:front@127.0.0.1:26011"

[[numbers]]
number = "{number}"
medium = "web"

[numbers.forwarding]
targets = [{{ operator = "front" }}]
on_exhausted = "hangup"
"""


def mediasrv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediasrv", *args], capture_output=True, text=True, timeout=60
    )


def test_business_token_over_a_running_server(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server()
    data = str(server.data_dir)
    for slug, number in (("acme", "0311112222"), ("zeta", "0611113333")):
        f = tmp_path / f"{slug}.toml"
        f.write_text(BUSINESS.format(slug=slug, number=number))
        applied = mediasrv("business", "apply", str(f), "--data-dir", data)
        assert applied.returncode == 0, applied.stderr
    made = mediasrv("token", "create", "--business", "acme", "--data-dir", data)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    base = f"http://127.0.0.1:{server.http_port}/api/v1"
    mine = {"Authorization": f"Bearer {token}"}

    got = requests.get(f"{base}/businesses/acme/operators/front", headers=mine, timeout=10)
    assert got.status_code == 200, got.text
    assert requests.get(f"{base}/businesses/zeta", headers=mine, timeout=10).status_code == 404
    assert requests.get(f"{base}/calls", headers=mine, timeout=10).status_code == 403

    put = requests.put(f"{base}/businesses/acme/operators/front",
                       json={"sip": "sip:front@127.0.0.1:26012"},
                       headers={**mine, "If-Match": got.headers["ETag"]}, timeout=10)
    assert put.status_code == 200, put.text
    exported = mediasrv("business", "export", "acme", "--data-dir", data)
    assert 'sip = "sip:front@127.0.0.1:26012"' in exported.stdout

    admin = {"Authorization": f"Bearer {server.spec.api_token}"}
    listed = requests.get(f"{base}/tokens", headers=admin, timeout=10).json()["items"]
    token_id = next(t["token_id"] for t in listed if t["business"] == "acme")
    assert mediasrv("token", "revoke", token_id, "--data-dir", data).returncode == 0
    assert requests.get(f"{base}/businesses/acme", headers=mine, timeout=10).status_code == 401
