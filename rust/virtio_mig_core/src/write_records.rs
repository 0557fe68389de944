// SPDX-License-Identifier: GPL-2.0

//! Driver-side logic of admin write recording (see [`crate::admin`]).
//!
//! Starting: the user's IOVA ranges (sorted, disjoint) are combined to at
//! most the device's `max_ranges` ([`combine_ranges`], as Linux's
//! `vfio_combine_iova_ranges` does), aligned outward to the page size chosen
//! by [`choose_page_size`] ([`align_ranges`]) and sent as
//! [`StartEntry`]s ([`start_entry`]); [`prepare_ranges`] does the first two
//! steps. Recording ranges larger than asked only records more: nothing the
//! user asked for is left out.
//!
//! Reporting: [`plan_report`] splits the requested window into the whole
//! record pages inside it, which are READ, and the parts of the pages
//! straddling its ends, which are reported dirty without reading (a READ
//! clears the records it returns, and a straddling page's other part belongs
//! to another window). The `WRITE_RECORDS_READ` results are passed to
//! [`apply_records`], which marks each recorded page dirty, clipped to the
//! READ window, and rejects records the device should not have sent. At
//! most [`read_budget`] READs are issued per report. On any doubt (a
//! [`RecordFault`], `OVERFLOW`, an error status, an exhausted budget) the
//! driver reports the whole window dirty instead; after `OVERFLOW` (which is
//! read-and-clear, on whichever window is read next) every started range
//! must be reported dirty, not only the window being read.

use core::fmt;

use crate::admin::{StartEntry, MIN_PAGE_SIZE};
use crate::dirty_bitmap::DirtySink;

/// An IOVA range, both ends inclusive (so it can end at `u64::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive), `>= start`.
    pub last: u64,
}

/// Why a set of ranges was refused (the ranges were left unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// The page size is not a power of two.
    BadPageSize(u64),
    /// Range `n` has `last < start`.
    Inverted(usize),
    /// Range `n` overlaps or precedes the previous one.
    Unordered(usize),
    /// Range `n`, aligned, would reach the end of the address space: its end
    /// `iova + page_count * page_size` would be `2^64`, which the device
    /// refuses.
    Overflow(usize),
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::BadPageSize(p) => write!(f, "page size {p:#x} is not a power of two"),
            RangeError::Inverted(n) => write!(f, "range {n} is empty or inverted"),
            RangeError::Unordered(n) => {
                write!(f, "range {n} overlaps or precedes the previous one")
            }
            RangeError::Overflow(n) => write!(f, "range {n} reaches the end of the address space"),
        }
    }
}

/// Picks the recording page size for a user page size of `requested`
/// (bit `n` of `page_size_bitmap` is `4096 << n`): `requested` if
/// supported; else the largest supported size below it, whose records are
/// exact (several per user page); else the smallest supported size above
/// it, whose records mark several user pages (the caller reports that it
/// is coarser). `None` if the bitmap is empty or `requested` is not a power
/// of two of at least 4096.
pub fn choose_page_size(page_size_bitmap: u32, requested: u64) -> Option<u64> {
    if page_size_bitmap == 0 || !requested.is_power_of_two() || requested < MIN_PAGE_SIZE {
        return None;
    }
    let n = requested.trailing_zeros() - MIN_PAGE_SIZE.trailing_zeros();
    if n < 32 && page_size_bitmap & (1 << n) != 0 {
        return Some(requested);
    }
    let below = if n >= 32 {
        page_size_bitmap
    } else {
        page_size_bitmap & ((1 << n) - 1)
    };
    if below != 0 {
        return Some(MIN_PAGE_SIZE << (31 - below.leading_zeros()));
    }
    Some(MIN_PAGE_SIZE << page_size_bitmap.trailing_zeros())
}

/// Checks that `ranges` are non-empty (`start <= last`), ascending and
/// disjoint.
pub fn check_ranges(ranges: &[IovaRange]) -> Result<(), RangeError> {
    let mut prev_last = None::<u64>;
    for (n, r) in ranges.iter().enumerate() {
        if r.last < r.start {
            return Err(RangeError::Inverted(n));
        }
        if prev_last.is_some_and(|p| r.start <= p) {
            return Err(RangeError::Unordered(n));
        }
        prev_last = Some(r.last);
    }
    Ok(())
}

