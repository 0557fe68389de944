// SPDX-License-Identifier: GPL-2.0
//! Tests of dirty bitmap harvesting against a naive model.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    let stats = harvest_runs(words, &r, |a, l| out.push((a, l))).unwrap();
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
        harvest_runs(&b, &range(u64::MAX, 2, 12, 12), |_, _| called = true),
        Err(HarvestError::Overflow)
    );
    assert_eq!(
        harvest_runs(&b, &range(0, 4096, 11, 12), |_, _| called = true),
        Err(HarvestError::BadPageShift(11))
    );
    assert_eq!(
        harvest_runs(&b, &range(0, 4096, 12, 64), |_, _| called = true),
        Err(HarvestError::BadPageShift(64))
    );
    assert_eq!(
        harvest_runs(&b, &range(0, 0, 12, 12), |_, _| called = true),
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
        harvest_runs(&b, &range(u64::MAX - 0xfff, 0x1000, 12, 63), |_, _| ()),
        Err(HarvestError::Overflow)
    );
}

#[test]
fn report_all_reports_range() {
    let mut out = Vec::new();
    let r = range(0x1000, 0x3000, 12, 12);
    report_all(&r, &mut RunSink::new(&r, |a, l| out.push((a, l)))).unwrap();
    assert_eq!(out, [(0x1000, 0x3000)]);
    assert_eq!(
        report_all(&range(1, u64::MAX, 12, 12), &mut Calls::default()),
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
            if (before[(n / 64) as usize] >> (n % 64)) & 1 == 1 {
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
            let was = (before[(n / 64) as usize] >> (n % 64)) & 1;
            let now = (after[(n / 64) as usize] >> (n % 64)) & 1;
            let inside = n * d >= iova && (n + 1) * d <= end;
            prop_assert_eq!(now, if inside { 0 } else { was }, "bit {}", n);
        }
    }
}

/// One call a harvest made to its sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Range(u64, u64),
    Pages(u64, u64),
}

/// A sink recording the calls as made.
#[derive(Default)]
struct Calls(Vec<Call>);

impl DirtySink for Calls {
    fn set_range(&mut self, iova: u64, len: u64) {
        self.0.push(Call::Range(iova, len));
    }
    fn set_pages(&mut self, iova: u64, bits: u64) {
        self.0.push(Call::Pages(iova, bits));
    }
}

fn calls(words: &[AtomicU64], r: HarvestRange) -> (Vec<Call>, HarvestStats) {
    let mut sink = Calls::default();
    let stats = harvest(words, &r, &mut sink).unwrap();
    (sink.0, stats)
}

use Call::{Pages, Range};

#[test]
fn same_granularity_hands_over_whole_words() {
    let b = bitmap(&[0xdead_beef_0000_f00d, u64::MAX]);
    let (out, stats) = calls(&b, range(0, 128 << 12, 12, 12));
    assert_eq!(
        out,
        [Pages(0, 0xdead_beef_0000_f00d), Pages(64 << 12, u64::MAX)]
    );
    assert_eq!(stats.words_emitted, 2);
    assert_eq!(stats.runs, 0);
    assert_eq!(snapshot(&b), [0, 0]);
}

#[test]
fn inner_words_keep_their_place() {
    // Dirty words before, inside and after clean cache lines of the bitmap.
    let dirty = [1usize, 9, 10, 17, 30];
    let mut w = vec![0u64; 32];
    for &i in &dirty {
        w[i] = 1 << i;
    }
    let b = bitmap(&w);
    let (out, stats) = calls(&b, range(0, (32 * 64) << 12, 12, 12));
    let want: Vec<Call> = dirty
        .iter()
        .map(|&i| Pages((i as u64 * 64) << 12, 1 << i))
        .collect();
    assert_eq!(out, want);
    assert_eq!(stats.words_scanned, 32);
    assert_eq!(stats.words_dirty, dirty.len() as u64);
    assert_eq!(snapshot(&b), [0; 32]);
}

