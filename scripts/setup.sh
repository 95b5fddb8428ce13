#!/usr/bin/env bash
# Installs everything Watershed needs on a fresh Debian machine, idempotently:
# system packages for building llama.cpp and for the test suite, a Python virtual
# environment with the SDKs the end-to-end tests drive, and the default model.
#
#   scripts/setup.sh          what `watershed serve` needs
#   scripts/setup.sh --test   plus what the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
packages=(cmake clang libclang-dev pkg-config python3-venv)
if ((want_test)); then
  packages+=(prometheus) # the metrics test scrapes with it and checks with promtool
  packages+=(chromium)   # the dashboard test renders /dashboard in headless Chromium
  command -v npm >/dev/null || packages+=(nodejs npm) # the JS client tests (tests/js)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python environment (SDK clients for tests, gguf for synthetic models) --
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import sys; sys.exit(0 if open(".venv/.req").read() == open("scripts/requirements.txt").read() else 1)' 2>/dev/null; then
  log "installing Python packages"
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt .venv/.req
fi

# --- JavaScript clients for the end-to-end tests (tests/js) ----------------
if ((want_test)); then
  if ! cmp -s tests/js/package-lock.json tests/js/node_modules/.installed-lock 2>/dev/null; then
    log "installing JS clients (npm ci in tests/js)"
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp tests/js/package-lock.json tests/js/node_modules/.installed-lock
  fi
fi

# --- The default model -----------------------------------------------------
.venv/bin/python scripts/fetch_model.py

# --- Services the tests use ---------------------------------------------
if ((want_test)); then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
log "ready"
