// SPDX-License-Identifier: GPL-2.0

//! Harvesting of the device dirty bitmap written by the memory tracker.
//!
//! The device sets bit `n` of a little-endian bitmap when it writes IOVA page
//! `n`, whose size is `2^(12 + gra_power)` bytes; bit 0 is the page at IOVA 0.
//! [`harvest`] reads and clears the part of the bitmap covering a requested
//! IOVA range and reports the dirty memory to a [`DirtySink`]. The output is
//! word-shaped so that a report costs little more than reading and clearing
//! the bitmap: a dirty device word becomes one [`DirtySink::set_pages`] call
//! (64 user pages), which the driver ORs into the user's bitmap in one go,
//! whatever the pattern of bits in it, and consecutive full words become one
//! [`DirtySink::set_range`] run (a fill). [`harvest_runs`] and [`RunSink`]
//! turn the output back into coalesced byte runs for callers that want those.
//!
//! Rules, following "never lose a dirty page":
//!
//! - Words are read and cleared atomically (`swap`/`fetch_and`) because the
//!   device sets bits concurrently; a bit set after its word was read stays
//!   set and is reported by the next harvest. The exception is a word read
//!   with every bit set, which a plain store clears: a concurrent set can
//!   then only hit a page this harvest reports (see `take_inner`).
//! - Only the bits of device pages lying *entirely* inside the range are
//!   cleared. A device page straddling the range boundary (device pages larger
//!   than the range alignment) is reported but left set, so the part outside
//!   the range is still reported when its own range is harvested. Bits of
//!   other ranges sharing a word are never touched.
//! - Clean words are skipped with plain loads (a cache line at a time),
//!   without a write.
//! - Any part of the range beyond the bitmap is reported dirty: the device
//!   cannot have recorded it.
//! - Granularities are converted in both directions: a dirty device page
//!   larger than a user page marks every user page it covers (a device word
//!   is spread into user words, full ones merged into byte runs, or reported
//!   as runs when a device page spans more than 64 user pages); a smaller one
//!   marks the user page containing it (groups of device bits are OR-reduced
//!   into user bits).
//!
//! [`report_all`] is the conservative path for when the bitmap cannot be
//! trusted (tracker overflow, unexpected `gra_power`, device error).

use core::fmt;
use core::sync::atomic::{fence, AtomicU64, Ordering};

/// Smallest page shift, for both the user page size and the device granularity.
pub const MIN_PAGE_SHIFT: u32 = 12;
/// Largest page shift accepted.
pub const MAX_PAGE_SHIFT: u32 = 63;

/// Largest device-to-user page size factor (as a shift) that is converted
/// word-wise; beyond it a device page covers whole user words and is reported
/// as a byte run.
const MAX_SPREAD_SHIFT: u32 = 6;

/// A harvest request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HarvestRange {
    /// Start of the IOVA range.
    pub iova: u64,
    /// Length of the range in bytes.
    pub length: u64,
    /// Log2 of the user's page size (`VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`).
    pub page_shift: u32,
    /// Log2 of the device granularity: `12 + gra_power` as read back.
    pub gra_shift: u32,
}

/// Why a harvest request was refused (nothing was read or cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HarvestError {
    /// `iova + length` overflows.
    Overflow,
    /// A page shift is outside `12..=63`.
    BadPageShift(u32),
}

impl fmt::Display for HarvestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarvestError::Overflow => f.write_str("iova + length overflows"),
            HarvestError::BadPageShift(s) => write!(f, "page shift {s} out of range"),
        }
    }
}

/// Counters of one harvest, for statistics and tracing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HarvestStats {
    /// Bitmap words examined.
    pub words_scanned: u64,
    /// Words that had at least one bit set inside the range.
    pub words_dirty: u64,
    /// User-page words passed to [`DirtySink::set_pages`].
    pub words_emitted: u64,
    /// Byte runs passed to [`DirtySink::set_range`]; with [`harvest_runs`],
    /// the runs passed to its callback.
    pub runs: u64,
    /// Bytes beyond the bitmap reported dirty.
    pub uncovered_bytes: u64,
}