#[test]
fn words_are_shifted_to_the_range_start() {
    // Pages 3..=7, 40, 66 and 127; the range is pages [3, 103).
    let b = bitmap(&[0b1111_1000 | (1 << 40), (1 << 2) | (1 << 63)]);
    let (out, _) = calls(&b, range(3 << 12, 100 << 12, 12, 12));
    assert_eq!(
        out,
        [Pages(3 << 12, 0b11111 | (1 << 37)), Pages(64 << 12, 1 << 2)]
    );
    assert_eq!(snapshot(&b), [0, 1 << 63]);
    // A start inside a user page: bit 0 is the user page holding it.
    let b = bitmap(&[0b1111_1000]);
    let (out, _) = calls(&b, range(0x3800, 0x2000, 12, 12));
    assert_eq!(out, [Pages(3 << 12, 0b111)]);
    // Pages 3 and 5 straddle the ends: reported, not cleared.
    assert_eq!(snapshot(&b), [0b1110_1000]);
}

#[test]
fn coarse_device_words_are_spread() {
    // 8 KiB device pages: page 1 is user pages 2 and 3, page 40 is 80 and 81.
    let b = bitmap(&[0b10 | (1 << 40)]);
    let (out, stats) = calls(&b, range(0, 64 << 13, 12, 13));
    assert_eq!(out, [Pages(0, 0b1100), Pages(64 << 12, 0b11 << 16)]);
    assert_eq!(stats.words_emitted, 2);
    // 256 KiB device pages (64 user pages): page 1 is one full user word.
    let b = bitmap(&[0b10]);
    let (out, _) = calls(&b, range(0, 64 << 18, 12, 18));
    assert_eq!(out, [Pages(64 << 12, u64::MAX)]);
    // A straddling device page marks only the user pages inside the range.
    let b = bitmap(&[0b10]);
    let (out, _) = calls(&b, range(0x13000, 0x1000 << 7, 12, 16));
    assert_eq!(out, [Pages(0x13 << 12, bit_mask(0x20 - 0x13))]);
    assert_eq!(snapshot(&b), [0b10]);
    // Full inner user words become one merged byte run.
    let b = bitmap(&[0, u64::MAX, u64::MAX, 1]);
    let (out, stats) = calls(&b, range(0, (4 * 64) << 13, 12, 13));
    assert_eq!(out, [Range(64 << 13, 128 << 13), Pages(384 << 12, 0b11)]);
    assert_eq!((stats.runs, stats.words_emitted), (1, 1));
    // 1 MiB device pages (256 user pages): byte runs.
    let b = bitmap(&[0b110]);
    let (out, stats) = calls(&b, range(0, 64 << 20, 12, 20));
    assert_eq!(out, [Range(1 << 20, 2 << 20)]);
    assert_eq!(stats.runs, 1);
}

fn bit_mask(n: u32) -> u64 {
    (1u64 << n) - 1
}

#[test]
fn fine_device_words_are_reduced() {
    // 8 KiB user pages: device pages 2, 3, 5 are user pages 1 and 2, device
    // page 64 is user page 32; both words make one user word.
    let b = bitmap(&[0b10_1100, 1]);
    let (out, stats) = calls(&b, range(0, 128 << 12, 13, 12));
    assert_eq!(out, [Pages(0, 0b110 | (1 << 32))]);
    assert_eq!(stats.words_dirty, 2);
    assert_eq!(stats.words_emitted, 1);
    // 512 KiB user pages (two device words each): words 1 and 3 are user
    // pages 0 and 1; word 300 is user page 150, in the third user word.
    let mut w = vec![0; 301];
    w[1] = 1 << 5;
    w[3] = 1;
    w[300] = 1 << 63;
    let b = bitmap(&w);
    let (out, _) = calls(&b, range(0, 301 << 18, 19, 12));
    assert_eq!(out, [Pages(0, 0b11), Pages(128 << 19, 1 << 22)]);
}

#[test]
fn uncovered_tail_is_a_range() {
    let b = bitmap(&[1 << 63]);
    let (out, stats) = calls(&b, range(0, 70 << 12, 12, 12));
    assert_eq!(out, [Pages(0, 1 << 63), Range(64 << 12, 6 << 12)]);
    assert_eq!(stats.uncovered_bytes, 6 << 12);
}

