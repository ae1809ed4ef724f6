#!/usr/bin/env bash
# The test command of the README: every crate's unit, integration, crash, tamper and
# model-check tests (the model check with a bounded case count; scripts/model-check.sh runs
# many more).
set -euo pipefail
cd "$(dirname "$0")/.."
export SEALDB_KEYSTORE="${SEALDB_KEYSTORE:-$(mktemp -d)/keystore}"
cargo test --workspace "$@"
