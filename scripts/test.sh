#!/usr/bin/env bash
# The test command of the README and of CI: every crate's unit, integration, crash, tamper,
# model-check and doc tests (bounded case counts; scripts/model-check.sh runs many more),
# the AWS KMS provider's tests included, against a local KMS-compatible server (moto on
# 127.0.0.1, installed and started by scripts/moto.sh, stopped at the end). Nothing reaches
# beyond loopback. Arguments go to `cargo test` (for example `-- --nocapture`).
#
# One cargo invocation builds and runs everything. The `aws-kms` feature of sealdb-crypto and
# sealdb is on for the whole workspace, so every crate is compiled once, with one feature set.
# (This script used to run `cargo test --workspace`, then `cargo test -p … --features aws-kms`
# twice: those later invocations resolved other features for shared dependencies — serde,
# syn, tracing, smallvec, crossbeam-utils, … — and so compiled them, every proc macro and
# crate above them, and the whole sealdb stack a second time.) The default feature set is
# still type-checked by `cargo clippy --workspace --all-targets` in .ci/run, and the CLI keeps
# its own `aws-kms` feature off, so its "rebuild with --features aws-kms" path is tested.
set -euo pipefail
cd "$(dirname "$0")/.."
export SEALDB_KEYSTORE="${SEALDB_KEYSTORE:-$(mktemp -d)/keystore}"
# The AWS SDK must never probe the cloud metadata address (not on loopback).
export AWS_EC2_METADATA_DISABLED=true

echo "== local AWS KMS stand-in: moto on loopback (scripts/moto.sh)"
scripts/moto.sh start
trap 'scripts/moto.sh stop || true' EXIT
SEALDB_TEST_KMS_ENDPOINT="$(scripts/moto.sh url)"
export SEALDB_TEST_KMS_ENDPOINT

echo "== cargo test --workspace (with the aws-kms feature of sealdb-crypto and sealdb)"
cargo test --workspace --features sealdb-crypto/aws-kms,sealdb/aws-kms,sealdb-sstable/fuzzing "$@"
