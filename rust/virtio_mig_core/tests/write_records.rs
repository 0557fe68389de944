// SPDX-License-Identifier: GPL-2.0
//! Tests of the driver side of write recording, against naive models and a
//! host-side model of the recording device speaking the admin protocol.

use std::collections::BTreeSet;

use proptest::prelude::*;
use virtio_mig_core::admin::*;
use virtio_mig_core::dirty_bitmap::DirtySink;
use virtio_mig_core::write_records::*;

fn r(start: u64, last: u64) -> IovaRange {
    IovaRange { start, last }
}

fn se(iova: u64, page_count: u64) -> StartEntry {
    StartEntry { iova, page_count }
}

/// A sink that keeps every call.
#[derive(Default)]
struct Recorder {
    ranges: Vec<(u64, u64)>,
    pages: Vec<(u64, u64)>,
    flushes: usize,
}

impl DirtySink for Recorder {
    fn set_range(&mut self, iova: u64, len: u64) {
        self.ranges.push((iova, len));
    }
    fn set_pages(&mut self, iova: u64, bits: u64) {
        self.pages.push((iova, bits));
    }
    fn flush(&mut self) {
        self.flushes += 1;
    }
}

// ---------------------------------------------------------------------------
// choose_page_size
// ---------------------------------------------------------------------------

#[test]
fn choose_page_size_cases() {
    // 4K | 64K | 2M.
    let b = (1 << 0) | (1 << 4) | (1 << 9);
    assert_eq!(choose_page_size(b, 4096), Some(4096));
    assert_eq!(choose_page_size(b, 65536), Some(65536));
    assert_eq!(choose_page_size(b, 2 << 20), Some(2 << 20));
    // Finer is preferred.
    assert_eq!(choose_page_size(b, 16384), Some(4096));
    assert_eq!(choose_page_size(b, 1 << 20), Some(65536));
    assert_eq!(choose_page_size(b, 1 << 30), Some(2 << 20));
    assert_eq!(choose_page_size(b, 1 << 63), Some(2 << 20));
    // Coarser only when nothing finer exists.
    assert_eq!(choose_page_size(0b10, 4096), Some(8192));
    assert_eq!(choose_page_size(1 << 31, 4096), Some(1 << 43));
    assert_eq!(choose_page_size(1 << 31, 1 << 42), Some(1 << 43));
    assert_eq!(choose_page_size(1 << 31, 1 << 44), Some(1 << 43));
    assert_eq!(choose_page_size(u32::MAX, 1 << 43), Some(1 << 43));
    // Refused.
    assert_eq!(choose_page_size(0, 4096), None);
    assert_eq!(choose_page_size(b, 2048), None);
    assert_eq!(choose_page_size(b, 0), None);
    assert_eq!(choose_page_size(b, 4097), None);
    assert_eq!(choose_page_size(b, 3 << 12), None);
}

fn choose_model(bitmap: u32, requested: u64) -> Option<u64> {
    if bitmap == 0 || !requested.is_power_of_two() || requested < 4096 {
        return None;
    }
    let sizes: Vec<u64> = (0..32)
        .filter(|n| bitmap & (1 << n) != 0)
        .map(|n| 4096u64 << n)
        .collect();
    if sizes.contains(&requested) {
        return Some(requested);
    }
    sizes
        .iter()
        .copied()
        .filter(|&s| s < requested)
        .max()
        .or_else(|| sizes.iter().copied().filter(|&s| s > requested).min())
}