/// The gaps between neighbours of `ranges` (`start` of one minus `last` of
/// the previous), saturating at 0 for input that is not sorted.
fn gaps(ranges: &[IovaRange]) -> impl Iterator<Item = u64> + '_ {
    ranges
        .windows(2)
        .map(|w| w[1].start.saturating_sub(w[0].last))
}

/// Merges neighbours of `ranges` (sorted, disjoint) across the smallest
/// gaps until at most `max` remain (`max == 0` counts as 1), in place, and
/// returns the new length; `ranges[..len]` then covers every input byte.
///
/// The result is that of Linux's `vfio_combine_iova_ranges`, which merges
/// the pair with the smallest gap (the first one among equals) until few
/// enough remain: as a merge leaves the other gaps unchanged, that removes
/// the `len - max` smallest gaps, earlier ones first among equals. They are
/// found here without allocating, by a binary search of the gap value
/// (`O(64 len)`).
///
/// Combining ranges aligned to a page size keeps them aligned, so this may
/// run before or after [`align_ranges`].
///
/// Unsorted or overlapping input does not panic, but what it yields is
/// unspecified (it covers every input byte only if it was sorted).
pub fn combine_ranges(ranges: &mut [IovaRange], max: usize) -> usize {
    let max = max.max(1);
    let len = ranges.len();
    if len <= max {
        return len;
    }
    let need = len - max;
    // Smallest gap value `t` such that at least `need` gaps are `<= t`.
    let count_le = |v: u64| gaps(ranges).filter(|&g| g <= v).count();
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_le(mid) >= need {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let threshold = lo;
    let below = if threshold == 0 {
        0
    } else {
        count_le(threshold - 1)
    };
    let mut ties = need - below;

    let mut w = 0;
    let mut prev_last = ranges[0].last;
    for i in 1..len {
        let cur = ranges[i];
        let gap = cur.start.saturating_sub(prev_last);
        prev_last = cur.last;
        let merge = if gap < threshold {
            true
        } else if gap == threshold && ties > 0 {
            ties -= 1;
            true
        } else {
            false
        };
        if merge {
            ranges[w].last = ranges[w].last.max(cur.last);
        } else {
            w += 1;
            ranges[w] = cur;
        }
    }
    w + 1
}

/// Expands each of `ranges` (sorted, disjoint) outward to multiples of
/// `page_size` and merges those that then overlap or touch, in place;
/// returns the new length. `ranges[..len]` is then ascending, disjoint and
/// not touching, every range aligned (`start` a multiple of `page_size`,
/// `last + 1` too), and covers every input byte.
///
/// Refuses (leaving `ranges` unchanged) a page size that is not a power of
/// two, input that [`check_ranges`] refuses, and a range whose aligned end
/// would be `2^64` (the device refuses `iova + page_count * page_size`
/// overflowing 64 bits, so the top page cannot be recorded).
pub fn align_ranges(ranges: &mut [IovaRange], page_size: u64) -> Result<usize, RangeError> {
    if !page_size.is_power_of_two() {
        return Err(RangeError::BadPageSize(page_size));
    }
    let mask = page_size - 1;
    check_ranges(ranges)?;
    if let Some(n) = ranges.iter().position(|r| r.last | mask == u64::MAX) {
        return Err(RangeError::Overflow(n));
    }
    let mut w = 0;
    for i in 0..ranges.len() {
        let start = ranges[i].start & !mask;
        let last = ranges[i].last | mask;
        // `last < u64::MAX` was checked, so `+ 1` cannot overflow.
        if w > 0 && start <= ranges[w - 1].last + 1 {
            ranges[w - 1].last = ranges[w - 1].last.max(last);
        } else {
            ranges[w] = IovaRange { start, last };
            w += 1;
        }
    }
    Ok(w)
}

/// [`combine_ranges`] to at most `max` ranges, then [`align_ranges`] to
/// `page_size`, after checking the input ([`check_ranges`]); returns the new
/// length. The result is what `WRITE_RECORDS_START` takes: at most `max`
/// aligned, ascending, disjoint ranges covering the input.
pub fn prepare_ranges(
    ranges: &mut [IovaRange],
    max: usize,
    page_size: u64,
) -> Result<usize, RangeError> {
    if !page_size.is_power_of_two() {
        return Err(RangeError::BadPageSize(page_size));
    }
    check_ranges(ranges)?;
    if let Some(n) = ranges
        .iter()
        .position(|r| r.last | (page_size - 1) == u64::MAX)
    {
        return Err(RangeError::Overflow(n));
    }
    let len = combine_ranges(ranges, max);
    align_ranges(&mut ranges[..len], page_size)
}

/// The `WRITE_RECORDS_START` entry of a range aligned to `page_size` (as
/// [`align_ranges`] leaves them): its IOVA and number of pages.
///
/// Never panics; for a range that is not aligned the page count is
/// `(last - start) / page_size + 1` (and `page_size == 0` counts as 1).
pub fn start_entry(r: &IovaRange, page_size: u64) -> StartEntry {
    StartEntry {
        iova: r.start,
        page_count: r.last.saturating_sub(r.start) / page_size.max(1) + 1,
    }
}

/// Why [`apply_records`] stopped: the driver must report the whole window
/// dirty (and re-arm recording).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFault {
    /// A record that is not a multiple of the page size.
    Misaligned(u64),
    /// A record whose page does not overlap the window.
    OutsideWindow(u64),
    /// The page size is not a power of two (nothing was applied).
    BadPageSize(u64),
    /// The window ends beyond `2^64` (nothing was applied).
    BadWindow,
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordFault::Misaligned(r) => write!(f, "record {r:#x} misaligned"),
            RecordFault::OutsideWindow(r) => write!(f, "record {r:#x} outside the window"),
            RecordFault::BadPageSize(p) => write!(f, "page size {p:#x} is not a power of two"),
            RecordFault::BadWindow => f.write_str("window overflows"),
        }
    }
}

