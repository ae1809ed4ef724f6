//! Seal and open of one block, beside the raw `chacha20poly1305` call on the same buffer, so
//! the framing's overhead (associated data, prefix, copy) is measured against the cipher alone;
//! and (group `aead`, issue 14) the cost of each cipher option per 170-byte WAL commit frame and
//! per 4 KiB table block: the reference ChaCha20-Poly1305 crate, ring's ChaCha20-Poly1305,
//! AES-256-GCM and the `none` baseline, each through `BlockSealer` (framing included).
//! Run: `cargo bench -p sealdb-benches --bench crypto` (`-- aead/` for the cipher table).

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealdb_crypto::{ArtifactKind, BlockSealer, CipherId, DatabaseId, Keyring, SealBackend};
use std::hint::black_box;

const SIZES: [usize; 4] = [64, 4 << 10, 16 << 10, 64 << 10];

fn bench_blocks(c: &mut Criterion) {
    let keyring = Keyring::generate(DatabaseId([7; 16])).expect("keyring");
    let sealer = BlockSealer::for_new_file(
        &keyring,
        ArtifactKind::Table,
        CipherId::ChaCha20Poly1305,
        Vec::new(),
        "bench",
    )
    .expect("sealer");
    let plain_sealer = BlockSealer::for_new_file(
        &keyring,
        ArtifactKind::Table,
        CipherId::None,
        Vec::new(),
        "bench",
    )
    .expect("sealer");
    let raw = ChaCha20Poly1305::new(&[9u8; 32].into());

    let mut group = c.benchmark_group("block");
    for size in SIZES {
        let data = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));

        let mut buf = data.clone();
        group.bench_with_input(
            BenchmarkId::new("raw_chacha20poly1305_encrypt", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let tag = raw
                        .encrypt_inout_detached(
                            &Nonce::from([1u8; 12]),
                            b"",
                            buf.as_mut_slice().into(),
                        )
                        .expect("encrypt");
                    black_box(tag);
                })
            },
        );

        let mut out = Vec::with_capacity(size + 64);
        group.bench_with_input(BenchmarkId::new("seal", size), &size, |b, _| {
            b.iter(|| {
                out.clear();
                let h = sealer
                    .seal_into(4096, false, black_box(&data), &mut out)
                    .expect("seal");
                black_box(h);
            })
        });

        let mut sealed = Vec::new();
        sealer
            .seal_into(4096, false, &data, &mut sealed)
            .expect("seal");
        group.bench_with_input(BenchmarkId::new("open", size), &size, |b, _| {
            b.iter(|| {
                let block = sealer.open(4096, black_box(sealed.clone())).expect("open");
                black_box(block);
            })
        });

        group.bench_with_input(BenchmarkId::new("seal_none_cipher", size), &size, |b, _| {
            b.iter(|| {
                out.clear();
                let h = plain_sealer
                    .seal_into(4096, false, black_box(&data), &mut out)
                    .expect("seal");
                black_box(h);
            })
        });
    }
    group.finish();
}

/// The per-frame cost of each cipher option: a WAL commit frame (~170 B) and a table block.
fn bench_aead_options(c: &mut Criterion) {
    let base = Keyring::generate(DatabaseId([7; 16])).expect("keyring");
    let keyring = |backend| {
        let mut k = base.clone();
        k.set_seal_backend(backend);
        k
    };
    let options = [
        (
            "chacha_reference",
            keyring(SealBackend::Reference),
            CipherId::ChaCha20Poly1305,
        ),
        (
            "chacha_fast",
            keyring(SealBackend::Fast),
            CipherId::ChaCha20Poly1305,
        ),
        ("aes256gcm", base.clone(), CipherId::Aes256Gcm),
        ("none", base.clone(), CipherId::None),
    ];
    let mut group = c.benchmark_group("aead");
    for size in [170usize, 4 << 10] {
        let data = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for (name, keyring, cipher) in &options {
            let sealer =
                BlockSealer::for_new_file(keyring, ArtifactKind::Wal, *cipher, Vec::new(), "bench")
                    .expect("sealer");
            let mut out = Vec::with_capacity(size + 64);
            group.bench_with_input(
                BenchmarkId::new(format!("seal/{name}"), size),
                &size,
                |b, _| {
                    b.iter(|| {
                        out.clear();
                        let h = sealer
                            .seal_into(4096, false, black_box(&data), &mut out)
                            .expect("seal");
                        black_box(h);
                    })
                },
            );
            let mut sealed = Vec::new();
            sealer
                .seal_into(4096, false, &data, &mut sealed)
                .expect("seal");
            group.bench_with_input(
                BenchmarkId::new(format!("open/{name}"), size),
                &size,
                |b, _| {
                    b.iter(|| {
                        let block = sealer.open(4096, black_box(sealed.clone())).expect("open");
                        black_box(block);
                    })
                },
            );
        }
    }
    group.finish();
}

// Short warm-up and measurement so the whole `cargo bench` suite runs in a few minutes.
criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench_blocks, bench_aead_options
}
criterion_main!(benches);
