#!/usr/bin/env bash
# Runs the unit and ledger tests (and the in-process dashboard and CLI tests)
# under shifted clocks, to show that none of them depends on the date the suite
# runs: a year's last seconds, a new year's first, and a leap day. Uses Debian's
# libfaketime (installed here if missing). The test binaries are built first on
# the real clock and then run under the fake one, so cargo's fingerprints never
# see a shifted time.
#
#   scripts/test_clock.sh                 the three instants below
#   scripts/test_clock.sh "2030-06-15 08:00:00"   one instant of your own
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test_clock] %s\n' "$*" >&2; }

if ! command -v faketime >/dev/null 2>&1; then
  log "installing faketime"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends faketime >/dev/null
fi

if (($#)); then
  instants=("$@")
else
  instants=("2026-12-31 23:59:50" "2027-01-01 00:00:05" "2028-02-29 12:00:00")
fi

# The suites whose outcome could depend on the calendar: the gateway's unit
# tests (budgets, classification), the whole dashboards crate (ledger on
# SQLite and PostgreSQL, rollups, reports, planner, writer), the policies
# crate, and the gateway's dashboard and CLI tests (report, explain).
suites=(
  "-p watershed --lib --test dashboard_http --test cli"
  "-p watershed-dashboards"
  "-p watershed-policies"
)
bins=""
for suite in "${suites[@]}"; do
  # shellcheck disable=SC2086 # each suite is a list of cargo arguments
  bins+=$(cargo test --locked --no-run --message-format=json $suite 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["manifest_path"].rsplit("/", 1)[0] + "\t" + m["executable"])
')$'\n'
done
bins=$(printf '%s' "$bins" | sed '/^$/d')
[[ -n "$bins" ]] || { log "no test binaries were built"; exit 1; }

# Timers and timeouts keep the real monotonic clock: only the calendar moves.
export FAKETIME_DONT_FAKE_MONOTONIC=1
export FAKETIME_DONT_RESET=1
failed=0
for at in "${instants[@]}"; do
  log "clock starts at $at"
  while IFS=$'\t' read -r crate_dir bin; do
    name=$(basename "$bin")
    # Each binary runs from its crate's directory, as cargo test runs it.
    if ! (cd "$crate_dir" && faketime -f "@$at" "$bin" -q >"/tmp/test_clock.$$.log" 2>&1); then
      log "FAILED at $at: $name"
      tail -n 40 "/tmp/test_clock.$$.log" >&2
      failed=1
    else
      printf '%-22s %-44s %s\n' "$at" "$name" "$(grep -E '^test result' "/tmp/test_clock.$$.log" | tail -n 1)"
    fi
  done <<<"$bins"
done
rm -f "/tmp/test_clock.$$.log"
exit "$failed"