/// Marks dirty the pages of `records` (page IOVAs of a `WRITE_RECORDS_READ`
/// result, pages of `page_size` bytes) in the window `[window_start,
/// window_start + window_len)`: for each record, one
/// `sink.set_range(max(record, window_start), len)` of the part of its page
/// inside the window. Returns the number of records.
///
/// Stops at the first record that is not aligned to `page_size` or whose
/// page does not overlap the window, and returns it as the fault; the
/// records before it have been applied, and the caller then reports the
/// whole window. Pages at the top of the address space and windows ending
/// at `2^64` are handled without overflow.
///
/// The calls follow the records' order, which need not be ascending; only
/// `set_range` is used, and the sink is not flushed (the caller flushes
/// after the last READ of a report). The `OVERFLOW` flag is the caller's to
/// check.
pub fn apply_records<I, S>(
    records: I,
    page_size: u64,
    window_start: u64,
    window_len: u64,
    sink: &mut S,
) -> Result<u64, RecordFault>
where
    I: IntoIterator<Item = u64>,
    S: DirtySink + ?Sized,
{
    if !page_size.is_power_of_two() {
        return Err(RecordFault::BadPageSize(page_size));
    }
    let mask = page_size - 1;
    // Inclusive last byte of the window; `None` for an empty window.
    let window_last = match window_len.checked_sub(1) {
        Some(l) => Some(window_start.checked_add(l).ok_or(RecordFault::BadWindow)?),
        None => None,
    };
    let mut applied = 0u64;
    for rec in records {
        if rec & mask != 0 {
            return Err(RecordFault::Misaligned(rec));
        }
        // Aligned, so `| mask` is the page's last byte without overflow.
        let rec_last = rec | mask;
        let Some(wl) = window_last.filter(|&wl| rec <= wl && rec_last >= window_start) else {
            return Err(RecordFault::OutsideWindow(rec));
        };
        let s = rec.max(window_start);
        let l = rec_last.min(wl);
        // At most one page (`<= 2^63`), so `+ 1` cannot overflow.
        sink.set_range(s, l - s + 1);
        applied = applied.saturating_add(1);
    }
    Ok(applied)
}

