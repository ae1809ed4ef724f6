#!/usr/bin/env bash
# The test command of the README and of CI: every crate's unit, integration, crash, tamper and
# model-check tests (bounded case counts; scripts/model-check.sh runs many more), then the AWS
# KMS provider's tests against a local KMS-compatible server (moto on 127.0.0.1, installed and
# started by scripts/moto.sh, stopped at the end). Nothing reaches beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
export SEALDB_KEYSTORE="${SEALDB_KEYSTORE:-$(mktemp -d)/keystore}"
# The AWS SDK must never probe the cloud metadata address (not on loopback).
export AWS_EC2_METADATA_DISABLED=true

cargo test --workspace "$@"

echo "== AWS KMS provider (feature aws-kms) against moto on loopback"
scripts/moto.sh start
trap 'scripts/moto.sh stop || true' EXIT
export SEALDB_TEST_KMS_ENDPOINT="$(scripts/moto.sh url)"
cargo test -p sealdb-crypto --features aws-kms --test aws_kms "$@"
cargo test -p sealdb --features aws-kms --test aws_switch "$@"