/// Where a harvest reports dirty memory.
///
/// Calls come in ascending address order. Every page they mark overlaps the
/// requested range; when the range is not aligned to the user page size, its
/// first and last user pages also extend beyond it, as in the user's bitmap.
pub trait DirtySink {
    /// Marks the bytes `[iova, iova + len)` dirty; the run lies inside the
    /// range, widened to user pages where the range allows, and `len > 0`.
    fn set_range(&mut self, iova: u64, len: u64);

    /// Marks dirty the user page `iova + (i << page_shift)` for every set bit
    /// `i` of `bits` (bit 0 is the page at `iova`; `bits != 0`).
    ///
    /// `iova` is a multiple of the user page size and not below the user page
    /// holding the start of the range, so the pages' offset in the user's
    /// bitmap is never negative. Pages at or past the end of the range have
    /// their bits clear, but the word may reach past the end of the user's
    /// bitmap: only its set bits may be written.
    fn set_pages(&mut self, iova: u64, bits: u64);

    /// Called once at the end of every successful [`harvest`] and
    /// [`report_all`]: a sink that buffers (such as [`RunSink`]) passes on
    /// what it holds.
    fn flush(&mut self) {}
}

/// A [`DirtySink`] that coalesces everything into sorted byte runs, clamped
/// to the range and widened to user pages where the range allows, and calls
/// `f(iova, len)` once per run.
pub struct RunSink<F: FnMut(u64, u64)> {
    start: u64,
    end: u64,
    page_shift: u32,
    mask: u64,
    pending: Option<(u64, u64)>,
    runs: u64,
    f: F,
}

impl<F: FnMut(u64, u64)> RunSink<F> {
    /// A sink for harvests of `range`.
    pub fn new(range: &HarvestRange, f: F) -> Self {
        let page_shift = range.page_shift.min(MAX_PAGE_SHIFT);
        RunSink {
            start: range.iova,
            end: range.iova.saturating_add(range.length),
            page_shift,
            mask: (1u64 << page_shift) - 1,
            pending: None,
            runs: 0,
            f,
        }
    }

    /// Runs passed to `f` so far.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// Adds the byte range `[s, e)`, clamped to the request.
    fn add(&mut self, s: u64, e: u64) {
        let s = s.max(self.start);
        let e = e.min(self.end);
        if s >= e {
            return;
        }
        // Widen to user pages, then clamp again to the request.
        let s = (s & !self.mask).max(self.start);
        let e = match ((e - 1) | self.mask).checked_add(1) {
            Some(v) => v.min(self.end),
            None => self.end,
        };
        // Merge what overlaps or touches, in whatever order it comes.
        match self.pending {
            Some((ps, pe)) if s <= pe && ps <= e => self.pending = Some((ps.min(s), pe.max(e))),
            Some((ps, pe)) => {
                (self.f)(ps, pe - ps);
                self.runs += 1;
                self.pending = Some((s, e));
            }
            None => self.pending = Some((s, e)),
        }
    }
}

impl<F: FnMut(u64, u64)> DirtySink for RunSink<F> {
    fn set_range(&mut self, iova: u64, len: u64) {
        self.add(iova, iova.saturating_add(len));
    }

    fn set_pages(&mut self, iova: u64, bits: u64) {
        let page = iova >> self.page_shift;
        let size = 1u64 << self.page_shift;
        let mut rest = bits;
        while rest != 0 {
            let lo = rest.trailing_zeros();
            let hi = lo + (rest >> lo).trailing_ones();
            self.add(
                (page + u64::from(lo)).saturating_mul(size),
                (page + u64::from(hi)).saturating_mul(size),
            );
            rest &= !bit_range(u64::from(lo), u64::from(hi));
        }
    }

