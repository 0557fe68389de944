// SPDX-License-Identifier: GPL-2.0
//! Tests of dirty bitmap harvesting against a naive model.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use virtio_mig_core::dirty_bitmap::*;

fn bitmap(words: &[u64]) -> Vec<AtomicU64> {
    words.iter().map(|&w| AtomicU64::new(w.to_le())).collect()
}

fn snapshot(b: &[AtomicU64]) -> Vec<u64> {
    b.iter()
        .map(|w| u64::from_le(w.load(Ordering::Relaxed)))
        .collect()
}

fn run(words: &[AtomicU64], r: HarvestRange) -> (Vec<(u64, u64)>, HarvestStats) {
    let mut out = Vec::new();
    let stats = harvest(words, &r, |a, l| out.push((a, l))).unwrap();
    (out, stats)
}

fn range(iova: u64, length: u64, page_shift: u32, gra_shift: u32) -> HarvestRange {
    HarvestRange {
        iova,
        length,
        page_shift,
        gra_shift,
    }
}

#[test]
fn same_granularity_coalesces_runs() {
    // Pages 1, 2, 3, 5 and 64 dirty.
    let b = bitmap(&[0b101110, 1]);
    let (runs, stats) = run(&b, range(0, 128 << 12, 12, 12));
    assert_eq!(
        runs,
        [(1 << 12, 3 << 12), (5 << 12, 1 << 12), (64 << 12, 1 << 12)]
    );
    assert_eq!(stats.words_scanned, 2);
    assert_eq!(stats.words_dirty, 2);
    assert_eq!(stats.runs, 3);
    assert_eq!(snapshot(&b), [0, 0]);
    // A second harvest finds nothing.
    assert_eq!(run(&b, range(0, 128 << 12, 12, 12)).0, []);
}

#[test]
fn runs_cross_word_boundaries() {
    let b = bitmap(&[1 << 63, 1]);
    let (runs, _) = run(&b, range(0, 128 << 12, 12, 12));
    assert_eq!(runs, [(63 << 12, 2 << 12)]);
}

#[test]
fn only_bits_inside_range_are_cleared() {
    let b = bitmap(&[u64::MAX]);
    let (runs, _) = run(&b, range(8 << 12, 8 << 12, 12, 12));
    assert_eq!(runs, [(8 << 12, 8 << 12)]);
    assert_eq!(snapshot(&b), [!0xff00]);
}

#[test]
fn coarse_device_pages_mark_every_user_page() {
    // Device pages of 2 MiB (gra_power 9), user pages 4 KiB.
    let b = bitmap(&[0b10]);
    let (runs, _) = run(&b, range(0, 8 << 21, 12, 21));
    assert_eq!(runs, [(1 << 21, 1 << 21)]);
    // A range starting inside the device page reports and keeps the bit.
    let b = bitmap(&[0b10]);
    let (runs, _) = run(&b, range(3 << 20, 1 << 20, 12, 21));
    assert_eq!(runs, [(3 << 20, 1 << 20)]);
    assert_eq!(snapshot(&b), [0b10]);
}

#[test]
fn fine_device_pages_mark_containing_user_page() {
    // Device pages 4 KiB, user pages 64 KiB: page 17 is in user page 1.
    let b = bitmap(&[1 << 17, 0, 0, 0]);
    let (runs, _) = run(&b, range(0, 1 << 20, 16, 12));
    assert_eq!(runs, [(1 << 16, 1 << 16)]);
    assert_eq!(snapshot(&b), [0; 4]);
}

#[test]
fn beyond_bitmap_is_dirty() {
    let b = bitmap(&[0]);
    let (runs, stats) = run(&b, range(60 << 12, 10 << 12, 12, 12));
    assert_eq!(runs, [(64 << 12, 6 << 12)]);
    assert_eq!(stats.uncovered_bytes, 6 << 12);
    let (runs, _) = run(&[], range(0, 1 << 12, 12, 12));
    assert_eq!(runs, [(0, 1 << 12)]);
}

#[test]
fn errors_and_empty() {
    let b = bitmap(&[u64::MAX]);
    let mut called = false;
    assert_eq!(
        harvest(&b, &range(u64::MAX, 2, 12, 12), |_, _| called = true),
        Err(HarvestError::Overflow)
    );
    assert_eq!(
        harvest(&b, &range(0, 4096, 11, 12), |_, _| called = true),
        Err(HarvestError::BadPageShift(11))
    );
    assert_eq!(
        harvest(&b, &range(0, 4096, 12, 64), |_, _| called = true),
        Err(HarvestError::BadPageShift(64))
    );
    assert_eq!(
        harvest(&b, &range(0, 0, 12, 12), |_, _| called = true),
        Ok(HarvestStats::default())
    );
    assert!(!called);
    assert_eq!(snapshot(&b), [u64::MAX]);
    assert_eq!(
        HarvestError::Overflow.to_string(),
        "iova + length overflows"
    );
}

