#!/usr/bin/env bash
# A long model-check run: the engine against a BTreeMap model over many random operation
# sequences (puts, deletes, batches, scans, snapshots, flushes, compactions, reopens, crashes).
# Usage: scripts/model-check.sh [CASES]   (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${1:-5000}"
export SEALDB_KEYSTORE="${SEALDB_KEYSTORE:-$(mktemp -d)/keystore}"
PROPTEST_CASES="$CASES" cargo test --release -p sealdb --test model -- --nocapture
PROPTEST_CASES="$CASES" cargo test --release -p sealdb-memtable --test model