    fn flush(&mut self) {
        if let Some((s, e)) = self.pending.take() {
            (self.f)(s, e - s);
            self.runs += 1;
        }
    }
}

/// Checks a request; returns its end address.
fn check(r: &HarvestRange) -> Result<u64, HarvestError> {
    for shift in [r.page_shift, r.gra_shift] {
        if !(MIN_PAGE_SHIFT..=MAX_PAGE_SHIFT).contains(&shift) {
            return Err(HarvestError::BadPageShift(shift));
        }
    }
    r.iova.checked_add(r.length).ok_or(HarvestError::Overflow)
}

/// Mask of bits `[lo, hi)` of a word, `0 <= lo <= hi <= 64`.
#[inline]
fn bit_range(lo: u64, hi: u64) -> u64 {
    if lo >= hi {
        return 0;
    }
    let upper = if hi >= 64 { u64::MAX } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// `GROUP_MASKS[d][l]`: groups of `2^l` low bits repeated every `2^(l + d)`
/// bits, the masks of the bit spreading and gathering steps for factor `2^d`.
const GROUP_MASKS: [[u64; 6]; 7] = group_masks();

const fn group_masks() -> [[u64; 6]; 7] {
    let mut t = [[0u64; 6]; 7];
    let mut d = 0;
    while d < 7 {
        let mut l = 0;
        while l < 6 {
            let stride = 1u32 << (l + d);
            let group = (1u64 << (1u32 << l)) - 1;
            let mut m = 0;
            let mut pos = 0;
            while pos < 64 {
                m |= group << pos;
                pos += stride;
            }
            t[d as usize][l as usize] = m;
            l += 1;
        }
        d += 1;
    }
    t
}

/// Steps of the word conversions: fixed at five, the most any factor needs,
/// so that they unroll with their constants in registers; a factor's unused
/// steps are no-ops (shift 0, mask all ones).
const STEPS: usize = 5;

/// Word-wise conversion between device and user bits for a page size factor
/// of `2^d`, `1 <= d <= 6`, prepared once per harvest.
#[derive(Clone, Copy)]
struct Convert {
    /// Spreading bit `i` to bit `i << d`: `x = (x | x << shift) & mask`.
    spread: [(u32, u64); STEPS],
    /// Ones in each group of `2^d` bits: `1 << i << d` times this fills the
    /// group.
    fill: u64,
    /// OR-folding each group of `2^d` bits into its lowest: `x |= x >> shift`.
    fold: [u32; MAX_SPREAD_SHIFT as usize],
    /// The lowest bit of each group.
    lowest: u64,
    /// Gathering bit `i << d` to bit `i`: `x = (x | x >> shift) & mask`.
    gather: [(u32, u64); STEPS],
}

impl Convert {
    fn new(d: u32) -> Self {
        let masks = &GROUP_MASKS[d as usize];
        let used = MAX_SPREAD_SHIFT - d;
        let mut c = Convert {
            spread: [(0, u64::MAX); STEPS],
            fill: if d >= MAX_SPREAD_SHIFT {
                u64::MAX
            } else {
                (1u64 << (1u32 << d)) - 1
            },
            fold: [0; MAX_SPREAD_SHIFT as usize],
            lowest: masks[0],
            gather: [(0, u64::MAX); STEPS],
        };
        // Level l moves groups of 2^l bits; spreading goes from the widest
        // level down, gathering from the narrowest up.
        for l in 0..used {
            let shift = (1u32 << l) * ((1u32 << d) - 1);
            c.spread[STEPS - 1 - l as usize] = (shift, masks[l as usize]);
            c.gather[l as usize] = (shift, masks[l as usize + 1]);
        }
        for l in 0..d {
            c.fold[l as usize] = 1 << l;
        }
        c
    }

    /// Widens each of the `64 >> d` low bits of `x` into `2^d` bits: a device
    /// page `2^d` times larger than a user page marks all the user pages it
    /// covers.
    #[inline]
    fn expand(&self, mut x: u64) -> u64 {
        for (shift, mask) in self.spread {
            x = (x | (x << shift)) & mask;
        }
        // The spread bits are 2^d apart, so the product has no carries.
        x.wrapping_mul(self.fill)
    }

    /// ORs each group of `2^d` bits of `x` into one of `64 >> d` low bits: a
    /// user page `2^d` times larger than a device page is dirty if any of the
    /// device pages it holds is.
    #[inline]
    fn reduce(&self, mut x: u64) -> u64 {
        for shift in self.fold {
            x |= x >> shift;
        }
        x &= self.lowest;
        for (shift, mask) in self.gather {
            x = (x | (x >> shift)) & mask;
        }
        x
    }
}

/// ORs `word` into the bitmap `window` at bit offset `bit`: bit `i` of `word`
/// sets bit `bit + i` of the window, bit `b` being bit `b % 64` of
/// `window[b / 64]`. Touches at most two words, and only to set bits, so a
/// word reaching past the end of the window is fine as long as its bits there
/// are clear.
///
/// Returns `false` if some set bit lies beyond the window (the others are
/// still set). The driver's `DirtySink::set_pages` does this on the user's
/// bitmap.
#[inline]
pub fn or_word_at(window: &mut [u64], bit: u64, word: u64) -> bool {
    if word == 0 {
        return true;
    }
    let Ok(index) = usize::try_from(bit / 64) else {
        return false;
    };
    let shift = (bit % 64) as u32;
    let lo = word << shift;
    let hi = if shift == 0 { 0 } else { word >> (64 - shift) };
    let mut fits = true;
    if lo != 0 {
        match window.get_mut(index) {
            Some(w) => *w |= lo,
            None => fits = false,
        }
    }
    if hi != 0 {
        match index.checked_add(1).and_then(|i| window.get_mut(i)) {
            Some(w) => *w |= hi,
            None => fits = false,
        }
    }
    fits
}

/// The device pages of a request, as bitmap bit numbers.
struct DevicePages {
    /// First page touching the range.
    first: u64,
    /// One past the last page touching the range.
    last_excl: u64,
    /// First page entirely inside the range.
    full_first: u64,
    /// One past the last page entirely inside the range.
    full_last_excl: u64,
    /// One past the last page touching the range that the bitmap holds.
    covered_excl: u64,
    /// Bits the bitmap holds.
    nbits: u64,
}

impl DevicePages {
    fn new(words: &[AtomicU64], iova: u64, end: u64, shift: u32) -> Self {
        let page = 1u64 << shift;
        let last_excl = ((end - 1) >> shift) + 1;
        let nbits = u64::try_from(words.len())
            .unwrap_or(u64::MAX)
            .saturating_mul(64);
        DevicePages {
            first: iova >> shift,
            last_excl,
            full_first: (iova >> shift) + u64::from(iova & (page - 1) != 0),
            full_last_excl: end >> shift,
            covered_excl: last_excl.min(nbits),
            nbits,
        }
    }

    /// Bits of the word whose bit 0 is page `base` to report, and to clear.
    #[inline]
    fn masks(&self, base: u64) -> (u64, u64) {
        let report = bit_range(
            self.first.saturating_sub(base).min(64),
            (self.covered_excl - base).min(64),
        );
        let clear = bit_range(
            self.full_first.saturating_sub(base).min(64),
            self.full_last_excl.saturating_sub(base).min(64),
        ) & report;
        (report, clear)
    }
}

/// Words examined together: a clean cache line costs its loads and one branch.
const LINE_WORDS: usize = 8;

/// Reads and clears the bits of the first or last word of a scan (whose bit 0
/// is device page `word_base`) that `dev` reports and clears, and passes them
/// to `f`; returns 1 if there were any.
#[inline]
fn edge_word<F: FnMut(u64, u64, bool)>(
    word: &AtomicU64,
    word_base: u64,
    dev: &DevicePages,
    f: &mut F,
) -> u64 {
    // A clean word costs one load and no write.
    if word.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let (report, clear) = dev.masks(word_base);
    // Relaxed: the scan's fence orders them all at once.
    let raw = if clear == u64::MAX {
        word.swap(0, Ordering::Relaxed)
    } else if clear != 0 {
        word.fetch_and(!clear.to_le(), Ordering::Relaxed)
    } else {
        word.load(Ordering::Relaxed)
    };
    let dirty = u64::from_le(raw) & report;
    if dirty == 0 {
        return 0;
    }
    f(word_base, dirty, true);
    1
}

/// Reads and clears a word whose pages all lie inside the range, and returns
/// what it held.
///
/// A word read with every bit set is cleared with a plain store instead of an
/// atomic swap. That loses nothing: the device only sets bits, so a write of
/// the device landing between the load and the store can only set a bit that
/// was already set, for a page this harvest reports, and the device wrote
/// that page's data before its bit, so before the report returns. A write
/// landing after the store stays set for the next harvest. Any other word
/// holds a clear bit the device may set meanwhile, and is swapped.
#[inline]
fn take_inner(word: &AtomicU64) -> u64 {
    match word.load(Ordering::Relaxed) {
        0 => 0,
        u64::MAX => {
            word.store(0, Ordering::Relaxed);
            u64::MAX
        }
        _ => word.swap(0, Ordering::Relaxed),
    }
}

/// Reads and clears the bitmap words covering `dev` and calls
/// `f(page, bits, edge)` for every word with bits to report, `page` being the
/// device page of bit 0 and `edge` whether the word is the first or last one
/// (only those can hold pages that are not entirely inside the range).
#[inline]
fn scan<F: FnMut(u64, u64, bool)>(
    words: &[AtomicU64],
    dev: &DevicePages,
    stats: &mut HarvestStats,
    mut f: F,
) {
    if dev.first >= dev.covered_excl {
        return;
    }
    let w_first = usize::try_from(dev.first / 64).unwrap_or(usize::MAX);
    let w_last = usize::try_from((dev.covered_excl - 1) / 64).unwrap_or(usize::MAX);
    let span = words.get(w_first..=w_last).unwrap_or(&[]);
    stats.words_scanned = u64::try_from(span.len()).unwrap_or(u64::MAX);
    let base = dev.first & !63;
    let mut dirty_words = 0;
    match span {
        [] => {}
        [only] => dirty_words += edge_word(only, base, dev, &mut f),
        [first, inner @ .., last] => {
            dirty_words += edge_word(first, base, dev, &mut f);
            let mut line_base = base + 64;
            // Every page of the inner words lies inside the range: no masks.
            for line in inner.chunks(LINE_WORDS) {
                // A clean line costs its loads and one branch.
                let any = line
                    .iter()
                    .fold(0, |any, w| any | w.load(Ordering::Relaxed));
                if any == u64::MAX
                    && line.len() == LINE_WORDS
                    && line.iter().all(|w| w.load(Ordering::Relaxed) == u64::MAX)
                {
                    // A full line: plain stores (see `take_inner`).
                    line.iter().for_each(|w| w.store(0, Ordering::Relaxed));
                    for i in 0..LINE_WORDS as u64 {
                        f(line_base + 64 * i, u64::MAX, false);
                    }
                    dirty_words += LINE_WORDS as u64;
                } else if any != 0 {
                    let mut word_base = line_base;
                    for word in line {
                        // Cached by now: a clean word still costs no write.
                        let raw = take_inner(word);
                        if raw != 0 {
                            dirty_words += 1;
                            f(word_base, u64::from_le(raw), false);
                        }
                        word_base += 64;
                    }
                }
                line_base += 64 * LINE_WORDS as u64;
            }
            let last_base = base + 64 * (u64::try_from(inner.len()).unwrap_or(u64::MAX) + 1);
            dirty_words += edge_word(last, last_base, dev, &mut f);
        }
    }
    stats.words_dirty = dirty_words;
    // The device's writes of the pages whose bits were read happen before
    // whatever the caller does with the report (the user copies the pages).
    fence(Ordering::Acquire);
}

/// Passes a harvest's output to the sink, clamped to the range.
struct Out<'s, S: DirtySink + ?Sized> {
    sink: &'s mut S,
    start: u64,
    end: u64,
    page_shift: u32,
    /// User page holding the first byte of the range.
    first_page: u64,
    /// One past the user page holding the last byte of the range.
    last_page_excl: u64,
    /// Byte run not yet passed on, to merge runs that touch.
    pending: Option<(u64, u64)>,
    words: u64,
    runs: u64,
}

