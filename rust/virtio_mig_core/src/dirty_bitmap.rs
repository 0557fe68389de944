// SPDX-License-Identifier: GPL-2.0

//! Harvesting of the device dirty bitmap written by the memory tracker.
//!
//! The device sets bit `n` of a little-endian bitmap when it writes IOVA page
//! `n`, whose size is `2^(12 + gra_power)` bytes; bit 0 is the page at IOVA 0.
//! [`harvest`] reads and clears the part of the bitmap covering a requested
//! IOVA range and reports the dirty memory as coalesced byte runs, aligned to
//! the user's page size, through a callback (the driver forwards them to
//! `iova_bitmap_set()`).
//!
//! Rules, following "never lose a dirty page":
//!
//! - Words are read and cleared atomically (`swap`/`fetch_and`) because the
//!   device sets bits concurrently; a bit set after its word was read stays
//!   set and is reported by the next harvest.
//! - Only the bits of device pages lying *entirely* inside the range are
//!   cleared. A device page straddling the range boundary (device pages larger
//!   than the range alignment) is reported but left set, so the part outside
//!   the range is still reported when its own range is harvested. Bits of
//!   other ranges sharing a word are never touched.
//! - Clean words are skipped with a plain load, without a write.
//! - Any part of the range beyond the bitmap is reported dirty: the device
//!   cannot have recorded it.
//! - Runs are converted in both directions: a dirty device page larger than
//!   a user page marks every user page it covers; a smaller one marks the user
//!   page containing it.
//!
//! [`report_all`] is the conservative path for when the bitmap cannot be
//! trusted (tracker overflow, unexpected `gra_power`, device error).

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Smallest page shift, for both the user page size and the device granularity.
pub const MIN_PAGE_SHIFT: u32 = 12;
/// Largest page shift accepted.
pub const MAX_PAGE_SHIFT: u32 = 63;

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
    /// Words that had at least one bit set.
    pub words_dirty: u64,
    /// Runs passed to the callback.
    pub runs: u64,
    /// Bytes beyond the bitmap reported dirty.
    pub uncovered_bytes: u64,
}

/// Merges adjacent runs before passing them on, and aligns them to user pages.
struct Runs<'f, F: FnMut(u64, u64)> {
    start: u64,
    end: u64,
    mask: u64,
    pending: Option<(u64, u64)>,
    set: &'f mut F,
    runs: u64,
}

impl<F: FnMut(u64, u64)> Runs<'_, F> {
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
        match self.pending {
            Some((ps, pe)) if s <= pe => self.pending = Some((ps, pe.max(e))),
            Some((ps, pe)) => {
                (self.set)(ps, pe - ps);
                self.runs += 1;
                self.pending = Some((s, e));
            }
            None => self.pending = Some((s, e)),
        }
    }

    fn flush(&mut self) {
        if let Some((s, e)) = self.pending.take() {
            (self.set)(s, e - s);
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
fn bit_range(lo: u64, hi: u64) -> u64 {
    if lo >= hi {
        return 0;
    }
    let upper = if hi >= 64 { u64::MAX } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// Reads and clears the dirty bits of `words` covering `range` and calls
/// `set(iova, len)` for every dirty run (coalesced, sorted, within the range,
/// aligned to the user page size where the range allows).
pub fn harvest<F>(
    words: &[AtomicU64],
    range: &HarvestRange,
    mut set: F,
) -> Result<HarvestStats, HarvestError>
where
    F: FnMut(u64, u64),
{
    let end = check(range)?;
    let mut stats = HarvestStats::default();
    if range.length == 0 {
        return Ok(stats);
    }
    let shift = range.gra_shift;
    let page = 1u64 << shift;
    let mut runs = Runs {
        start: range.iova,
        end,
        mask: (1u64 << range.page_shift) - 1,
        pending: None,
        set: &mut set,
        runs: 0,
    };

    // Device pages touching the range, and those entirely inside it.
    let first = range.iova >> shift;
    let last_excl = ((end - 1) >> shift) + 1;
    let full_first = (range.iova >> shift) + u64::from(range.iova & (page - 1) != 0);
    let full_last_excl = end >> shift;
    let nbits = u64::try_from(words.len())
        .unwrap_or(u64::MAX)
        .saturating_mul(64);
    let covered_excl = last_excl.min(nbits);

    if first < covered_excl {
        let w_first = usize::try_from(first / 64).unwrap_or(usize::MAX);
        let w_last = usize::try_from((covered_excl - 1) / 64).unwrap_or(usize::MAX);
        let span = words.get(w_first..=w_last).unwrap_or(&[]);
        stats.words_scanned = u64::try_from(span.len()).unwrap_or(u64::MAX);
        let mut base = first & !63;
        for word in span {
            let word_base = base;
            base += 64;
            // Fast path: a clean word costs one load and no write.
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let report = bit_range(
                first.saturating_sub(word_base).min(64),
                (covered_excl - word_base).min(64),
            );
            let clear = bit_range(
                full_first.saturating_sub(word_base).min(64),
                full_last_excl.saturating_sub(word_base).min(64),
            ) & report;
            let raw = if clear == u64::MAX {
                word.swap(0, Ordering::AcqRel)
            } else if clear != 0 {
                word.fetch_and(!clear.to_le(), Ordering::AcqRel)
            } else {
                word.load(Ordering::Acquire)
            };
            let mut dirty = u64::from_le(raw) & report;
            if dirty == 0 {
                continue;
            }
            stats.words_dirty += 1;
            while dirty != 0 {
                let lo = dirty.trailing_zeros();
                let hi = lo + (dirty >> lo).trailing_ones();
                let p0 = word_base + u64::from(lo);
                let p1 = word_base + u64::from(hi);
                runs.add(p0 << shift, p1.saturating_mul(page));
                dirty &= !bit_range(u64::from(lo), u64::from(hi));
            }
        }
    }

    // The part of the range the bitmap does not cover is reported dirty.
    if last_excl > nbits {
        let s = nbits.saturating_mul(page).max(range.iova);
        if s < end {
            stats.uncovered_bytes = end - s;
            runs.add(s, end);
        }
    }
    runs.flush();
    stats.runs = runs.runs;
    Ok(stats)
}

/// Conservative path: reports the whole range dirty with one call, without
/// touching the bitmap.
pub fn report_all<F>(range: &HarvestRange, mut set: F) -> Result<(), HarvestError>
where
    F: FnMut(u64, u64),
{
    check(range)?;
    if range.length != 0 {
        set(range.iova, range.length);
    }
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
