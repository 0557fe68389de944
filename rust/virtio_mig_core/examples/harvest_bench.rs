// SPDX-License-Identifier: GPL-2.0
//! Harvests a 32 MiB device bitmap (1 TiB of IOVA at 4 KiB) and compares the
//! time with a plain 32 MiB memcpy.
//!
//! Run with `cargo run --release --example harvest_bench`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use virtio_mig_core::dirty_bitmap::{harvest, HarvestRange};

const BYTES: usize = 32 << 20;
const WORDS: usize = BYTES / 8;
const ROUNDS: u32 = 10;

fn best<F: FnMut()>(mut f: F) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let src = vec![0xa5u8; BYTES];
    let mut dst = vec![0u8; BYTES];
    let memcpy = best(|| {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    });

    let words: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
    let range = HarvestRange {
        iova: 0,
        length: (WORDS as u64) * 64 * 4096,
        page_shift: 12,
        gra_shift: 12,
    };
    println!("memcpy 32 MiB: {memcpy:?}");
    for (name, every, pattern) in [
        ("clean", 0usize, 0u64),
        ("sparse (1 word in 512)", 512, 1u64 << 17),
        ("dense (every bit)", 1, u64::MAX),
        ("scattered (every other bit)", 1, 0x5555_5555_5555_5555),
    ] {
        let mut runs = 0u64;
        // Re-dirty before each round; time the harvest alone.
        let mut harvest_only = Duration::MAX;
        for _ in 0..ROUNDS {
            if every != 0 {
                for w in words.iter().step_by(every) {
                    w.store(pattern, Ordering::Relaxed);
                }
            }
            let t = Instant::now();
            let stats = harvest(&words, &range, |a, l| {
                black_box((a, l));
            })
            .unwrap_or_default();
            harvest_only = harvest_only.min(t.elapsed());
            runs = stats.runs;
        }
        println!(
            "{name:28} harvest {harvest_only:>12?}  runs {runs:>9}  ratio to memcpy {:.2}",
            harvest_only.as_secs_f64() / memcpy.as_secs_f64()
        );
    }
}