proptest! {
    #[test]
    fn prop_choose_page_size(bitmap: u32, shift in 0u32..64, odd: bool, v: u64) {
        let requested = if odd { v } else { 1u64 << shift };
        let got = choose_page_size(bitmap, requested);
        prop_assert_eq!(got, choose_model(bitmap, requested));
        if let Some(p) = got {
            // Supported, and finer than asked whenever anything finer exists.
            prop_assert!(p.is_power_of_two() && p >= 4096);
            prop_assert!(bitmap & (1 << (p.trailing_zeros() - 12)) != 0);
            let caps = WriteRecordCaps { page_size_bitmap: bitmap, max_ranges: 1, record_capacity: 0 };
            prop_assert!(caps.supports_page_size(p));
            if p > requested {
                prop_assert!(caps.page_sizes().all(|s| s > requested));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// combine_ranges
// ---------------------------------------------------------------------------

#[test]
fn combine_ranges_cases() {
    // Gaps: 10, 2, 5, 2 (first of the two smallest merged first).
    let input = [r(0, 9), r(20, 29), r(32, 39), r(45, 49), r(52, 60)];
    let mut v = input;
    assert_eq!(combine_ranges(&mut v, 5), 5);
    assert_eq!(v, input);
    assert_eq!(combine_ranges(&mut v, 9), 5);
    let mut v = input;
    assert_eq!(combine_ranges(&mut v, 4), 4);
    assert_eq!(v[..4], [r(0, 9), r(20, 39), r(45, 49), r(52, 60)]);
    let mut v = input;
    assert_eq!(combine_ranges(&mut v, 3), 3);
    assert_eq!(v[..3], [r(0, 9), r(20, 39), r(45, 60)]);
    let mut v = input;
    assert_eq!(combine_ranges(&mut v, 2), 2);
    assert_eq!(v[..2], [r(0, 9), r(20, 60)]);
    let mut v = input;
    assert_eq!(combine_ranges(&mut v, 1), 1);
    assert_eq!(v[0], r(0, 60));
    let mut v = input;
    assert_eq!(combine_ranges(&mut v, 0), 1);
    assert_eq!(v[0], r(0, 60));
    assert_eq!(combine_ranges(&mut [], 0), 0);
    let mut one = [r(5, 5)];
    assert_eq!(combine_ranges(&mut one, 0), 1);
    assert_eq!(one, [r(5, 5)]);
    // Extreme gaps.
    let mut v = [r(0, 0), r(u64::MAX, u64::MAX)];
    assert_eq!(combine_ranges(&mut v, 1), 1);
    assert_eq!(v[0], r(0, u64::MAX));
    // Unsorted and overlapping input does not panic.
    let mut v = [r(100, 200), r(0, 300), r(50, 10), r(7, 7)];
    let n = combine_ranges(&mut v, 2);
    assert!(n <= 2);
}

/// Linux's `vfio_combine_iova_ranges`, with a vector.
fn combine_model(mut v: Vec<IovaRange>, max: usize) -> Vec<IovaRange> {
    let max = max.max(1);
    if max == 1 && !v.is_empty() {
        return vec![r(v[0].start, v[v.len() - 1].last)];
    }
    while v.len() > max {
        let mut best: Option<(u64, usize)> = None;
        for i in 1..v.len() {
            let gap = v[i].start - v[i - 1].last;
            match best {
                Some((g, _)) if g <= gap => {}
                _ => best = Some((gap, i)),
            }
        }
        let i = best.unwrap().1;
        v[i - 1].last = v[i].last;
        v.remove(i);
    }
    v
}

/// Sorted, disjoint ranges from arbitrary (gap, length) pairs.
fn ranges_from(base: u64, parts: &[(u64, u64)]) -> Vec<IovaRange> {
    let mut v = Vec::new();
    let mut at = base;
    for &(gap, len) in parts {
        let Some(start) = at.checked_add(gap) else {
            break;
        };
        let Some(last) = start.checked_add(len) else {
            break;
        };
        v.push(r(start, last));
        let Some(next) = last.checked_add(1) else {
            break;
        };
        at = next;
    }
    v
}

fn covers(out: &[IovaRange], x: &IovaRange) -> bool {
    out.iter().any(|o| o.start <= x.start && x.last <= o.last)
}

fn sorted_disjoint(v: &[IovaRange]) -> bool {
    v.iter().all(|x| x.start <= x.last) && v.windows(2).all(|w| w[0].last < w[1].start)
}

fn parts() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec(
        prop_oneof![
            (0u64..3, 0u64..3),
            (0u64..0x10_0000, 0u64..0x10_0000),
            (any::<u64>(), any::<u64>()),
        ],
        0..24,
    )
}

proptest! {
    #[test]
    fn prop_combine_ranges(base: u64, p in parts(), max in 0usize..30) {
        let input = ranges_from(base % (1 << 40), &p);
        let mut v = input.clone();
        let n = combine_ranges(&mut v, max);
        let out = &v[..n];
        prop_assert!(n <= max.max(1));
        prop_assert_eq!(n, input.len().min(max.max(1)));
        prop_assert!(sorted_disjoint(out));
        for x in &input {
            prop_assert!(covers(out, x), "{:?} not covered by {:?}", x, out);
        }
        // Exactly what Linux computes.
        prop_assert_eq!(out.to_vec(), combine_model(input.clone(), max));
        // Every output starts and ends where an input does.
        for o in out {
            prop_assert!(input.iter().any(|x| x.start == o.start));
            prop_assert!(input.iter().any(|x| x.last == o.last));
        }
    }

    #[test]
    fn prop_combine_never_panics(v in prop::collection::vec((any::<u64>(), any::<u64>()), 0..20), max: usize) {
        let mut v: Vec<IovaRange> = v.into_iter().map(|(s, l)| r(s, l)).collect();
        let n = combine_ranges(&mut v, max);
        prop_assert!(n <= v.len() && n <= max.max(1));
    }
}

// ---------------------------------------------------------------------------
// align_ranges, prepare_ranges, start_entry
// ---------------------------------------------------------------------------

#[test]
fn align_ranges_cases() {
    let mut v = [
        r(0x1001, 0x1001),
        r(0x1fff, 0x2000),
        r(0x5000, 0x5fff),
        r(0x7123, 0x9000),
    ];
    assert_eq!(align_ranges(&mut v, 4096), Ok(3));
    // The first two now overlap (0x1000..0x1fff, 0x1000..0x2fff) and merge.
    assert_eq!(
        v[..3],
        [r(0x1000, 0x2fff), r(0x5000, 0x5fff), r(0x7000, 0x9fff)]
    );
    // Touching after alignment merges too.
    let mut v = [r(0x1000, 0x1800), r(0x2100, 0x2100)];
    assert_eq!(align_ranges(&mut v, 4096), Ok(1));
    assert_eq!(v[0], r(0x1000, 0x2fff));
    // Coarser pages merge more.
    // [0, 0xffff] and [0x10000, 0x1ffff] touch, so they merge.
    let mut v = [r(0x1000, 0x1fff), r(0x5000, 0x5fff), r(0x1_1000, 0x1_1000)];
    assert_eq!(align_ranges(&mut v, 0x1_0000), Ok(1));
    assert_eq!(v[0], r(0, 0x1_ffff));
    // Page size 1 changes nothing.
    let mut v = [r(3, 5), r(7, 7)];
    assert_eq!(align_ranges(&mut v, 1), Ok(2));
    assert_eq!(v, [r(3, 5), r(7, 7)]);
    // Just below the top page.
    let mut v = [r(u64::MAX - 0x1fff, u64::MAX - 0x1000)];
    assert_eq!(align_ranges(&mut v, 4096), Ok(1));
    assert_eq!(v[0], r(u64::MAX - 0x1fff, u64::MAX - 0x1000));
    assert_eq!(align_ranges(&mut [], 4096), Ok(0));
}

#[test]
fn align_ranges_errors_leave_ranges_unchanged() {
    let input = [r(0x1000, 0x1fff), r(0x3000, 0x2fff)];
    let mut v = input;
    assert_eq!(align_ranges(&mut v, 4096), Err(RangeError::Inverted(1)));
    assert_eq!(v, input);
    let input = [r(0x1000, 0x1fff), r(0x1fff, 0x2fff)];
    let mut v = input;
    assert_eq!(align_ranges(&mut v, 4096), Err(RangeError::Unordered(1)));
    assert_eq!(v, input);
    let input = [r(0x5000, 0x5fff), r(0x1000, 0x1fff)];
    let mut v = input;
    assert_eq!(align_ranges(&mut v, 4096), Err(RangeError::Unordered(1)));
    assert_eq!(v, input);
    let input = [r(0x1234, 0x1fff), r(u64::MAX - 0x800, u64::MAX - 0x800)];
    let mut v = input;
    assert_eq!(align_ranges(&mut v, 4096), Err(RangeError::Overflow(1)));
    assert_eq!(v, input);
    let mut v = [r(u64::MAX, u64::MAX)];
    assert_eq!(align_ranges(&mut v, 1), Err(RangeError::Overflow(0)));
    for bad in [0, 3, 4097, u64::MAX] {
        let mut v = [r(0, 1)];
        assert_eq!(align_ranges(&mut v, bad), Err(RangeError::BadPageSize(bad)));
        assert_eq!(v, [r(0, 1)]);
    }
    assert_eq!(check_ranges(&[r(0, 0), r(1, 1)]), Ok(()));
    assert_eq!(check_ranges(&[r(1, 0)]), Err(RangeError::Inverted(0)));
    assert_eq!(
        RangeError::Overflow(2).to_string(),
        "range 2 reaches the end of the address space"
    );
}

#[test]
fn prepare_ranges_cases() {
    let input = [
        r(0x1001, 0x1001),
        r(0x10_0000, 0x10_0fff),
        r(0x10_3000, 0x10_3000),
    ];
    let mut v = input;
    assert_eq!(prepare_ranges(&mut v, 2, 4096), Ok(2));
    assert_eq!(v[..2], [r(0x1000, 0x1fff), r(0x10_0000, 0x10_3fff)]);
    let mut v = input;
    assert_eq!(prepare_ranges(&mut v, 1, 1 << 21), Ok(1));
    assert_eq!(v[0], r(0, 0x1f_ffff));
    let input = [r(0x1000, 0x1fff), r(u64::MAX - 10, u64::MAX - 5)];
    let mut v = input;
    assert_eq!(
        prepare_ranges(&mut v, 1, 4096),
        Err(RangeError::Overflow(1))
    );
    assert_eq!(v, input);
    let mut v = input;
    assert_eq!(
        prepare_ranges(&mut v, 1, 4095),
        Err(RangeError::BadPageSize(4095))
    );
    let input = [r(5, 4)];
    let mut v = input;
    assert_eq!(
        prepare_ranges(&mut v, 1, 4096),
        Err(RangeError::Inverted(0))
    );
}

#[test]
fn start_entry_cases() {
    assert_eq!(
        start_entry(&r(0x1000, 0x3fff), 4096),
        StartEntry {
            iova: 0x1000,
            page_count: 3
        }
    );
    assert_eq!(
        start_entry(&r(0, u64::MAX - 4096), 4096),
        StartEntry {
            iova: 0,
            page_count: (1 << 52) - 1
        }
    );
    assert_eq!(start_entry(&r(0, u64::MAX), 1 << 63).page_count, 2);
    // Never panics on bad input.
    assert_eq!(start_entry(&r(10, 5), 4096).page_count, 1);
    assert_eq!(start_entry(&r(0, 9), 0).page_count, 10);
}

fn aligned_union_model(input: &[IovaRange], ps: u64) -> Vec<IovaRange> {
    let mut out: Vec<IovaRange> = Vec::new();
    for x in input {
        let a = r(x.start / ps * ps, x.last / ps * ps + (ps - 1));
        match out.last_mut() {
            Some(l) if a.start <= l.last + 1 => l.last = l.last.max(a.last),
            _ => out.push(a),
        }
    }
    out
}

proptest! {
    #[test]
    fn prop_align_ranges(base in 0u64..(1 << 50), p in prop::collection::vec((0u64..0x4_0000, 0u64..0x4_0000), 0..24), shift in 0u32..24) {
        let ps = 1u64 << shift;
        let input = ranges_from(base, &p);
        let mut v = input.clone();
        let n = align_ranges(&mut v, ps).unwrap();
        let out = &v[..n];
        prop_assert!(n <= input.len());
        prop_assert!(out.windows(2).all(|w| w[0].last + 1 < w[1].start), "touching or unsorted {:?}", out);
        for o in out {
            prop_assert!(o.start % ps == 0 && (o.last + 1) % ps == 0);
            prop_assert!(o.start <= o.last);
        }
        for x in &input {
            prop_assert!(covers(out, x));
        }
        prop_assert_eq!(out.to_vec(), aligned_union_model(&input, ps));
        // The START it makes is valid.
        if n > 0 && shift >= 12 {
            let caps = WriteRecordCaps { page_size_bitmap: 1 << (shift - 12), max_ranges: n as u32, record_capacity: 1 };
            let entries: Vec<StartEntry> = out.iter().map(|o| start_entry(o, ps)).collect();
            for (e, o) in entries.iter().zip(out) {
                prop_assert_eq!(e.iova, o.start);
                prop_assert_eq!(e.page_count * ps - 1, o.last - o.start);
            }
            prop_assert_eq!(validate_start(ps, entries.iter().copied(), &caps), Ok(()));
        }
    }

    #[test]
    fn prop_prepare_ranges_make_a_valid_start(base: u64, p in parts(), max in 1u32..8, shift in 12u32..30) {
        let ps = 1u64 << shift;
        let input = ranges_from(base, &p);
        let mut v = input.clone();
        match prepare_ranges(&mut v, max as usize, ps) {
            Ok(n) => {
                let out = &v[..n];
                prop_assert!(n <= max as usize);
                for x in &input {
                    prop_assert!(covers(out, x));
                }
                if n > 0 {
                    let caps = WriteRecordCaps { page_size_bitmap: 1 << (shift - 12), max_ranges: max, record_capacity: 1 };
                    let entries: Vec<StartEntry> = out.iter().map(|o| start_entry(o, ps)).collect();
                    let mut buf = vec![0u8; start_len(n).unwrap()];
                    encode_start(ps, &entries, &mut buf).unwrap();
                    let (pps, it) = parse_start(&buf).unwrap();
                    prop_assert_eq!(validate_start(pps, it, &caps), Ok(()));
                }
            }
            Err(RangeError::Overflow(i)) => {
                prop_assert!(input[i].last | (ps - 1) == u64::MAX);
                prop_assert_eq!(v, input);
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    #[test]
    fn prop_align_never_panics(v in prop::collection::vec((any::<u64>(), any::<u64>()), 0..20), ps: u64) {
        let mut v: Vec<IovaRange> = v.into_iter().map(|(s, l)| r(s, l)).collect();
        let before = v.clone();
        match align_ranges(&mut v, ps) {
            Ok(n) => prop_assert!(n <= v.len()),
            Err(_) => prop_assert_eq!(v, before),
        }
    }
}

// ---------------------------------------------------------------------------
// apply_records, read_budget
// ---------------------------------------------------------------------------

#[test]
fn apply_records_clips_to_the_window() {
    let mut s = Recorder::default();
    // Window [0x1800, 0x5400): the first and last pages are clipped.
    let n = apply_records(
        [0x1000, 0x2000, 0x5000, 0x3000],
        4096,
        0x1800,
        0x3c00,
        &mut s,
    );
    assert_eq!(n, Ok(4));
    assert_eq!(
        s.ranges,
        [
            (0x1800, 0x800),
            (0x2000, 0x1000),
            (0x5000, 0x400),
            (0x3000, 0x1000)
        ]
    );
    assert!(s.pages.is_empty());
    assert_eq!(s.flushes, 0);
    // A page larger than the window, clipped at both ends.
    let mut s = Recorder::default();
    assert_eq!(
        apply_records([0x1_0000], 0x1_0000, 0x1_2345, 0x10, &mut s),
        Ok(1)
    );
    assert_eq!(s.ranges, [(0x1_2345, 0x10)]);
    // Nothing to apply.
    let mut s = Recorder::default();
    assert_eq!(apply_records([], 4096, 0, 0, &mut s), Ok(0));
    assert!(s.ranges.is_empty());
}

#[test]
fn apply_records_top_of_the_address_space() {
    let top = u64::MAX - 0xfff;
    // A window ending at 2^64.
    let mut s = Recorder::default();
    assert_eq!(apply_records([top], 4096, top, 0x1000, &mut s), Ok(1));
    assert_eq!(s.ranges, [(top, 0x1000)]);
    let mut s = Recorder::default();
    assert_eq!(apply_records([top], 4096, u64::MAX, 1, &mut s), Ok(1));
    assert_eq!(s.ranges, [(u64::MAX, 1)]);
    // A window ending just below, and a huge page.
    let mut s = Recorder::default();
    assert_eq!(
        apply_records([top], 4096, top - 0x1000, 0x1800, &mut s),
        Ok(1)
    );
    assert_eq!(s.ranges, [(top, 0x800)]);
    let mut s = Recorder::default();
    assert_eq!(
        apply_records([1 << 63], 1 << 63, 0, u64::MAX, &mut s),
        Ok(1)
    );
    assert_eq!(s.ranges, [(1 << 63, (1 << 63) - 1)]);
    let mut s = Recorder::default();
    assert_eq!(
        apply_records([0, 1 << 63], 1 << 63, 1, u64::MAX, &mut s),
        Ok(2)
    );
    assert_eq!(s.ranges, [(1, (1 << 63) - 1), (1 << 63, 1 << 63)]);
    // Beyond 2^64.
    let mut s = Recorder::default();
    assert_eq!(
        apply_records([top], 4096, top, 0x1001, &mut s),
        Err(RecordFault::BadWindow)
    );
    assert_eq!(
        apply_records([], 4096, 2, u64::MAX, &mut s),
        Err(RecordFault::BadWindow)
    );
    assert_eq!(apply_records([], 4096, 1, u64::MAX, &mut s), Ok(0));
    assert!(s.ranges.is_empty());
}

#[test]
fn apply_records_faults() {
    // Records before the fault are applied; none after.
    let mut s = Recorder::default();
    assert_eq!(
        apply_records([0x2000, 0x2800, 0x3000], 4096, 0x2000, 0x2000, &mut s),
        Err(RecordFault::Misaligned(0x2800))
    );
    assert_eq!(s.ranges, [(0x2000, 0x1000)]);
    let mut s = Recorder::default();
    assert_eq!(
        apply_records([0x3000, 0x4000, 0x2000], 4096, 0x2000, 0x2000, &mut s),
        Err(RecordFault::OutsideWindow(0x4000))
    );
    assert_eq!(s.ranges, [(0x3000, 0x1000)]);
    // The page just before the window does not overlap it.
    let mut s = Recorder::default();
    assert_eq!(
        apply_records([0x1000], 4096, 0x2000, 0x1000, &mut s),
        Err(RecordFault::OutsideWindow(0x1000))
    );
    // Aligned to 4 KiB but not to the page size.
    assert_eq!(
        apply_records([0x1000], 8192, 0, 0x10000, &mut s),
        Err(RecordFault::Misaligned(0x1000))
    );
    // Empty window: every record is outside.
    assert_eq!(
        apply_records([0x1000], 4096, 0x1000, 0, &mut s),
        Err(RecordFault::OutsideWindow(0x1000))
    );
    for bad in [0, 3, 4095] {
        assert_eq!(
            apply_records([0], bad, 0, 1, &mut s),
            Err(RecordFault::BadPageSize(bad))
        );
    }
    assert!(s.ranges.is_empty());
    assert_eq!(
        RecordFault::Misaligned(0x10).to_string(),
        "record 0x10 misaligned"
    );
}

#[test]
fn read_budget_values() {
    assert_eq!(read_budget(0, 1), 2);
    assert_eq!(read_budget(0, 0), 2);
    assert_eq!(read_budget(1, 510), 3);
    assert_eq!(read_budget(510, 510), 3);
    assert_eq!(read_budget(511, 510), 4);
    assert_eq!(read_budget(65536, 510), 131);
    assert_eq!(read_budget(10, 0), 12);
    assert_eq!(read_budget(u32::MAX, 1), u32::MAX);
    assert_eq!(read_budget(u32::MAX, 0), u32::MAX);
    assert_eq!(read_budget(u32::MAX - 2, 1), u32::MAX);
    assert_eq!(read_budget(u32::MAX - 3, 1), u32::MAX - 1);
    assert_eq!(read_budget(7, usize::MAX), 3);
}

proptest! {
    #[test]
    fn prop_read_budget(cap: u32, per in 0usize..100_000) {
        let b = u64::from(read_budget(cap, per));
        let p = per.max(1) as u64;
        prop_assert!(b >= 2);
        prop_assert_eq!(b, (u64::from(cap).div_ceil(p) + 2).min(u64::from(u32::MAX)));
        // Enough to drain a full store.
        prop_assert!(b.saturating_sub(2) * p >= u64::from(cap) || b == u64::from(u32::MAX));
    }

    #[test]
    fn prop_apply_records_exact(
        page_shift in 12u32..20,
        window_start in any::<u64>(),
        window_len in any::<u64>(),
        recs in prop::collection::vec(any::<u64>(), 0..20),
        near in any::<bool>(),
    ) {
        let ps = 1u64 << page_shift;
        // Records mostly near the window, so most are valid.
        let recs: Vec<u64> = recs
            .iter()
            .map(|&x| if near { window_start.wrapping_add(x % (window_len.max(1).saturating_add(2 * ps))).wrapping_sub(ps) & !(ps - 1) } else { x })
            .collect();
        let mut s = Recorder::default();
        let got = apply_records(recs.iter().copied(), ps, window_start, window_len, &mut s);
        let wend = u128::from(window_start) + u128::from(window_len);
        if wend > 1u128 << 64 {
            prop_assert_eq!(got, Err(RecordFault::BadWindow));
            prop_assert!(s.ranges.is_empty());
            return Ok(());
        }
        // Model in 128-bit arithmetic.
        let mut want = Vec::new();
        let mut fault = None;
        for &rec in &recs {
            if rec % ps != 0 {
                fault = Some(RecordFault::Misaligned(rec));
                break;
            }
            let (ps0, pe) = (u128::from(rec), u128::from(rec) + u128::from(ps));
            let (s0, e0) = (ps0.max(u128::from(window_start)), pe.min(wend));
            if s0 >= e0 {
                fault = Some(RecordFault::OutsideWindow(rec));
                break;
            }
            want.push((s0 as u64, (e0 - s0) as u64));
        }
        prop_assert_eq!(&s.ranges, &want);
        match fault {
            Some(f) => prop_assert_eq!(got, Err(f)),
            None => prop_assert_eq!(got, Ok(recs.len() as u64)),
        }
    }
}

#[test]
fn plan_report_cases() {
    let p = |s, l, ps| plan_report(s, l, ps).unwrap();
    let plan = |read, head, tail| ReportPlan { read, head, tail };
    // Aligned: everything is read.
    assert_eq!(
        p(0x1000, 0x3000, 4096),
        plan(Some(r(0x1000, 0x3fff)), None, None)
    );
    assert_eq!(
        p(0x1000, 0x3000, 4096).read_request(),
        Some((0x1000, 0x3000))
    );
    // Both ends straddle.
    let x = p(0x1800, 0x3000, 4096);
    assert_eq!(
        x,
        plan(
            Some(r(0x2000, 0x3fff)),
            Some(r(0x1800, 0x1fff)),
            Some(r(0x4000, 0x47ff))
        )
    );
    let mut s = Recorder::default();
    x.report_edges(&mut s);
    assert_eq!(s.ranges, [(0x1800, 0x800), (0x4000, 0x800)]);
    assert_eq!(s.flushes, 0);
    // Two straddling pages, nothing whole.
    assert_eq!(
        p(0x1800, 0x1000, 4096),
        plan(None, Some(r(0x1800, 0x1fff)), Some(r(0x2000, 0x27ff)))
    );
    // Inside one page: head only, or tail only when it starts aligned.
    assert_eq!(
        p(0x1800, 0x10, 4096),
        plan(None, Some(r(0x1800, 0x180f)), None)
    );
    assert_eq!(
        p(0x1800, 0x800, 4096),
        plan(None, Some(r(0x1800, 0x1fff)), None)
    );
    assert_eq!(
        p(0x1000, 0x10, 4096),
        plan(None, None, Some(r(0x1000, 0x100f)))
    );
    assert_eq!(p(0, 1, 4096), plan(None, None, Some(r(0, 0))));
    // The top page is never read.
    let top = u64::MAX - 0xfff;
    assert_eq!(
        p(top, 0x1000, 4096),
        plan(None, None, Some(r(top, u64::MAX)))
    );
    assert_eq!(
        p(top - 0x2000, 0x3000, 4096),
        plan(Some(r(top - 0x2000, top - 1)), None, Some(r(top, u64::MAX)))
    );
    assert_eq!(
        p(top + 8, 0xff8, 4096),
        plan(None, Some(r(top + 8, u64::MAX)), None)
    );
    assert_eq!(p(0, 0, 4096), plan(None, None, None));
    assert_eq!(p(u64::MAX, 0, 4096), plan(None, None, None));
    assert_eq!(plan_report(2, u64::MAX, 4096), Err(RecordFault::BadWindow));
    assert_eq!(plan_report(0, 1, 0), Err(RecordFault::BadPageSize(0)));
    assert_eq!(plan_report(0, 1, 6000), Err(RecordFault::BadPageSize(6000)));
    assert_eq!(
        p(0, u64::MAX, 1),
        plan(Some(r(0, u64::MAX - 1)), None, None)
    );
    assert_eq!(p(0, u64::MAX, 1).read_request(), Some((0, u64::MAX)));
    assert_eq!(
        p(1, u64::MAX, 1),
        plan(Some(r(1, u64::MAX - 1)), None, Some(r(u64::MAX, u64::MAX)))
    );
}

proptest! {
    #[test]
    fn prop_plan_report_partitions_the_window(
        shift in 0u32..63,
        start: u64,
        len: u64,
        small: bool,
    ) {
        let ps = 1u64 << shift;
        let len = if small { len % ps.saturating_mul(4) } else { len };
        let Ok(plan) = plan_report(start, len, ps) else {
            prop_assert!(u128::from(start) + u128::from(len) > 1 << 64);
            return Ok(());
        };
        prop_assert!(u128::from(start) + u128::from(len) <= 1 << 64);
        let parts: Vec<IovaRange> = [plan.head, plan.read, plan.tail].into_iter().flatten().collect();
        if len == 0 {
            prop_assert!(parts.is_empty());
            return Ok(());
        }
        // head, read, tail in order, contiguous, exactly the window.
        prop_assert_eq!(parts[0].start, start);
        prop_assert_eq!(parts[parts.len() - 1].last, start + (len - 1));
        for w in parts.windows(2) {
            prop_assert_eq!(w[0].last + 1, w[1].start);
        }
        for x in &parts {
            prop_assert!(x.start <= x.last);
        }
        // The read part is whole pages, a valid READ window.
        if let Some(rd) = plan.read {
            prop_assert!(rd.start % ps == 0 && (rd.last % ps) == ps - 1);
            let (i, l) = plan.read_request().unwrap();
            prop_assert!(read_window_valid(i, l));
        }
        // Edges lie in one page each, which is not whole in the window
        // (except the top page).
        for e in [plan.head, plan.tail].into_iter().flatten() {
            prop_assert_eq!(e.start & !(ps - 1), e.last & !(ps - 1));
            let whole = e.start % ps == 0 && e.last % ps == ps - 1;
            prop_assert!(!whole || e.last == u64::MAX);
        }
        // Whole pages are read whenever the window holds one below the top.
        let first_whole = u128::from(start).div_ceil(u128::from(ps)) * u128::from(ps);
        let end = u128::from(start) + u128::from(len);
        if first_whole + u128::from(ps) <= end.min((1u128 << 64) - u128::from(ps)) {
            prop_assert!(plan.read.is_some());
        }
    }
}

// ---------------------------------------------------------------------------
// The device model and the driver's report loop
// ---------------------------------------------------------------------------

/// The recording device of the protocol: one member of an owner.
struct Device {
    caps: WriteRecordCaps,
    recording: bool,
    page_size: u64,
    /// Started ranges, `[start, end)`.
    ranges: Vec<(u64, u64)>,
    store: BTreeSet<u64>,
    overflow: bool,
    /// Every page recorded (for the precision check).
    ever: BTreeSet<u64>,
}

/// Writes the status into `w` and returns `used_len`.
fn complete(w: &mut [u8], status: u16, qualifier: u16, result_len: usize) -> u32 {
    Completion { status, qualifier }.encode(w).unwrap();
    (STATUS_LEN + result_len) as u32
}

impl Device {
    fn new(caps: WriteRecordCaps) -> Self {
        Device {
            caps,
            recording: false,
            page_size: 0,
            ranges: Vec::new(),
            store: BTreeSet::new(),
            overflow: false,
            ever: BTreeSet::new(),
        }
    }

    /// Executes one command: readable part in, writable part out.
    fn command(&mut self, readable: &[u8], writable: &mut [u8]) -> u32 {
        let h = Header::parse(readable).unwrap();
        assert_eq!(h.group_type, group_type::SLOT);
        let data = &readable[HEADER_LEN..];
        let inval = |w: &mut [u8], q| complete(w, status::EINVAL, q, 0);
        match h.opcode {
            opcode::WRITE_RECORDS_START => {
                if self.recording {
                    return inval(writable, qualifier::INVALID_COMMAND);
                }
                let Ok((ps, it)) = parse_start(data) else {
                    return inval(writable, qualifier::INVALID_FIELD);
                };
                if validate_start(ps, it.clone(), &self.caps).is_err() {
                    return inval(writable, qualifier::INVALID_FIELD);
                }
                self.page_size = ps;
                self.ranges = it.map(|e| (e.iova, e.iova + e.page_count * ps)).collect();
                self.recording = true;
                self.store.clear();
                self.overflow = false;
                complete(writable, status::OK, qualifier::OK, 0)
            }
            opcode::WRITE_RECORDS_STOP => {
                self.recording = false;
                self.store.clear();
                self.overflow = false;
                complete(writable, status::OK, qualifier::OK, 0)
            }
            opcode::WRITE_RECORDS_READ => {
                if !self.recording {
                    return inval(writable, qualifier::INVALID_COMMAND);
                }
                let Ok((iova, len)) = parse_read_request(data) else {
                    return inval(writable, qualifier::INVALID_FIELD);
                };
                if !read_window_valid(iova, len) {
                    return inval(writable, qualifier::INVALID_FIELD);
                }
                let end = iova + len;
                let first = iova & !(self.page_size - 1);
                let room = max_read_entries(writable.len());
                let hits: Vec<u64> = self.store.range(first..end).copied().collect();
                let taken: Vec<u64> = hits.iter().copied().take(room).collect();
                for p in &taken {
                    self.store.remove(p);
                }
                let mut flags = 0;
                if hits.len() > taken.len() {
                    flags |= READ_FLAG_MORE;
                }
                if self.overflow {
                    flags |= READ_FLAG_OVERFLOW;
                    self.overflow = false;
                }
                let n = encode_read_records(flags, &taken, &mut writable[STATUS_LEN..]).unwrap();
                complete(writable, status::OK, qualifier::OK, n)
            }
            _ => inval(writable, qualifier::INVALID_OPCODE),
        }
    }

    /// A DMA write of the member to `[addr, addr + len)`.
    fn dma_write(&mut self, addr: u64, len: u64) {
        if !self.recording || len == 0 {
            return;
        }
        let ps = self.page_size;
        let last = addr + (len - 1);
        let mut page = addr & !(ps - 1);
        loop {
            let inside = self.ranges.iter().any(|&(s, e)| page >= s && page < e);
            if inside && !self.store.contains(&page) {
                if self.store.len() < self.caps.record_capacity as usize {
                    self.store.insert(page);
                    self.ever.insert(page);
                } else {
                    self.overflow = true;
                }
            }
            match page.checked_add(ps) {
                Some(n) if n <= last => page = n,
                _ => break,
            }
        }
    }
}

/// A sink whose calls carry the time they were made at and their origin.
struct TimedSink<'a> {
    now: u64,
    from_records: bool,
    /// The report window `[start, end)`: nothing may be reported outside.
    window: (u64, u64),
    out: &'a mut Vec<Report>,
}

#[derive(Clone, Copy, Debug)]
struct Report {
    time: u64,
    start: u64,
    end: u64,
    from_records: bool,
}

impl DirtySink for TimedSink<'_> {
    fn set_range(&mut self, iova: u64, len: u64) {
        assert!(len > 0);
        assert!(
            self.window.0 <= iova && iova + len <= self.window.1,
            "[{iova:#x}, +{len:#x}) outside the window {:x?}",
            self.window
        );
        self.out.push(Report {
            time: self.now,
            start: iova,
            end: iova + len,
            from_records: self.from_records,
        });
    }
    fn set_pages(&mut self, _: u64, _: u64) {
        unreachable!("apply_records only calls set_range");
    }
}

/// Subtracts `[s, e)` from the intervals of `v`.
fn subtract(v: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    let mut out = Vec::new();
    for &(a, b) in v.iter() {
        if b <= s || a >= e {
            out.push((a, b));
        } else {
            if a < s {
                out.push((a, s));
            }
            if e < b {
                out.push((e, b));
            }
        }
    }
    *v = out;
}

/// The driver of one member, as the kernel's is meant to be: STARTs the
/// prepared ranges, REPORTs windows with bounded READ loops, and on any
/// doubt reports the window dirty, re-arms, and owes a full report of
/// everything else.
struct Driver {
    user: Vec<IovaRange>,
    page_size: u64,
    entries: Vec<StartEntry>,
    writable_len: usize,
    budget: u32,
    /// Parts of the user ranges to report whole (records were lost).
    owed: Vec<(u64, u64)>,
    reports: Vec<Report>,
    faults: u64,
    /// The reports made, in order.
    done: Vec<Done>,
    exhausted: u64,
    reads: u64,
}

fn header(op: u16) -> Header {
    Header {
        opcode: op,
        group_type: group_type::SLOT,
        member_id: 1,
    }
}

impl Driver {
    fn start(
        dev: &mut Device,
        user: &[IovaRange],
        user_page: u64,
        entries_per_read: usize,
    ) -> Driver {
        let caps = dev.caps;
        let page_size = choose_page_size(caps.page_size_bitmap, user_page).unwrap();
        let mut v = user.to_vec();
        let n = prepare_ranges(&mut v, caps.max_ranges as usize, page_size).unwrap();
        let entries: Vec<StartEntry> = v[..n].iter().map(|x| start_entry(x, page_size)).collect();
        let writable_len = read_writable_len(entries_per_read).unwrap();
        let mut d = Driver {
            user: user.to_vec(),
            page_size,
            entries,
            writable_len,
            budget: read_budget(caps.record_capacity, max_read_entries(writable_len)),
            owed: Vec::new(),
            reports: Vec::new(),
            faults: 0,
            done: Vec::new(),
            exhausted: 0,
            reads: 0,
        };
        d.arm(dev);
        d
    }

    fn simple(&self, dev: &mut Device, op: u16, data: &[u8]) -> Completion {
        let mut readable = vec![0u8; HEADER_LEN + data.len()];
        header(op).encode(&mut readable).unwrap();
        readable[HEADER_LEN..].copy_from_slice(data);
        let mut w = [0u8; STATUS_LEN];
        let used = dev.command(&readable, &mut w);
        parse_completion(&w, used).unwrap().0
    }

    fn arm(&mut self, dev: &mut Device) {
        assert!(self.simple(dev, opcode::WRITE_RECORDS_STOP, &[]).is_ok());
        let mut data = vec![0u8; start_len(self.entries.len()).unwrap()];
        encode_start(self.page_size, &self.entries, &mut data).unwrap();
        assert!(self.simple(dev, opcode::WRITE_RECORDS_START, &data).is_ok());
    }

    fn report_whole(&mut self, now: u64, s: u64, e: u64) {
        self.reports.push(Report {
            time: now,
            start: s,
            end: e,
            from_records: false,
        });
    }

    /// Reports `[iova, iova + len)`; `between` runs before every READ but the
    /// first (the device keeps writing), `clock` is the global time.
    fn report(
        &mut self,
        dev: &mut Device,
        iova: u64,
        len: u64,
        clock: &mut u64,
        between: &mut dyn FnMut(&mut Device, &mut u64),
    ) {
        *clock += 1;
        let begin = *clock;
        self.report_inner(dev, iova, len, clock, between);
        *clock += 1;
        self.done.push(Done {
            begin,
            end: *clock,
            start: iova,
            last: iova + (len - 1),
        });
    }

    fn report_inner(
        &mut self,
        dev: &mut Device,
        iova: u64,
        len: u64,
        clock: &mut u64,
        between: &mut dyn FnMut(&mut Device, &mut u64),
    ) {
        let end = iova + len;
        // What is owed inside the window, whole.
        for (a, b) in self.owed.clone() {
            let (s, e) = (a.max(iova), b.min(end));
            if s < e {
                *clock += 1;
                self.report_whole(*clock, s, e);
            }
        }
        subtract(&mut self.owed, iova, end);

        // Straddling pages are reported, not read; the whole ones are read.
        let plan = plan_report(iova, len, self.page_size).unwrap();
        *clock += 1;
        plan.report_edges(&mut TimedSink {
            now: *clock,
            from_records: false,
            window: (iova, end),
            out: &mut self.reports,
        });
        let Some((read_iova, read_len)) = plan.read_request() else {
            return;
        };
        let mut readable = [0u8; HEADER_LEN + 16];
        header(opcode::WRITE_RECORDS_READ)
            .encode(&mut readable)
            .unwrap();
        encode_read(read_iova, read_len, &mut readable[HEADER_LEN..]).unwrap();
        let mut writable = vec![0u8; self.writable_len];
        let mut reads = 0;
        loop {
            if reads == self.budget {
                self.exhausted += 1;
                *clock += 1;
                self.report_whole(*clock, iova, end);
                return;
            }
            if reads > 0 {
                between(dev, clock);
            }
            reads += 1;
            self.reads += 1;
            writable.fill(0xee);
            let used = dev.command(&readable, &mut writable);
            *clock += 1;
            let Ok((c, result)) = parse_completion(&writable, used) else {
                break;
            };
            let Ok(rr) = ReadRecords::parse(result) else {
                break;
            };
            if !c.is_ok() || rr.overflow() {
                break;
            }
            let mut sink = TimedSink {
                now: *clock,
                from_records: true,
                window: (iova, end),
                out: &mut self.reports,
            };
            if apply_records(rr.iter(), self.page_size, read_iova, read_len, &mut sink).is_err() {
                break;
            }
            if !rr.more() {
                return;
            }
        }
        // Any doubt: the window is reported whole and recording re-armed.
        self.faults += 1;
        *clock += 1;
        self.report_whole(*clock, iova, end);
        // Records and the overflow indication of other windows are lost by
        // the re-arm (and the overflow may concern them anyway).
        self.arm(dev);
        self.owed = self.user.iter().map(|x| (x.start, x.last + 1)).collect();
        subtract(&mut self.owed, iova, end);
    }
}

/// One report call: its window and when it began and returned.
#[derive(Clone, Copy, Debug)]
struct Done {
    begin: u64,
    end: u64,
    start: u64,
    last: u64,
}

/// Where `[s, e)` stops being covered by the union of `ranges` (sorted by
/// start), or `None` if it is covered.
fn uncovered(ranges: &[(u64, u64)], s: u64, e: u64) -> Option<u64> {
    let mut at = s;
    for &(rs, re) in ranges {
        if at >= e {
            break;
        }
        if rs <= at && at < re {
            at = re;
        }
    }
    (at < e).then_some(at)
}

#[derive(Clone, Debug)]
enum Op {
    /// A DMA write at `base + unit % span`, of `1 + len % 0x3000` bytes.
    Write(u64, u64),
    /// A DMA write near the boundary of a report window: `delta - 0x2000`
    /// from the eighth `eighth % 8` of user range `range % n`, of
    /// `1 + len % 0x3000` bytes.
    WriteNear(usize, u8, u64, u64),
    /// A report of part of user range `range % n`: offset and length in
    /// eighths, and the writes done between its READs.
    Report(usize, u8, u8, Vec<(u64, u64)>),
}

#[derive(Debug)]
struct Scenario {
    base: u64,
    user: Vec<IovaRange>,
    user_page: u64,
    caps: WriteRecordCaps,
    entries_per_read: usize,
    ops: Vec<Op>,
}

/// Runs a scenario and checks that every byte written inside the user ranges
/// is covered by a report made at or after the write ("union of reports ⊇
/// pages written"), and that what records report lies in pages the device
/// recorded, inside the window.
fn run(sc: &Scenario) -> Driver {
    let mut dev = Device::new(sc.caps);
    let mut drv = Driver::start(&mut dev, &sc.user, sc.user_page, sc.entries_per_read);
    let mut clock = 0u64;
    let mut writes: Vec<(u64, u64, u64)> = Vec::new();
    let base = sc.base;
    let span = sc.user.last().map_or(1, |x| x.last - base + 0x2_0000);
    let do_write = |dev: &mut Device,
                    clock: &mut u64,
                    writes: &mut Vec<(u64, u64, u64)>,
                    (a, l): (u64, u64)| {
        *clock += 1;
        let addr = base + a % span;
        let len = (1 + l % 0x3000).min(u64::MAX - addr);
        dev.dma_write(addr, len);
        writes.push((*clock, addr, addr + len));
    };
    for op in &sc.ops {
        match op {
            Op::Write(a, l) => do_write(&mut dev, &mut clock, &mut writes, (*a, *l)),
            Op::WriteNear(i, eighth, delta, l) => {
                let u = sc.user[i % sc.user.len()];
                let at = u.start + (u.last - u.start + 1) / 8 * u64::from(eighth % 8);
                let a = (at + delta % 0x4000).saturating_sub(base + 0x2000);
                do_write(&mut dev, &mut clock, &mut writes, (a, *l));
            }
            Op::Report(i, off, len, between) => {
                let u = sc.user[i % sc.user.len()];
                let size = u.last - u.start + 1;
                let s = u.start + size / 8 * u64::from(off % 8);
                let l = (size / 8 * u64::from(len % 8 + 1)).clamp(1, u.last - s + 1);
                let mut it = between.iter().copied();
                let mut pending = Vec::new();
                drv.report(&mut dev, s, l, &mut clock, &mut |dev, clock| {
                    if let Some(w) = it.next() {
                        do_write(dev, clock, &mut pending, w);
                    }
                });
                writes.extend(pending);
            }
        }
    }
    // Final sweep, nothing written meanwhile.
    for u in sc.user.clone() {
        drv.report(
            &mut dev,
            u.start,
            u.last - u.start + 1,
            &mut clock,
            &mut |_, _| {},
        );
    }

    let inside_user = |a: u64, e: u64| {
        sc.user
            .iter()
            .map(move |u| (a.max(u.start), e.min(u.last + 1)))
            .filter(|(s, e)| s < e)
    };
    for &(t, a, e) in &writes {
        // Union of reports made at or after each write ⊇ the bytes it wrote
        // inside the user ranges.
        let mut later: Vec<(u64, u64)> = drv
            .reports
            .iter()
            .filter(|r| r.time >= t)
            .map(|r| (r.start, r.end))
            .collect();
        later.sort();
        for (s, e) in inside_user(a, e) {
            if let Some(at) = uncovered(&later, s, e) {
                panic!(
                    "write [{a:#x}, {e:#x}) at {t} not reported after it from {at:#x}; reports {:?}",
                    drv.reports
                );
            }
        }
        // And in time: when a report of a window begun after the write
        // returns, the write's bytes in the window have been reported since
        // the write (by it or by an earlier report).
        for d in drv.done.iter().filter(|d| d.begin > t) {
            let mut by_then: Vec<(u64, u64)> = drv
                .reports
                .iter()
                .filter(|r| r.time >= t && r.time <= d.end)
                .map(|r| (r.start, r.end))
                .collect();
            by_then.sort();
            for (s, e) in inside_user(a.max(d.start), e.min(d.last + 1)) {
                if let Some(at) = uncovered(&by_then, s, e) {
                    panic!(
                        "write [{a:#x}, {e:#x}) at {t} missing from {at:#x} when {d:?} returned"
                    );
                }
            }
        }
    }
    // Precision: a record reports part of one recorded page.
    let ps = drv.page_size;
    for r in drv.reports.iter().filter(|r| r.from_records) {
        let page = r.start & !(ps - 1);
        assert!(r.end - 1 <= page | (ps - 1), "{r:?} spans pages");
        assert!(
            dev.ever.contains(&page),
            "{r:?}: page {page:#x} never recorded"
        );
    }
    drv
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<bool>(),
        prop::collection::vec((0u64..0x4_0000, 1u64..0x4_0000), 1..6),
        0u32..4,
        1u32..0x20,
        1u32..5,
        prop_oneof![1u32..64, Just(100_000)],
        1usize..9,
        prop::collection::vec(
            prop_oneof![
                2 => (any::<u64>(), any::<u64>()).prop_map(|(a, l)| Op::Write(a, l)),
                2 => (any::<usize>(), any::<u8>(), any::<u64>(), any::<u64>())
                    .prop_map(|(i, e, d, l)| Op::WriteNear(i, e, d, l)),
                1 => (
                    any::<usize>(),
                    any::<u8>(),
                    any::<u8>(),
                    prop::collection::vec((any::<u64>(), any::<u64>()), 0..6)
                )
                    .prop_map(|(i, o, l, b)| Op::Report(i, o, l, b)),
            ],
            0..60,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(high, parts, user_shift, bitmap, max_ranges, capacity, epr, ops, aligned)| {
                let base = if high {
                    (u64::MAX - (1 << 24)) & !0xf_ffff
                } else {
                    0x10_0000
                };
                // Page-aligned user ranges, as QEMU's, or any bytes.
                let parts: Vec<(u64, u64)> = if aligned {
                    parts
                        .iter()
                        .map(|&(g, l)| (g & !0xfff, l | 0xfff))
                        .collect()
                } else {
                    parts
                };
                Scenario {
                    base,
                    user: ranges_from(base, &parts),
                    user_page: 4096 << user_shift,
                    caps: WriteRecordCaps {
                        page_size_bitmap: bitmap,
                        max_ranges,
                        record_capacity: capacity,
                    },
                    entries_per_read: epr,
                    ops,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_union_of_reports_covers_pages_written(sc in scenario()) {
        run(&sc);
    }
}

#[test]
fn scenario_without_doubt_reports_records_and_edges() {
    // Roomy device, no overflow: whole pages are reported from records,
    // exactly the written ones clipped to the window; the pages straddling
    // the window's ends are reported without reading.
    let sc = Scenario {
        base: 0x10_0000,
        user: vec![r(0x10_0000, 0x10_ffff), r(0x20_0800, 0x20_67ff)],
        user_page: 4096,
        caps: WriteRecordCaps {
            page_size_bitmap: 1,
            max_ranges: 8,
            record_capacity: 1000,
        },
        entries_per_read: 2,
        ops: vec![
            Op::Write(0x1000, 0),    // 0x10_1000, 1 byte
            Op::Write(0x3fff, 1),    // 0x10_3fff..0x10_4001: two pages
            Op::Write(0x10_0000, 0), // 0x20_0000: the head's page, never read
            Op::Write(0x10_1000, 0), // 0x20_1000
            Op::Write(0x10_3000, 0), // 0x20_3000
            Op::Write(0x10_4000, 0), // 0x20_4000
            // Two READs of two records: a write to 0x20_2000 in between.
            Op::Report(1, 0, 7, vec![(0x10_2000, 0x0fff)]),
            Op::Write(0x10_2800, 0x7ff), // 0x20_2800..0x20_3000
        ],
    };
    let drv = run(&sc);
    assert_eq!((drv.faults, drv.exhausted), (0, 0));
    let mut from_records: Vec<(u64, u64)> = drv
        .reports
        .iter()
        .filter(|r| r.from_records)
        .map(|r| (r.start, r.end))
        .collect();
    from_records.sort();
    assert_eq!(
        from_records,
        [
            (0x10_1000, 0x10_2000),
            (0x10_3000, 0x10_4000),
            (0x10_4000, 0x10_5000),
            (0x20_1000, 0x20_2000),
            // The concurrent write, then the later one.
            (0x20_2000, 0x20_3000),
            (0x20_2000, 0x20_3000),
            (0x20_3000, 0x20_4000),
            (0x20_4000, 0x20_5000),
        ]
    );
    let edges: Vec<(u64, u64)> = drv
        .reports
        .iter()
        .filter(|r| !r.from_records)
        .map(|r| (r.start, r.end))
        .collect();
    // The report, then the final sweep.
    assert_eq!(
        edges,
        [
            (0x20_0800, 0x20_1000),
            (0x20_6000, 0x20_6800),
            (0x20_0800, 0x20_1000),
            (0x20_6000, 0x20_6800),
        ]
    );
}

#[test]
fn reading_a_straddling_page_would_lose_its_other_part() {
    // Why plan_report does not READ straddling pages: the device clears a
    // record returned for a window that only partly overlaps its page.
    let caps = WriteRecordCaps {
        page_size_bitmap: 1,
        max_ranges: 1,
        record_capacity: 8,
    };
    let mut dev = Device::new(caps);
    let user = [r(0x6c40, 0x7c65)];
    let drv = Driver::start(&mut dev, &user, 4096, 4);
    assert_eq!(drv.entries, [se(0x6000, 2)]);
    dev.dma_write(0x6c40, 1);
    // READ of [0x6e04, 0x6fc8), inside page 0x6000.
    let mut readable = [0u8; HEADER_LEN + 16];
    header(opcode::WRITE_RECORDS_READ)
        .encode(&mut readable)
        .unwrap();
    encode_read(0x6e04, 0x1c4, &mut readable[HEADER_LEN..]).unwrap();
    let mut w = [0u8; 48];
    let used = dev.command(&readable, &mut w);
    let (c, result) = parse_completion(&w, used).unwrap();
    assert!(c.is_ok());
    let rr = ReadRecords::parse(result).unwrap();
    assert_eq!(rr.iter().collect::<Vec<_>>(), [0x6000]);
    // Gone: the write at 0x6c40, outside that window, can no longer be read.
    assert!(dev.store.is_empty());
    // The plan of that window reads nothing and reports it whole instead.
    let plan = plan_report(0x6e04, 0x1c4, 4096).unwrap();
    assert_eq!(plan.read, None);
    assert_eq!(plan.head, Some(r(0x6e04, 0x6fc7)));
    assert_eq!(plan.tail, None);
}

#[test]
fn scenario_straddling_window_regression() {
    // Found by prop_union_of_reports_covers_pages_written before
    // plan_report: a report of part of a page cleared the record of a write
    // to the page's other part.
    let sc = Scenario {
        base: 0x10_0000,
        user: vec![r(0x10_6c40, 0x10_7c65)],
        user_page: 4096,
        caps: WriteRecordCaps {
            page_size_bitmap: 1,
            max_ranges: 1,
            record_capacity: 2,
        },
        entries_per_read: 1,
        ops: vec![
            Op::Write(2513304244057484944, 205484675300854293),
            Op::Report(0, 25, 0, vec![]),
        ],
    };
    let drv = run(&sc);
    assert_eq!(drv.faults, 0);
}

#[test]
fn scenario_overflow_reports_everything_owed() {
    // A store of 2 records overflows on the third page: the next READ, of the
    // first range, says OVERFLOW; that window and the whole second range are
    // then reported.
    let sc = Scenario {
        base: 0,
        user: vec![r(0, 0xffff), r(0x10_0000, 0x10_ffff)],
        user_page: 4096,
        caps: WriteRecordCaps {
            page_size_bitmap: 1,
            max_ranges: 2,
            record_capacity: 2,
        },
        entries_per_read: 4,
        ops: vec![
            Op::Write(0x1000, 0),
            Op::Write(0x2000, 0),
            Op::Write(0x10_5000, 0), // lost
            Op::Report(0, 0, 7, vec![]),
        ],
    };
    let drv = run(&sc);
    assert_eq!(drv.faults, 1);
    let whole: Vec<(u64, u64)> = drv
        .reports
        .iter()
        .filter(|r| !r.from_records)
        .map(|r| (r.start, r.end))
        .collect();
    assert_eq!(whole, [(0, 0x1_0000), (0x10_0000, 0x11_0000)]);
}

#[test]
fn scenario_budget_bounds_a_device_that_keeps_writing() {
    // One record per READ and a write to a new, lower page before every
    // READ: the device returns the new records first and starves the old
    // one at 0x9_0000. The report gives up after read_budget READs and
    // reports the window, which then includes the old write.
    let between: Vec<(u64, u64)> = (0..20).map(|i| (0x1000 * (i + 1), 0)).collect();
    let sc = Scenario {
        base: 0,
        user: vec![r(0, 0xf_ffff)],
        user_page: 4096,
        caps: WriteRecordCaps {
            page_size_bitmap: 1,
            max_ranges: 1,
            record_capacity: 4,
        },
        entries_per_read: 1,
        ops: vec![
            Op::Write(0x8_0000, 0),
            Op::Write(0x9_0000, 0),
            Op::Report(0, 0, 7, between),
        ],
    };
    let drv = run(&sc);
    assert_eq!(drv.budget, 6);
    assert_eq!(drv.exhausted, 1);
    assert_eq!(drv.faults, 0);
    assert!(drv
        .reports
        .iter()
        .any(|r| !r.from_records && (r.start, r.end) == (0, 0x10_0000)));
    // 6 READs in the bounded report, then the final sweep drains the rest.
    assert!(drv.reads > 6);
}
