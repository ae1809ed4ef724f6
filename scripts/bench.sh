#!/usr/bin/env bash
# The comparison in one command: sealdb encrypted (ChaCha20-Poly1305), sealdb plaintext (the
# `none` cipher) and fjall — plus RocksDB with --rocksdb — on every workload of the latency
# harness, side by side in one run. Prints the tables and writes, under the output directory:
#   results.txt   the terminal tables (latency percentiles with ratios; space/write amp)
#   results.md    the same tables as Markdown
#   results.json  everything, including percentile curves and per-second throughput
#   plots/        SVGs: latency-percentile curves and throughput over time per workload
#
#   scripts/bench.sh                    # --quick preset (100k keys, 2 s per measurement)
#   scripts/bench.sh --full             # 1M keys, 10 s per measurement (about 20 minutes)
#   scripts/setup-rocksdb.sh && scripts/bench.sh --rocksdb
#   scripts/bench.sh --workloads "put readrandom ycsb" -- --threads 1,2
#
# Options: --rocksdb, --full, --out DIR (default target/bench), --workloads "W ...",
# and after `--` any option of sealdb-latency (see its --help).
# Run it on a quiet machine; the numbers are only comparable within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

features="fjall"
preset="--quick"
out="target/bench"
workloads="all"
cargo_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rocksdb)
            features="fjall,rocksdb"
            # RocksDB's C++ needs no debug info for a benchmark and builds much faster without.
            cargo_extra=(--config 'profile.release.package.librocksdb-sys.debug=false')
            ;;
        --full) preset="" ;;
        --out) out="$2"; shift ;;
        --workloads) workloads="$2"; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (harness options go after --)" >&2; exit 2 ;;
    esac
    shift
done

cargo build --release -p sealdb-benches --features "$features" --bin sealdb-latency "${cargo_extra[@]}"
bin="${CARGO_TARGET_DIR:-target}/release/sealdb-latency"

mkdir -p "$out"
echo "bench.sh: $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); results in $out" >&2
# shellcheck disable=SC2086 # $workloads and $preset are word lists on purpose
"$bin" $workloads $preset \
    --json "$out/results.json" --plots "$out/plots" --markdown "$out/results.md" "$@" \
    | tee "$out/results.txt"