#[test]
fn top_of_address_space() {
    let b = bitmap(&[u64::MAX]);
    let (runs, _) = run(&b, range(u64::MAX - 0x1fff, 0x1000, 12, 63));
    assert_eq!(runs, [(u64::MAX - 0x1fff, 0x1000)]);
    // The bit also covers memory outside the range: it stays set.
    assert_eq!(snapshot(&b), [u64::MAX]);
    // The last byte of the address space cannot be the end of a range.
    assert_eq!(
        harvest(&b, &range(u64::MAX - 0xfff, 0x1000, 12, 63), |_, _| ()),
        Err(HarvestError::Overflow)
    );
}

#[test]
fn report_all_reports_range() {
    let mut out = Vec::new();
    report_all(&range(0x1000, 0x3000, 12, 12), |a, l| out.push((a, l))).unwrap();
    assert_eq!(out, [(0x1000, 0x3000)]);
    assert_eq!(
        report_all(&range(1, u64::MAX, 12, 12), |_, _| ()),
        Err(HarvestError::Overflow)
    );
}

#[test]
fn bitmap_sizes() {
    assert_eq!(bitmap_bytes(0, 12), Some(0));
    assert_eq!(bitmap_bytes(1, 12), Some(8));
    assert_eq!(bitmap_bytes(64 << 12, 12), Some(8));
    assert_eq!(bitmap_bytes((64 << 12) + 1, 12), Some(16));
    assert_eq!(bitmap_bytes(1 << 40, 12), Some(1 << 25));
    assert_eq!(bitmap_bytes(u64::MAX, 12), Some(1 << 49));
    assert_eq!(bitmap_bytes(1, 11), None);
}

/// User pages touched by the byte range `[s, e)`.
fn user_pages(s: u64, e: u64, ps: u32, out: &mut BTreeSet<u64>) {
    if s < e {
        for p in (s >> ps)..=((e - 1) >> ps) {
            out.insert(p);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matches_naive_model(
        words in proptest::collection::vec(
            prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), (0u32..64).prop_map(|b| 1u64 << b)],
            0..6,
        ),
        gra_shift in 12u32..17,
        page_shift in 12u32..17,
        start_units in 0u64..600,
        len_units in 0u64..600,
        unit_shift in prop_oneof![Just(12u32), Just(10), Just(0)],
    ) {
        let iova = start_units << unit_shift << 2;
        let length = len_units << unit_shift << 2;
        let end = iova + length;
        let b = bitmap(&words);
        let before = words.clone();
        let r = range(iova, length, page_shift, gra_shift);
        let (runs, stats) = run(&b, r);

        // Runs are sorted, disjoint, not adjacent, inside the range.
        let mut prev_end = None;
        for &(a, l) in &runs {
            prop_assert!(l > 0 && a >= iova && a + l <= end);
            if let Some(pe) = prev_end {
                prop_assert!(a > pe);
            }
            prev_end = Some(a + l);
        }
        prop_assert_eq!(stats.runs as usize, runs.len());

        // Same user pages as the model.
        let d = 1u64 << gra_shift;
        let nbits = words.len() as u64 * 64;
        let mut want = BTreeSet::new();
        for n in 0..nbits {
            if before[(n / 64) as usize] >> (n % 64) & 1 == 1 {
                user_pages((n * d).max(iova), ((n + 1) * d).min(end), page_shift, &mut want);
            }
        }
        user_pages((nbits * d).max(iova), end, page_shift, &mut want);
        let mut got = BTreeSet::new();
        for &(a, l) in &runs {
            user_pages(a, a + l, page_shift, &mut got);
        }
        prop_assert_eq!(&got, &want);

        // Bits of device pages entirely inside the range are cleared, no others.
        let after = snapshot(&b);
        for n in 0..nbits {
            let was = before[(n / 64) as usize] >> (n % 64) & 1;
            let now = after[(n / 64) as usize] >> (n % 64) & 1;
            let inside = n * d >= iova && (n + 1) * d <= end;
            prop_assert_eq!(now, if inside { 0 } else { was }, "bit {}", n);
        }
    }
}
