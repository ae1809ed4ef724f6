#!/usr/bin/env bash
# Many short sessions: N one-put `sealdb` processes (default 5000) under `ulimit -n 256`, then
# `get`, `verify` and the WAL segment count. Every session leaves a WAL segment behind; open
# must keep them bounded and recovery must not open them all at once (issue 13, section 4).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5000}"
cargo build --release -q -p sealdb-cli
bin="$PWD/target/release/sealdb"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
db="$work/db"
ks="$work/keystore"
ulimit -n 256
start=$(date +%s)
for i in $(seq 1 "$n"); do
  "$bin" --db "$db" --keystore "$ks" put "k$i" "v$i" --sync >/dev/null
  if (( i % 500 == 0 )); then
    segs=$(ls "$db/wal" | grep -c '\.wal$' || true)
    t0=$(date +%s%N)
    "$bin" --db "$db" --keystore "$ks" get k1 >/dev/null
    t1=$(date +%s%N)
    echo "after $i sessions: $segs WAL segments, get (open + read) $(( (t1 - t0) / 1000000 )) ms"
  fi
done
"$bin" --db "$db" --keystore "$ks" get "k$n"
"$bin" --db "$db" --keystore "$ks" verify
echo "$n sessions in $(( $(date +%s) - start )) s"