impl<S: DirtySink + ?Sized> Out<'_, S> {
    /// Reports user page `page + i` for every set bit `i` of `bits`, dropping
    /// pages outside the range.
    #[inline]
    fn pages(&mut self, mut page: u64, mut bits: u64) {
        if page < self.first_page {
            let skip = self.first_page - page;
            if skip >= 64 {
                return;
            }
            bits >>= skip;
            page = self.first_page;
        }
        if page >= self.last_page_excl {
            return;
        }
        let room = self.last_page_excl - page;
        if room < 64 {
            bits &= (1u64 << room) - 1;
        }
        if bits != 0 {
            self.sink.set_pages(page << self.page_shift, bits);
            self.words += 1;
        }
    }

    /// [`Self::pages`] for a word known to lie inside the range.
    #[inline]
    fn inner_pages(&mut self, page: u64, bits: u64) {
        self.sink.set_pages(page << self.page_shift, bits);
        self.words += 1;
    }

    /// Extends the pending byte run by `[s, e)` of inner pages (inside the
    /// range: no clamping, no overflow).
    #[inline]
    fn inner_run(&mut self, s: u64, e: u64) {
        match &mut self.pending {
            Some((_, pe)) if *pe == s => *pe = e,
            _ => {
                self.flush_range();
                self.pending = Some((s, e));
            }
        }
    }

    /// A word of user pages. Full inner words become byte runs, merged with
    /// their neighbours: a dense bitmap then costs a few long runs (a fill of
    /// the user's bitmap) instead of an OR per word.
    #[inline]
    fn user_word(&mut self, page: u64, bits: u64, edge: bool) {
        if bits == u64::MAX && !edge {
            self.inner_run(page << self.page_shift, (page + 64) << self.page_shift);
            return;
        }
        // Keep the calls in ascending order.
        self.flush_range();
        if edge {
            self.pages(page, bits);
        } else {
            self.inner_pages(page, bits);
        }
    }

    /// Reports the byte range `[s, e)`, clamped to the range and widened to
    /// user pages inside it.
    fn range(&mut self, s: u64, e: u64) {
        let s = s.max(self.start);
        let e = e.min(self.end);
        if s >= e {
            return;
        }
        let mask = (1u64 << self.page_shift) - 1;
        let s = (s & !mask).max(self.start);
        let e = match ((e - 1) | mask).checked_add(1) {
            Some(v) => v.min(self.end),
            None => self.end,
        };
        match self.pending {
            Some((ps, pe)) if s <= pe && ps <= e => self.pending = Some((ps.min(s), pe.max(e))),
            _ => {
                self.flush_range();
                self.pending = Some((s, e));
            }
        }
    }

    fn flush_range(&mut self) {
        if let Some((s, e)) = self.pending.take() {
            self.sink.set_range(s, e - s);
            self.runs += 1;
        }
    }
}

