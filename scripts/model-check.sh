#!/usr/bin/env bash
# A long model-check run: the engine against a BTreeMap model over many random operation
# sequences (puts, deletes, batches, scans, snapshots, flushes, compactions, reopens, crashes),
# then the metamorphic check (random options per case, crashes inside flushes, compactions,
# WAL rollovers and key changes, key rotation, backup/restore, keyspace drops, and the same
# operations under two option sets giving the same answers). See docs/testing.md.
# Usage: scripts/model-check.sh [CASES] [SEED]   (default 5000 cases, a random seed; the
# metamorphic check runs CASES/10, its cases being several times longer)
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${1:-5000}"
SEED="${2:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
META_CASES=$(( CASES / 10 > 0 ? CASES / 10 : 1 ))
export SEALDB_KEYSTORE="${SEALDB_KEYSTORE:-$(mktemp -d)/keystore}"
echo "model-check: $CASES cases (metamorphic: $META_CASES), PROPTEST_RNG_SEED=$SEED" >&2
echo "  (rerun one failure: PROPTEST_RNG_SEED=$SEED PROPTEST_CASES=<n> cargo test -p sealdb --test <model|metamorphic>)" >&2
PROPTEST_CASES="$CASES" cargo test --release -p sealdb --test model -- --nocapture
PROPTEST_CASES="$CASES" cargo test --release -p sealdb-memtable --test model
PROPTEST_RNG_SEED="$SEED" PROPTEST_CASES="$META_CASES" \
  cargo test --release -p sealdb --test metamorphic -- --nocapture
