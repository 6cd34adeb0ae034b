"""The Dockerfile cannot be built here (no Docker engine); check that it agrees with its config."""

from __future__ import annotations

import re
from pathlib import Path

from mediasrv.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_dockerfile_matches_its_config() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    cfg = load_config(REPO / "conf" / "mediasrv.docker.toml")
    assert 'CMD ["mediasrv", "run", "-c", "/etc/mediasrv/mediasrv.toml"]' in dockerfile
    assert "COPY conf/mediasrv.docker.toml /etc/mediasrv/mediasrv.toml" in dockerfile
    expose = re.search(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE)
    assert expose is not None
    ports = expose.group(1).split()
    sip_port = cfg.server.sip_hostport[1]
    http_host, http_port = cfg.server.http_hostport
    assert f"{sip_port}/udp" in ports and f"{sip_port}/tcp" in ports
    assert f"{http_port}/tcp" in ports and http_host == "0.0.0.0"
    assert f"{cfg.media.rtp_port_min}-{cfg.media.rtp_port_max}/udp" in ports
    assert f"http://127.0.0.1:{http_port}/health" in dockerfile  # the HEALTHCHECK
    assert cfg.server.data_dir == Path("/var/lib/mediasrv")
    assert 'VOLUME ["/var/lib/mediasrv"]' in dockerfile


def test_dockerignore_keeps_host_build_products_out() -> None:
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    # host-compiled extensions and Cython output must not shadow the image's own build
    assert "**/*.so" in ignored and "cext/*.c" in ignored
