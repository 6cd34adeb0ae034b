#!/usr/bin/env bash
# One entry point for a fresh Debian machine with Python >= 3.11 (run as root, or with sudo).
#   bash scripts/bootstrap.sh demo   -> installs what it needs, runs `mediasrv demo`
#   bash scripts/bootstrap.sh test   -> installs what it needs, runs the whole test suite
#   bash scripts/bootstrap.sh setup  -> only installs
# The virtualenv lives in .venv/ (override with MEDIASRV_VENV); mediasrv is installed into it
# as a real (non-editable) package, so tests exercise the installed Cython extensions.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
cd "$HERE"
VENV=${MEDIASRV_VENV:-$HERE/.venv}
PY=${PYTHON:-python3}

DEBS=(sip-tester sox espeak-ng asterisk-core-sounds-en-wav asterisk-core-sounds-en build-essential
      asterisk-moh-opsound-wav   # hold music (CC-BY-SA 3.0) for the prompt store
      chromium fonts-noto-cjk)   # the console's browser tests (Playwright drives Debian's chromium)

need_debs() {
    local missing=()
    for p in "${DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
        local SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

setup_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --upgrade pip setuptools wheel Cython numpy >/dev/null
    # Non-editable install: builds cext/*.pyx into the wheel (tested from site-packages).
    "$VENV/bin/pip" install -q --no-build-isolation "$HERE[test,analysis,prompts]"
    "$VENV/bin/pip" install -q --no-deps "pyopenjtalk-plus==0.4.1.post10"
}

build_models() {
    "$VENV/bin/mediasrv" models build
}

# The default prompt set (beep, Japanese prompts, hold music) into ~/.cache/mediasrv/prompts
# (or $MEDIASRV_PROMPTS_DIR), outside the repo like the models. Only what is missing is made:
# a complete store costs nothing; a fresh one takes about 2 minutes of CPU (speech synthesis).
build_prompts() {
    "$VENV/bin/mediasrv" prompts build | tail -n 1 >&2  # says which hold music was used
}

cmd=${1:-test}
shift || true
case "$cmd" in
    setup)
        need_debs; setup_venv; build_models; build_prompts ;;
    demo)
        need_debs; setup_venv
        exec "$VENV/bin/mediasrv" demo "$@" ;;
    test)
        need_debs; setup_venv; build_models; build_prompts
        # Run pytest from the venv's entry point (not `python -m`), so the installed package,
        # not the source tree, is what gets imported; PYTHONSAFEPATH keeps child interpreters
        # (`python -c`, `python -m mediasrv`) from putting the checkout on sys.path too.
        # Two pytest workers (pytest-xdist): the suite mostly waits (SIP timers, calls held,
        # servers starting), so two share 2 cores well. One file stays on one worker
        # (--dist loadfile), so a module's shared server starts once. MEDIASRV_TEST_WORKERS=0
        # runs it in one process.
        set +e
        PYTHONSAFEPATH=1 MEDIASRV_TEST_INSTALLED=1 "$VENV/bin/pytest" -p no:cacheprovider \
            -n "${MEDIASRV_TEST_WORKERS:-2}" --dist loadfile "$@"
        rc=$?
        set -e
        if [ $rc -eq 5 ]; then
            echo "bootstrap: pytest collected no tests: that is a failure" >&2
            exit 1
        fi
        exit $rc ;;
    *)
        echo "usage: bootstrap.sh demo|test|setup" >&2; exit 2 ;;
esac