/// Reads and clears the dirty bits of `words` covering `range` and reports
/// the dirty memory to `sink` in ascending order (see [`DirtySink`]).
///
/// With equal granularities, each dirty word is one `set_pages` call. A
/// device page up to 64 times larger or any factor smaller is converted
/// word-wise into user words, except that full user words of a larger device
/// page are merged into byte runs (a dense bitmap is then a fill rather than
/// an OR per word). Still larger device pages and the part of the range
/// beyond the bitmap go to `set_range`.
pub fn harvest<S: DirtySink + ?Sized>(
    words: &[AtomicU64],
    range: &HarvestRange,
    sink: &mut S,
) -> Result<HarvestStats, HarvestError> {
    let end = check(range)?;
    let mut stats = HarvestStats::default();
    if range.length == 0 {
        return Ok(stats);
    }
    let (gra, ps) = (range.gra_shift, range.page_shift);
    let dev = DevicePages::new(words, range.iova, end, gra);
    let mut out = Out {
        sink,
        start: range.iova,
        end,
        page_shift: ps,
        first_page: range.iova >> ps,
        last_page_excl: ((end - 1) >> ps) + 1,
        pending: None,
        words: 0,
        runs: 0,
    };

    if gra == ps {
        scan(words, &dev, &mut stats, |page, bits, edge| {
            out.user_word(page, bits, edge)
        });
    } else if gra > ps && gra - ps <= MAX_SPREAD_SHIFT {
        // Device word -> 2^d user words, each from 64 >> d device bits.
        let d = gra - ps;
        let conv = Convert::new(d);
        let chunk_shift = MAX_SPREAD_SHIFT - d;
        let group = u64::MAX >> (64 - (1u32 << chunk_shift));
        scan(words, &dev, &mut stats, |page, bits, edge| {
            if bits == u64::MAX && !edge {
                out.inner_run(page << gra, (page + 64) << gra);
                return;
            }
            let mut rest = bits;
            while rest != 0 {
                let j = rest.trailing_zeros() >> chunk_shift;
                let lsb = j << chunk_shift;
                rest &= !(group << lsb);
                let chunk = (bits >> lsb) & group;
                let user_bits = if chunk == group {
                    u64::MAX
                } else {
                    conv.expand(chunk)
                };
                out.user_word((page << d) + u64::from(j) * 64, user_bits, edge);
            }
        });
    } else if gra > ps {
        // A device page covers whole user words: report byte runs.
        scan(words, &dev, &mut stats, |page, bits, _| {
            let mut rest = bits;
            while rest != 0 {
                let lo = rest.trailing_zeros();
                let hi = lo + (rest >> lo).trailing_ones();
                out.range(
                    (page + u64::from(lo)) << gra,
                    (page + u64::from(hi)).saturating_mul(1u64 << gra),
                );
                rest &= !bit_range(u64::from(lo), u64::from(hi));
            }
        });
    } else {
        // 2^d device words -> one user word (or several device words -> one
        // user page): accumulate the user word until the scan leaves it.
        let d = ps - gra;
        // From 64 device pages per user page on, a device word is one bit.
        let conv = (d < MAX_SPREAD_SHIFT).then(|| Convert::new(d));
        let mut acc_page = 0;
        let mut acc = 0u64;
        scan(words, &dev, &mut stats, |page, bits, _| {
            let user = page >> d;
            let word_page = user & !63;
            let user_bits = match conv {
                Some(c) => c.reduce(bits),
                None => 1,
            };
            if word_page != acc_page {
                if acc != 0 {
                    out.pages(acc_page, acc);
                }
                acc_page = word_page;
                acc = 0;
            }
            acc |= user_bits << (user & 63);
        });
        if acc != 0 {
            out.pages(acc_page, acc);
        }
    }

    // The part of the range the bitmap does not cover is reported dirty.
    if dev.last_excl > dev.nbits {
        let s = dev.nbits.saturating_mul(1u64 << gra).max(range.iova);
        if s < end {
            stats.uncovered_bytes = end - s;
            out.range(s, end);
        }
    }
    out.flush_range();
    stats.words_emitted = out.words;
    stats.runs = out.runs;
    out.sink.flush();
    Ok(stats)
}