#[test]
fn run_sink_coalesces_pages_and_ranges() {
    let r = range(0x800, 200 << 12, 12, 12);
    let mut out = Vec::new();
    let mut sink = RunSink::new(&r, |a, l| out.push((a, l)));
    sink.set_pages(0, 0b1011);
    sink.set_pages(64 << 12, 1);
    sink.set_pages(3 << 12, (1 << 60) | (1 << 61));
    sink.set_range(65 << 12, 1 << 12);
    sink.flush();
    assert_eq!(sink.runs(), 3);
    assert_eq!(
        out,
        [(0x800, 0x1800), (3 << 12, 1 << 12), (63 << 12, 3 << 12)]
    );
}

/// The user pages a harvest marked, checking the sink contract on the way.
struct PageMap {
    start: u64,
    end: u64,
    page_shift: u32,
    first_page: u64,
    last_page_excl: u64,
    /// Bit `i`: user page `first_page + i`.
    map: Vec<u64>,
    last_iova: u64,
    pages_calls: u64,
    range_calls: u64,
    errors: Vec<String>,
}

impl PageMap {
    fn new(r: &HarvestRange) -> Self {
        let end = r.iova + r.length;
        let first_page = r.iova >> r.page_shift;
        let last_page_excl = if r.length == 0 {
            first_page
        } else {
            ((end - 1) >> r.page_shift) + 1
        };
        PageMap {
            start: r.iova,
            end,
            page_shift: r.page_shift,
            first_page,
            last_page_excl,
            map: vec![0; (last_page_excl - first_page).div_ceil(64) as usize],
            last_iova: 0,
            pages_calls: 0,
            range_calls: 0,
            errors: Vec::new(),
        }
    }

    fn mark(&mut self, page: u64) {
        let i = page - self.first_page;
        self.map[(i / 64) as usize] |= 1 << (i % 64);
    }

    fn order(&mut self, iova: u64) {
        if iova < self.last_iova {
            self.errors
                .push(format!("{iova:#x} after {:#x}", self.last_iova));
        }
        self.last_iova = iova;
    }
}

impl DirtySink for PageMap {
    fn set_range(&mut self, iova: u64, len: u64) {
        self.range_calls += 1;
        self.order(iova);
        if len == 0 || iova < self.start || iova + len > self.end {
            self.errors.push(format!("range {iova:#x}+{len:#x}"));
            return;
        }
        for p in (iova >> self.page_shift)..=((iova + len - 1) >> self.page_shift) {
            self.mark(p);
        }
    }

    fn set_pages(&mut self, iova: u64, bits: u64) {
        self.pages_calls += 1;
        self.order(iova);
        let page = iova >> self.page_shift;
        if bits == 0 || page << self.page_shift != iova || page < self.first_page {
            self.errors.push(format!("pages {iova:#x} {bits:#x}"));
            return;
        }
        let room = self.last_page_excl.saturating_sub(page);
        if room < 64 && bits >> room != 0 {
            self.errors
                .push(format!("pages {iova:#x} {bits:#x} past the end"));
            return;
        }
        assert!(or_word_at(&mut self.map, page - self.first_page, bits));
    }
}

/// A bitmap word: clean, full, random, one page or every other page.
fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        any::<u64>(),
        (0u32..64).prop_map(|b| 1u64 << b),
        Just(0x5555_5555_5555_5555),
    ]
}

