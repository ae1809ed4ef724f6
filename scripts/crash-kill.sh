#!/usr/bin/env bash
# Crash test: a child process writes batches (some synced, some not) into a sealdb database
# and is killed with SIGKILL at a random moment (50-800 ms after it starts); the parent
# reopens the database and checks that every acknowledged synced batch is present, that every
# batch is all-or-nothing, that nothing below the newest batch is missing, and that
# Db::verify() authenticates every block. Exits non-zero on any loss.
#
#   scripts/crash-kill.sh          # 200 rounds
#   scripts/crash-kill.sh 1000     # more rounds
#
# Extra arguments after the round count go to `sealdb-crashkill parent` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-200}"
shift || true

cargo build --release -p sealdb-benches --bin sealdb-crashkill
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/sealdb-crashkill" parent --rounds "$rounds" "$@"
