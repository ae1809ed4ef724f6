#!/usr/bin/env bash
# Runs sealdb's cargo-fuzz targets (fuzz/).
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Builds every target once (`cargo +nightly fuzz build -O`), then runs each built binary (all
# targets, or the ones named) for SECONDS with its corpus in fuzz/corpus/<target> (created and
# seeded on first use; gitignored) and prints a summary table with the executions per target
# (libFuzzer's final `stat::number_of_executed_units`, else its `#N DONE` line). The binaries
# are run directly, not through `cargo fuzz run`, so edits made to the tree meanwhile never
# trigger a rebuild. Crash inputs land in fuzz/artifacts/<target>/, logs in
# fuzz/target/fuzz-logs/<target>.log. Exits non-zero if any target crashed or failed.
#
# cargo-fuzz passes its sanitizer flags in RUSTFLAGS, and cargo then ignores `build.rustflags`
# of .cargo/config.toml; so the workspace's rustflags (`--cfg chacha20_avx512`) are read from
# there and added to RUSTFLAGS, and the fuzzed code uses the cipher backends the shipped code
# does.
#
# Environment:
#   FUZZ_BUILD_ARGS  extra `cargo fuzz build` flags (e.g. "-a" for overflow checks; not
#                    --target/--target-dir)
#   FUZZ_ARGS        extra libFuzzer flags (e.g. "-jobs=2 -workers=2")
#   FUZZ_TIMEOUT     per-input timeout in seconds (default 30)
set -euo pipefail

usage() {
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
secs=$1
shift
[[ $secs =~ ^[1-9][0-9]*$ ]] || usage

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz_dir=$root/fuzz
cd "$fuzz_dir"

read -r -a build_args <<<"${FUZZ_BUILD_ARGS:-}"
# `rustflags = ["--cfg", "chacha20_avx512"]` -> `--cfg chacha20_avx512`
config_flags=$(sed -nE 's/^[[:space:]]*rustflags[[:space:]]*=[[:space:]]*\[(.*)\][[:space:]]*$/\1/p' \
    "$root/.cargo/config.toml" 2>/dev/null | tr -d '",' || true)
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$config_flags"
read -r -a extra_args <<<"${FUZZ_ARGS:-}"
timeout_secs=${FUZZ_TIMEOUT:-30}

echo "==> building fuzz targets (cargo +nightly fuzz build -O ${build_args[*]}; RUSTFLAGS=$RUSTFLAGS)"
cargo +nightly fuzz build -O "${build_args[@]}"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "no fuzz targets found" >&2; exit 1; }

host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=${CARGO_TARGET_DIR:-$fuzz_dir/target}/$host/release
log_dir=$fuzz_dir/target/fuzz-logs
mkdir -p "$log_dir"
for t in "${targets[@]}"; do
    [[ -x $bin_dir/$t ]] || { echo "no fuzz target binary $bin_dir/$t" >&2; exit 1; }
done

count_artifacts() {
    local dir=$fuzz_dir/artifacts/$1
    [[ -d $dir ]] || { echo 0; return; }
    find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' \) | wc -l
}

# A fresh corpus gets a few random seeds in each input mode the targets understand:
# 0xA5 = structure-aware, 0x5A = header-checksum fix-up, 0x3C = re-seal (block bodies are
# plaintext, sealed by the target), anything else = raw bytes (fuzz/src/lib.rs).
seed_corpus() {
    local dir=$1 prefix size i=0
    mkdir -p "$dir"
    [[ -z $(find "$dir" -maxdepth 1 -type f -print -quit) ]] || return 0
    for prefix in '\xa5' '\x5a' '\x3c' '\x00'; do
        for size in 16 64 256 1024; do
            { printf "$prefix"; head -c "$size" /dev/urandom; } >"$dir/seed-$i"
            i=$((i + 1))
        done
    done
}

declare -a rows=()
failed=0
for t in "${targets[@]}"; do
    corpus=$fuzz_dir/corpus/$t
    seed_corpus "$corpus"
    before=$(count_artifacts "$t")
    log=$log_dir/$t.log
    echo "==> $t: ${secs}s (log: ${log#"$root"/})"
    status=0
    mkdir -p "$fuzz_dir/artifacts/$t"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} "$bin_dir/$t" "$corpus" \
        -artifact_prefix="$fuzz_dir/artifacts/$t/" -max_total_time="$secs" -rss_limit_mb=2048 \
        -timeout="$timeout_secs" -print_final_stats=1 "${extra_args[@]}" >"$log" 2>&1 || status=$?
    after=$(count_artifacts "$t")
    crashes=$((after - before))
    execs=$(grep -a 'stat::number_of_executed_units:' "$log" | tail -n 1 | awk '{print $2}' || true)
    if [[ -z $execs ]]; then
        execs=$(grep -aE '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed -E 's/^#([0-9]+).*/\1/' || true)
    fi
    execs=${execs:-?}
    rate=$(grep -a 'stat::average_exec_per_sec:' "$log" | tail -n 1 | awk '{print $2}' || true)
    rate=${rate:-?}
    if [[ $status -ne 0 || $crashes -gt 0 ]]; then
        failed=1
        echo "    FAILED (exit $status, $crashes new artifact(s)); tail of log:"
        grep -aE 'panicked|ERROR|SUMMARY|Test unit written|artifact' "$log" | head -n 8 | sed 's/^/    | /' || true
    fi
    rows+=("$t|$execs|$rate|$crashes|$status")
done

echo
printf '%-16s %14s %10s %8s %6s\n' TARGET EXECUTIONS EXEC/S CRASHES EXIT
printf '%-16s %14s %10s %8s %6s\n' ---------------- -------------- ---------- -------- ------
for row in "${rows[@]}"; do
    IFS='|' read -r t execs rate crashes status <<<"$row"
    printf '%-16s %14s %10s %8s %6s\n' "$t" "$execs" "$rate" "$crashes" "$status"
done
echo "(${secs}s per target)"
exit "$failed"
