// SPDX-License-Identifier: GPL-2.0
//! Fuzzes the capability walker with arbitrary config space and BAR sizes.
//!
//! Input layout: 6 little-endian u64 BAR sizes, then the config space bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_mig_core::cap_walker::{walk, VirtioCaps};

fuzz_target!(|data: &[u8]| {
    let mut bars = [0u64; 6];
    let (head, cfg) = data.split_at(data.len().min(48));
    for (i, chunk) in head.chunks_exact(8).enumerate() {
        bars[i] = u64::from_le_bytes(chunk.try_into().unwrap());
    }
    let mut seen = 0usize;
    if let Ok(caps) = walk(cfg, &bars, |_| seen += 1) {
        check(&caps, &bars);
        assert_eq!(usize::from(caps.num_caps), seen);
    }
});

fn check(caps: &VirtioCaps, bars: &[u64; 6]) {
    for (_, region) in caps.regions() {
        if let Some(r) = region {
            let size = bars[usize::from(r.bar)];
            assert!(size != 0 && r.end() <= size);
        }
    }
}
