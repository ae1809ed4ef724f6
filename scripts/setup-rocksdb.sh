#!/usr/bin/env bash
# Installs what the `rocksdb` feature of sealdb-benches needs to build RocksDB from source:
# libclang (bindgen generates the C bindings) and clang/a C++ toolchain. Debian/Ubuntu only.
#
#   scripts/setup-rocksdb.sh            # install the packages (uses sudo when not root)
#   scripts/bench.sh --rocksdb          # then run the comparison including RocksDB
#
# The RocksDB build itself (librocksdb-sys compiling RocksDB's C++ sources) takes about ten
# minutes on two cores and is cached in the workspace's target directory afterwards.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-rocksdb: apt-get not found; install libclang (>= 10) and a C++17 compiler yourself" >&2
    exit 1
fi

$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
    libclang-dev clang build-essential

echo "setup-rocksdb: libclang at $(dirname "$(find /usr/lib -name 'libclang*.so*' | head -n 1)")"
