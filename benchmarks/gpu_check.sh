#!/usr/bin/env bash
# lnc's GPU check: everything GPU-specific, measured in one command of at most 8 minutes on one
# NVIDIA GPU (H100/H200 class), from a bare machine with Python and torch. What it runs and writes:
# benchmarks/gpu_check.py's docstring. Results go into --out as each step ends; copy them to
# benchmarks/results/ and commit them.
#
# The full check, from the repository root, on the GPU machine:
#
#   bash benchmarks/gpu_check.sh --wheels .whl --data-dir .data --out "$OUT"
#
#   --wheels DIR    wheels of what the machine lacks, installed only if `import fastai.basics` fails
#                   (with --no-deps into /tmp/lnc_site). Download them beforehand, where a package
#                   registry is reachable, for the GPU machine's Python (here 3.12; plum-dispatch is
#                   the one compiled wheel, so match --python-version):
#                     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#                       fastai==2.8.12 fastcore==2.2.41 fastprogress==1.0.3 fastdownload==0.0.8 \
#                       fasttransform==0.0.5 plum-dispatch==2.9.0 beartype==0.23.1
#                   (fastprogress 1.0.3, not 1.1: 1.1 imports python-fasthtml and its web stack.
#                   The machine must already have torch, torchvision, numpy, scipy, scikit-learn,
#                   pandas, matplotlib, pillow, pyyaml, requests, rich, typing-extensions, pytest.)
#   --data-dir DIR  the folder holding cifar10_jpeg.npz (default: $LNC_DATA_DIR)
#   --out DIR       where the results go (earlier results of the check there are replaced)
#   (relative paths are taken from the folder the command is run in)
#   --budget S      seconds for the whole check (default 480)
#
# On any machine, a CPU too, the same steps at toy size (synthetic images), in under a minute
# on an idle 2-core CPU (its deadline is 4 minutes):
#
#   bash benchmarks/gpu_check.sh --smoke --out /tmp/gpu_check_smoke
set -uo pipefail
START=$(date +%s)
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WHEELS="" DATA="" OUT="" SMOKE="" BUDGET=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS="$2"; shift 2 ;;
        --data-dir) DATA="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --smoke) SMOKE="--smoke"; shift ;;
        *) echo "gpu_check.sh: unknown argument '$1' (accepted: --wheels DIR, --data-dir DIR, --out DIR, --budget S, --smoke)" >&2; exit 2 ;;
    esac
done
if [ -z "$OUT" ]; then
    echo "gpu_check.sh: --out DIR is required (the folder the results go to)" >&2
    exit 2
fi
# Paths as the caller meant them, before this script changes folder.
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
OUT="$(absolute "$OUT")"
[ -n "$WHEELS" ] && WHEELS="$(absolute "$WHEELS")"
[ -n "$DATA" ] && DATA="$(absolute "$DATA")"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import fastai.basics" 2>/dev/null; then
    if [ -z "$WHEELS" ] || ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "gpu_check.sh: fastai is not installed and no wheels were given (--wheels DIR; see this file's header)" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/lnc_site "$WHEELS"/*.whl || exit 2
    export PYTHONPATH="/tmp/lnc_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
ARGS=(--out "$OUT" --start "$START")
[ -n "$DATA" ] && ARGS+=(--data-dir "$DATA")
[ -n "$BUDGET" ] && ARGS+=(--budget "$BUDGET")
[ -n "$SMOKE" ] && ARGS+=(--smoke --budget "${BUDGET:-360}")
exec "$PYTHON" benchmarks/gpu_check.py "${ARGS[@]}"
