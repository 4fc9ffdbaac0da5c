#!/usr/bin/env bash
# Set up everything mcuc needs on a Debian 12 machine: system packages and .venv.
#
# Idempotent: apt packages are installed only when missing, and the pip work is skipped
# when .venv/.mcuc-setup-stamp matches a hash of pyproject.toml and this script.
# torch is pinned to the CPU build (torch==2.13.0) and installed before anything else so
# that no later requirement can make pip fetch a multi-GB CUDA build.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(dirname "$(dirname "$SELF")")"
cd "$ROOT"

# --- System packages ---------------------------------------------------------------------
# Add packages here, one per line.
APT_PACKAGES=(
    dataset-fashion-mnist
    gcc
    make
    # Cross toolchain, emulator and flasher for the MCU boards:
    gcc-arm-none-eabi
    libnewlib-arm-none-eabi
    qemu-system-arm
    openocd
    # `mcuc export`'s CMake library is built in the tests (tests/test_export.py):
    cmake
    ninja-build
)

TORCH_REQ="torch==2.13.0"
VENV="$ROOT/.venv"
STAMP="$VENV/.mcuc-setup-stamp"
T0=$SECONDS

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Install the given Debian packages that are not installed yet (as root, or through sudo).
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null \
            || die "missing Debian packages (${missing[*]}); not root and no sudo: install them"
        sudo=(sudo)
    fi
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install "${APT_PACKAGES[@]}"

# --- Python virtual environment ----------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    log "removing a broken .venv (no pip)"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    PY=""
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null \
            && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            PY="$cand"
            break
        fi
    done
    [[ -n "$PY" ]] || die "need Python >= 3.11 (python3.11 or python3) to create .venv"
    # Debian's own python3 ships venv's ensurepip separately.
    if ! "$PY" -c 'import ensurepip' 2>/dev/null && [[ "$(command -v "$PY")" == /usr/bin/* ]]; then
        apt_install "$(basename "$PY")-venv"
    fi
    log "creating .venv with $("$PY" --version 2>&1)"
    "$PY" -m venv "$VENV"
fi

hash_inputs() { cat pyproject.toml "$SELF" | sha256sum | cut -d' ' -f1; }
WANT="$(hash_inputs)"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip warns once per package about this machine's absent extra index; keep errors, drop that.
pip_install() {
    "${PIP[@]}" install -q --progress-bar off "$@" 2>&1 \
        | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    log "python packages up to date (stamp matches)"
else
    rm -f "$STAMP"

    # Refuse to download a CUDA torch: ask pip which wheel it would pick, without installing.
    if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__ != "2.13.0+cpu")' \
        2>/dev/null; then
        log "checking that pip resolves $TORCH_REQ to the CPU wheel"
        picked="$("${PIP[@]}" install --dry-run --no-deps -q --report - "$TORCH_REQ" 2>/dev/null \
            | "$VENV/bin/python" -c '
import json, sys
items = json.load(sys.stdin).get("install", [])
print(items[0]["download_info"]["url"] if items else "already-installed")')" \
            || die "pip cannot resolve $TORCH_REQ (try: .venv/bin/pip install --dry-run $TORCH_REQ)"
        case "$picked" in
            *%2Bcpu*|*+cpu*|already-installed) ;;
            *) die "pip would install torch from $picked, not the +cpu build; refusing" ;;
        esac
        log "pip install $TORCH_REQ (CPU build)"
        pip_install "$TORCH_REQ"
    fi

    log "pip install -e '.[dev,search,plot,board]'"
    pip_install -e '.[dev,search,plot,board]' "$TORCH_REQ"

    # timm requires torchvision, which we do not want: install it without deps and add its
    # other requirements (none of which depends on torch) by hand.
    log "pip install timm (--no-deps) and its non-torch requirements"
    pip_install pyyaml safetensors huggingface_hub
    pip_install --no-deps timm

    # Fail loudly if anything slipped a CUDA torch or nvidia wheels in after all.
    "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import sys

import torch

nvidia = sorted(d.metadata["Name"] for d in md.distributions()
                if (d.metadata["Name"] or "").lower().startswith("nvidia"))
if torch.__version__ != "2.13.0+cpu" or nvidia:
    sys.exit(f"[setup] ERROR: wrong torch {torch.__version__} or CUDA wheels {nvidia}")
EOF
    echo "$WANT" > "$STAMP"
fi

summary="$("$VENV/bin/python" -c '
import sys, torch, onnx, onnxruntime, mcuc
print(f"python {sys.version.split()[0]}, mcuc {mcuc.__version__}, torch {torch.__version__}, "
      f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")')" \
    || die "the .venv does not import mcuc/torch/onnx/onnxruntime; rm -rf .venv and rerun"
echo "setup ok in $((SECONDS - T0))s: $summary"
