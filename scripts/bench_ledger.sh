#!/usr/bin/env bash
# Report and dashboard queries on a large ledger, SQLite and PostgreSQL: seeds
# ROWS requests (default 10 million over 30 days) through the stores' own batch
# insert (raw rows plus their daily rollups, one transaction per batch), then
# times the dashboard's queries and prints a markdown table. BENCHMARKS.md
# holds a recorded run. Not part of the test suite.
#
#   scripts/bench_ledger.sh [ROWS]
#   PG_URL=postgres://postgres@127.0.0.1:5432/test  (a schema of its own is used)
#   KEEP=1 keeps the seeded SQLite file and schema, REUSE=1 times them again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
OUT=${OUT:-bench-out/ledger}
SCHEMA=bench_ledger_${ROWS}
mkdir -p "$OUT"
# Release build of the dashboards crate only (no llama.cpp involved).
cargo build --release --locked -p watershed-dashboards --example bench_ledger 2> /dev/null
BIN=target/release/examples/bench_ledger
DB="$OUT/ledger-$ROWS.db"
if [ "${REUSE:-0}" != 1 ]; then
  rm -f "$DB" "$DB-wal" "$DB-shm"
  psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" > /dev/null
fi
echo "## Machine"
echo "$(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(psql "$PG_URL" -Atc 'SHOW server_version' | cut -d' ' -f1) PostgreSQL, SQLite bundled with libsqlite3-sys"
echo
REUSE_FLAG=()
[ "${REUSE:-0}" = 1 ] && REUSE_FLAG=(--reuse)
"$BIN" --rows "$ROWS" --sqlite "sqlite://$DB" --postgres "$PG_URL?schema=$SCHEMA" "${REUSE_FLAG[@]}"
echo
echo "Sizes: SQLite file $(du -h "$DB" | cut -f1); PostgreSQL ledger $(psql "$PG_URL" -Atc "SELECT pg_size_pretty(pg_total_relation_size('$SCHEMA.ledger'))"), rollups $(psql "$PG_URL" -Atc "SELECT pg_size_pretty(pg_total_relation_size('$SCHEMA.ledger_rollup')) || ' in ' || count(*) || ' rows' FROM $SCHEMA.ledger_rollup")"
if [ "${KEEP:-0}" != 1 ]; then
  rm -f "$DB" "$DB-wal" "$DB-shm"
  psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" > /dev/null
fi