/// How a report window is read: the whole record pages inside it are READ
/// (and so cleared); the pages straddling its ends are not, and the parts of
/// them inside the window are reported dirty as they are.
///
/// `WRITE_RECORDS_READ` clears every record it returns, including a page
/// that only partly overlaps the window; reporting that page clipped to the
/// window would lose the writes of its other part, which belongs to another
/// report (the same rule as the dirty bitmap's, whose straddling bits are
/// left set). Reading only whole pages keeps those records for a window that
/// holds them whole, at the cost of at most two pages reported without
/// records. A window aligned to the recording page size, the usual case, has
/// no edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportPlan {
    /// The whole pages inside the window, to READ; `None` if there are none.
    /// Never ends at `2^64` (a READ window must fit in 64 bits; the top
    /// page, which no started range holds, is left to [`Self::tail`]).
    pub read: Option<IovaRange>,
    /// When the window does not start on a page boundary: its part in the
    /// page holding its start.
    pub head: Option<IovaRange>,
    /// When the window does not end on a page boundary (or ends at `2^64`):
    /// its part in the page holding its end, unless that is the head's page.
    pub tail: Option<IovaRange>,
}

impl ReportPlan {
    /// The `WRITE_RECORDS_READ` window `(iova, length)` of [`Self::read`].
    pub fn read_request(&self) -> Option<(u64, u64)> {
        // `last < u64::MAX` in a plan of `plan_report`, so the length does
        // not saturate.
        let r = self.read?;
        let d = r.last.checked_sub(r.start)?;
        Some((r.start, d.saturating_add(1)))
    }

    /// Reports the edges dirty: one `set_range` for each of
    /// [`Self::head`] and [`Self::tail`] (the sink is not flushed).
    pub fn report_edges<S: DirtySink + ?Sized>(&self, sink: &mut S) {
        for e in [self.head, self.tail].into_iter().flatten() {
            // At most a page in a plan of `plan_report`: no saturation.
            if let Some(d) = e.last.checked_sub(e.start) {
                sink.set_range(e.start, d.saturating_add(1));
            }
        }
    }
}

/// Splits the report window `[window_start, window_start + window_len)`
/// for recording pages of `page_size` bytes (see [`ReportPlan`]). An empty
/// window has no part. Refuses a page size that is not a power of two and a
/// window ending beyond `2^64`.
pub fn plan_report(
    window_start: u64,
    window_len: u64,
    page_size: u64,
) -> Result<ReportPlan, RecordFault> {
    if !page_size.is_power_of_two() {
        return Err(RecordFault::BadPageSize(page_size));
    }
    let mut plan = ReportPlan {
        read: None,
        head: None,
        tail: None,
    };
    let Some(len_m1) = window_len.checked_sub(1) else {
        return Ok(plan);
    };
    let ws = window_start;
    let wl = ws.checked_add(len_m1).ok_or(RecordFault::BadWindow)?;
    let mask = page_size - 1;
    let (first_page, last_page) = (ws & !mask, wl & !mask);
    // Whole pages from `inner_start` to `inner_last`, if any.
    let mut inner_start = Some(ws);
    if ws & mask != 0 {
        plan.head = Some(IovaRange {
            start: ws,
            last: wl.min(first_page | mask),
        });
        inner_start = first_page.checked_add(page_size);
    }
    let mut inner_last = Some(wl);
    // The top page is never READ: the READ window's end must fit in 64 bits.
    if wl | mask != wl || wl == u64::MAX {
        if first_page != last_page || plan.head.is_none() {
            plan.tail = Some(IovaRange {
                start: last_page.max(ws),
                last: wl,
            });
        }
        inner_last = last_page.checked_sub(1);
    }
    if let (Some(start), Some(last)) = (inner_start, inner_last) {
        if start <= last {
            plan.read = Some(IovaRange { start, last });
        }
    }
    Ok(plan)
}

/// The number of `WRITE_RECORDS_READ` commands after which a report gives
/// up and reports the whole window dirty: `ceil(record_capacity /
/// entries_per_read) + 2` (saturating; `entries_per_read == 0` counts as 1).
///
/// The device stores at most `record_capacity` records and each READ
/// returns (and clears) up to `entries_per_read` of them, so that many READs
/// drain everything stored when the report started; the two more allow for
/// pages written during the report and the last READ, which clears `MORE`.
/// A device that keeps answering `MORE` (written faster than read, or
/// broken) thus cannot hold the kernel in the report: when the budget is
/// spent the driver reports the window dirty and returns, and the records
/// left are reported again by the next report, which is harmless.
pub fn read_budget(record_capacity: u32, entries_per_read: usize) -> u32 {
    let per = u64::try_from(entries_per_read).unwrap_or(u64::MAX).max(1);
    let reads = u64::from(record_capacity).div_ceil(per).saturating_add(2);
    u32::try_from(reads).unwrap_or(u32::MAX)
}