/// Picks an address below `limit`, often aligned to one of `shifts`.
fn pick(x: u64, limit: u64, align: u32) -> u64 {
    (x % limit.max(1)) & !((1u64 << align) - 1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn pages_match_bit_by_bit_model(
        words in prop_oneof![
            proptest::collection::vec(word(), 0..6),
            // Runs of full words long enough to hold full lines wherever the
            // range starts, between single words.
            proptest::collection::vec(
                prop_oneof![
                    Just(vec![u64::MAX; 16]),
                    word().prop_map(|w| vec![w]),
                ],
                0..5,
            )
            .prop_map(|blocks| blocks.concat()),
        ],
        gra_shift in 12u32..=20,
        page_shift in 12u32..=20,
        start in any::<u64>(),
        len in any::<u64>(),
        start_align in prop_oneof![Just(0u32), Just(9), Just(12), Just(16), Just(20)],
        len_align in prop_oneof![Just(0u32), Just(9), Just(12), Just(16), Just(20)],
    ) {
        let nbits = words.len() as u64 * 64;
        let g = gra_shift;
        let span = (nbits + 4) << g;
        let iova = pick(start, span, start_align);
        let length = pick(len, span + (4 << g) - iova, len_align);
        let end = iova + length;
        let r = range(iova, length, page_shift, g);
        let b = bitmap(&words);
        let mut sink = PageMap::new(&r);
        let stats = harvest(&b, &r, &mut sink).unwrap();
        prop_assert!(sink.errors.is_empty(), "{:?}", sink.errors);
        prop_assert_eq!(stats.words_emitted, sink.pages_calls);
        prop_assert_eq!(stats.runs, sink.range_calls);
        prop_assert!(stats.words_dirty <= stats.words_scanned);

        // The model: every dirty device page marks the user pages of its
        // overlap with the range; so does the part beyond the bitmap.
        let mut want = PageMap::new(&r);
        let mut mark = |s: u64, e: u64| {
            if s < e {
                for p in (s >> page_shift)..=((e - 1) >> page_shift) {
                    want.mark(p);
                }
            }
        };
        for n in 0..nbits {
            if (words[(n / 64) as usize] >> (n % 64)) & 1 == 1 {
                mark((n << g).max(iova), ((n + 1) << g).min(end));
            }
        }
        mark((nbits << g).max(iova), end);
        prop_assert_eq!(stats.uncovered_bytes, end.saturating_sub((nbits << g).max(iova)));
        prop_assert!(sink.map == want.map, "range {:x?}", r);

        // Exactly the device pages entirely inside the range were cleared.
        let after = snapshot(&b);
        for n in 0..nbits {
            let was = (words[(n / 64) as usize] >> (n % 64)) & 1;
            let now = (after[(n / 64) as usize] >> (n % 64)) & 1;
            let inside = n << g >= iova && (n + 1) << g <= end;
            prop_assert_eq!(now, if inside { 0 } else { was }, "bit {}", n);
        }
    }
}

/// A writer sets every page's bit exactly once per round, in a scrambled
/// order, while harvests run: a set lost between a harvest's load and its
/// clear is never set again, so every round's reports must hold every page.
/// (A writer that may set a bit again would hide such a loss.) Words fill up
/// as a round goes on, so harvests meet clean, partial and full words and
/// lines.
#[test]
fn concurrent_writer_loses_nothing() {
    const WORDS: usize = 256;
    const PAGES: u64 = WORDS as u64 * 64;
    const ROUNDS: u64 = 40;
    let b = bitmap(&[0; WORDS]);
    let whole = range(0, PAGES << 12, 12, 12);
    // Unaligned to words, so partial words are cleared with fetch_and.
    let parts = [
        range(0, 1000 << 12, 12, 12),
        range(1000 << 12, 7777 << 12, 12, 12),
        range(8777 << 12, (PAGES - 8777) << 12, 12, 12),
    ];
    let mut harvests = 0u64;
    for round in 0..ROUNDS {
        let done = AtomicBool::new(false);
        let mut seen = PageMap::new(&whole);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..PAGES {
                    // An odd multiplier permutes the pages.
                    let page = (i * 40_503 + round * 977) % PAGES;
                    let bit = 1u64 << (page % 64);
                    b[(page / 64) as usize].fetch_or(bit.to_le(), Ordering::Release);
                }
                done.store(true, Ordering::Release);
            });
            while !done.load(Ordering::Acquire) {
                for r in &parts {
                    // One sink over the whole range: its bit i is page i.
                    harvest(&b, r, &mut seen).unwrap();
                }
                harvests += 1;
            }
        });
        harvest(&b, &whole, &mut seen).unwrap();
        let missing: Vec<u64> = (0..PAGES)
            .filter(|&p| seen.map[(p / 64) as usize] >> (p % 64) & 1 == 0)
            .collect();
        assert!(missing.is_empty(), "round {round}: pages lost: {missing:?}");
        assert_eq!(snapshot(&b), [0; WORDS]);
    }
    assert!(harvests > 0);
}