/// [`harvest`] for callers that want coalesced byte runs: calls
/// `set(iova, len)` for every dirty run (sorted, within the range, aligned to
/// the user page size where the range allows).
pub fn harvest_runs<F: FnMut(u64, u64)>(
    words: &[AtomicU64],
    range: &HarvestRange,
    set: F,
) -> Result<HarvestStats, HarvestError> {
    let mut sink = RunSink::new(range, set);
    let mut stats = harvest(words, range, &mut sink)?;
    stats.runs = sink.runs();
    Ok(stats)
}

/// Conservative path: reports the whole range dirty with one `set_range`
/// call, without touching the bitmap.
pub fn report_all<S: DirtySink + ?Sized>(
    range: &HarvestRange,
    sink: &mut S,
) -> Result<(), HarvestError> {
    check(range)?;
    if range.length != 0 {
        sink.set_range(range.iova, range.length);
    }
    sink.flush();
    Ok(())
}

/// Number of bitmap bytes needed to track IOVAs below `iova_end` at
/// granularity `2^gra_shift`, rounded up to whole 64-bit words.
pub fn bitmap_bytes(iova_end: u64, gra_shift: u32) -> Option<u64> {
    if !(MIN_PAGE_SHIFT..=MAX_PAGE_SHIFT).contains(&gra_shift) {
        return None;
    }
    let pages = (u128::from(iova_end) + (1u128 << gra_shift) - 1) >> gra_shift;
    let words = pages.div_ceil(64);
    u64::try_from(words * 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit models of the word conversions.
    fn expand_model(x: u64, d: u32) -> u64 {
        (0..64)
            .filter(|&i| (x >> (i >> d)) & 1 == 1)
            .fold(0, |a, i| a | (1 << i))
    }

    fn reduce_model(x: u64, d: u32) -> u64 {
        (0..64u32)
            .filter(|&i| (x >> i) & 1 == 1)
            .fold(0, |a, i| a | (1 << (i >> d)))
    }

    #[test]
    fn group_masks_are_the_morton_masks() {
        assert_eq!(GROUP_MASKS[1][0], 0x5555_5555_5555_5555);
        assert_eq!(GROUP_MASKS[1][1], 0x3333_3333_3333_3333);
        assert_eq!(GROUP_MASKS[1][4], 0x0000_ffff_0000_ffff);
        assert_eq!(GROUP_MASKS[2][0], 0x1111_1111_1111_1111);
        assert_eq!(GROUP_MASKS[6][0], 1);
        assert_eq!(GROUP_MASKS[1][5], 0xffff_ffff);
    }

    #[test]
    fn word_conversions_match_models() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for d in 1..=6 {
                for v in [x, x & 0x0101_0101_0101_0101, 1, 1 << 63, 0, u64::MAX] {
                    let low = v & (u64::MAX >> (64 - (64 >> d)));
                    let c = Convert::new(d);
                    assert_eq!(c.expand(low), expand_model(low, d), "expand {v:#x} d {d}");
                    assert_eq!(c.reduce(v), reduce_model(v, d), "reduce {v:#x} d {d}");
                }
            }
        }
    }

    #[test]
    fn or_word_at_spans_two_words() {
        let mut w = [0u64; 3];
        assert!(or_word_at(&mut w, 0, 0b101));
        assert_eq!(w, [0b101, 0, 0]);
        assert!(or_word_at(&mut w, 62, 0b111));
        assert_eq!(w, [0b101 | (0b11 << 62), 1, 0]);
        assert!(or_word_at(&mut w, 128, u64::MAX));
        assert_eq!(w[2], u64::MAX);
        // Clear high bits may reach past the window; set ones may not.
        let mut w = [0u64; 2];
        assert!(or_word_at(&mut w, 100, 1 << 27));
        assert_eq!(w, [0, 1 << 63]);
        assert!(!or_word_at(&mut w, 100, (1 << 28) | 1));
        assert_eq!(w, [0, (1 << 63) | (1 << 36)]);
        assert!(!or_word_at(&mut w, 1 << 40, 1));
        assert!(or_word_at(&mut [], u64::MAX, 0));
    }
}
