// SPDX-License-Identifier: GPL-2.0
//! Fuzzes the capability walker with arbitrary config space and BARs.
//!
//! Input layout: 6 little-endian u64 BAR sizes (bit 0 set: an I/O BAR), then
//! the config space bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_mig_core::cap_walker::{is_essential, walk, Bar, BarKind, Bars, VirtioCaps};

fuzz_target!(|data: &[u8]| {
    let mut bars = [Bar::ABSENT; 6];
    let (head, cfg) = data.split_at(data.len().min(48));
    for (i, chunk) in head.chunks_exact(8).enumerate() {
        let raw = u64::from_le_bytes(chunk.try_into().unwrap());
        bars[i] = if raw & 1 != 0 {
            Bar::io(raw)
        } else {
            Bar::memory(raw)
        };
    }
    let mut seen = 0usize;
    if let Ok(caps) = walk(cfg, &bars, |_| seen += 1) {
        check(&caps, &bars);
        assert_eq!(usize::from(caps.num_caps), seen);
    }
});

fn check(caps: &VirtioCaps, bars: &Bars) {
    for (_, region) in caps.regions() {
        if let Some(r) = region {
            let bar = bars[usize::from(r.bar)];
            assert!(bar.kind == BarKind::Memory && bar.size != 0 && r.end() <= bar.size);
        }
    }
    for fault in caps.ignored() {
        assert!(!is_essential(fault.cfg_type));
    }
}
