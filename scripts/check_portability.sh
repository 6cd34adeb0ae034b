#!/usr/bin/env bash
# Do the analysis models give the same result on a CPU without AVX-512/VNNI? (issue 7)
#
#   bash scripts/check_portability.sh [--model whisper-base] [--steps 24]
#
# Runs the Whisper encoder and a few greedy decoder steps on fixed inputs (the pause-split
# test's window) natively and under `qemu-x86_64 -cpu Haswell` (AVX2, no AVX-512, no VNNI),
# then prints the largest output differences and whether the decoded tokens agree (exit 0:
# they agree; 1: they differ). Slow (the emulated encoder alone takes minutes), so not part
# of the test suite. Needs `bash scripts/bootstrap.sh setup` first (venv and models; the
# models dir is $MEDIASRV_MODELS_DIR or ~/.cache/mediasrv/models). Installs Debian's
# qemu-user when it is missing (as root, or with sudo).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${MEDIASRV_VENV:-$HERE/.venv}
PY="$VENV/bin/python"
CPU=${PORTABILITY_CPU:-Haswell}

if [ ! -x "$PY" ]; then
    echo "check_portability: no virtualenv at $VENV; run: bash scripts/bootstrap.sh setup" >&2
    exit 2
fi
if ! command -v qemu-x86_64 >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "check_portability: installing Debian's qemu-user (CPU emulation)" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        qemu-user >/dev/null
fi

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# One onnxruntime thread in both runs (also the only mode that works under qemu-user).
export OMP_NUM_THREADS=1 PYTHONSAFEPATH=1
"$PY" "$HERE/scripts/portability_probe.py" run "$OUT/native.npz" "$@"
echo "check_portability: the same under qemu-x86_64 -cpu $CPU (minutes) ..." >&2
# (qemu warns once per thread about CPUID bits TCG cannot emulate; those lines are dropped.)
qemu-x86_64 -cpu "$CPU" "$PY" "$HERE/scripts/portability_probe.py" run "$OUT/emulated.npz" \
    --reference "$OUT/native.npz" "$@" 2>&1 | { grep -v "TCG doesn't support" || true; }
"$PY" "$HERE/scripts/portability_probe.py" compare "$OUT/native.npz" "$OUT/emulated.npz"
