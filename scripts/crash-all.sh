#!/usr/bin/env bash
# Crash the engine's scripted workload at *every* write, sync and rename (the test suite
# samples about 120 points), in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
export SEALDB_KEYSTORE="${SEALDB_KEYSTORE:-$(mktemp -d)/keystore}"
SEALDB_CRASH_ALL=1 cargo test --release -p sealdb --test crash -- --nocapture
