// SPDX-License-Identifier: GPL-2.0
//! Fuzzes the driver side of write recording with arbitrary ranges.
//!
//! Input: one byte of page shift, one of `max`, then 16-byte (le64, le64)
//! pairs. The pairs are first passed raw to `combine_ranges` and
//! `align_ranges` (which must not panic), then read as (gap, length) steps
//! making sorted, disjoint ranges, which go through `prepare_ranges`,
//! `start_entry` and `validate_start`, and whose first pair is taken as a
//! report window for `plan_report` and `apply_records` of the remaining
//! values as records. Every result is checked against its contract.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_mig_core::admin::{validate_start, StartEntry, WriteRecordCaps};
use virtio_mig_core::dirty_bitmap::DirtySink;
use virtio_mig_core::write_records::{
    align_ranges, apply_records, check_ranges, choose_page_size, combine_ranges, plan_report,
    prepare_ranges, read_budget, start_entry, IovaRange, RangeError, RecordFault,
};

struct Sink {
    start: u64,
    last: u64,
    calls: u64,
}

impl DirtySink for Sink {
    fn set_range(&mut self, iova: u64, len: u64) {
        assert!(len > 0);
        let last = iova.checked_add(len - 1).expect("run overflows");
        assert!(
            self.start <= iova && last <= self.last,
            "run outside the window"
        );
        self.calls += 1;
    }
    fn set_pages(&mut self, _: u64, _: u64) {
        panic!("set_pages is not used");
    }
}

fn covers(out: &[IovaRange], x: &IovaRange) -> bool {
    out.iter().any(|o| o.start <= x.start && x.last <= o.last)
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let [shift, max, rest @ ..] = data else {
        return;
    };
    let page_size = 1u64 << (shift % 64);
    let max = usize::from(*max);
    let pairs: Vec<(u64, u64)> = rest
        .chunks_exact(16)
        .map(|c| (le64(&c[..8]), le64(&c[8..])))
        .take(256)
        .collect();

    // Raw: no panic, and errors leave the ranges alone.
    let mut raw: Vec<IovaRange> = pairs
        .iter()
        .map(|&(start, last)| IovaRange { start, last })
        .collect();
    let n = combine_ranges(&mut raw.clone(), max);
    assert!(n <= raw.len() && n <= max.max(1));
    let before = raw.clone();
    match align_ranges(&mut raw, page_size) {
        Ok(n) => assert!(n <= raw.len()),
        Err(_) => assert_eq!(raw, before),
    }
    let _ = choose_page_size(pairs.first().map_or(0, |p| p.0 as u32), page_size);
    let _ = read_budget(max as u32, n);

    // Sorted, disjoint ranges from (gap, length) steps.
    let mut input = Vec::new();
    let mut at = 0u64;
    for &(gap, len) in &pairs {
        let Some(start) = at.checked_add(gap % (1 << 40)) else {
            break;
        };
        let Some(last) = start.checked_add(len % (1 << 40)) else {
            break;
        };
        input.push(IovaRange { start, last });
        let Some(next) = last.checked_add(1) else {
            break;
        };
        at = next;
    }
    assert_eq!(check_ranges(&input), Ok(()));
    let mut v = input.clone();
    let n = combine_ranges(&mut v, max);
    assert!(n <= max.max(1));
    assert!(v[..n].windows(2).all(|w| w[0].last < w[1].start));
    assert!(input.iter().all(|x| covers(&v[..n], x)));

    let mut v = input.clone();
    match prepare_ranges(&mut v, max, page_size) {
        Ok(n) => {
            let out = &v[..n];
            assert!(n <= max.max(1));
            assert!(input.iter().all(|x| covers(out, x)));
            assert!(out.windows(2).all(|w| w[0].last + 1 < w[1].start));
            for o in out {
                assert!(o.start % page_size == 0 && (o.last - o.start + 1) % page_size == 0);
            }
            if n > 0 && (4096..=1 << 43).contains(&page_size) {
                let caps = WriteRecordCaps {
                    page_size_bitmap: 1 << (page_size.trailing_zeros() - 12),
                    max_ranges: n as u32,
                    record_capacity: 0,
                };
                let e: Vec<StartEntry> = out.iter().map(|o| start_entry(o, page_size)).collect();
                assert_eq!(validate_start(page_size, e, &caps), Ok(()));
            }
        }
        Err(RangeError::Overflow(i)) => {
            assert_eq!(input[i].last | (page_size - 1), u64::MAX);
            assert_eq!(v, input);
        }
        Err(e) => panic!("unexpected {e:?}"),
    }

    // A report window and records.
    let Some(&(ws, wlen)) = pairs.first() else {
        return;
    };
    let records = pairs.iter().skip(1).flat_map(|&(a, b)| [a, b]);
    match plan_report(ws, wlen, page_size) {
        Ok(plan) => {
            let parts: Vec<IovaRange> = [plan.head, plan.read, plan.tail]
                .into_iter()
                .flatten()
                .collect();
            if let (Some(first), Some(last)) = (parts.first(), parts.last()) {
                assert_eq!(first.start, ws);
                assert_eq!(last.last, ws + (wlen - 1));
                assert!(parts.windows(2).all(|w| w[0].last + 1 == w[1].start));
            } else {
                assert_eq!(wlen, 0);
            }
            let mut sink = Sink {
                start: ws,
                last: ws.wrapping_add(wlen.wrapping_sub(1)),
                calls: 0,
            };
            if wlen > 0 {
                plan.report_edges(&mut sink);
            }
            if let Some((ri, rl)) = plan.read_request() {
                assert!(ri % page_size == 0 && rl % page_size == 0);
                let mut sink = Sink {
                    start: ri,
                    last: ri + (rl - 1),
                    calls: 0,
                };
                match apply_records(records.clone(), page_size, ri, rl, &mut sink) {
                    Ok(n) => assert_eq!(n, sink.calls),
                    Err(RecordFault::Misaligned(r)) => assert!(r % page_size != 0),
                    Err(RecordFault::OutsideWindow(r)) => {
                        assert!(
                            r % page_size == 0 && (r > ri + (rl - 1) || r + (page_size - 1) < ri)
                        );
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        }
        Err(RecordFault::BadWindow) => assert!(ws.checked_add(wlen.saturating_sub(1)).is_none()),
        Err(e) => panic!("unexpected {e:?}"),
    }
    // Any window, including one ending at 2^64.
    if wlen > 0 {
        if let Some(wl) = ws.checked_add(wlen - 1) {
            let mut sink = Sink {
                start: ws,
                last: wl,
                calls: 0,
            };
            let r = apply_records(records, page_size, ws, wlen, &mut sink);
            if let Ok(n) = r {
                assert_eq!(n, sink.calls);
            }
        }
    }
});
