// SPDX-License-Identifier: GPL-2.0

//! What every dirty-logging backend keeps of a `DMA_LOGGING_START` request: its ranges, which of
//! them lost records and must be reported whole, and the user's bitmap as a harvest output.

use kernel::{
    pci,
    prelude::*,
    vfio::log::{
        IovaBitmap,
        IovaRanges, //
    },
};
use virtio_mig_core::dirty_bitmap::DirtySink;

/// One range of the `DMA_LOGGING_START` request.
pub(crate) struct TrackedRange {
    pub(crate) start: u64,
    pub(crate) last: u64,
}

/// The ranges of a logging session, sorted and disjoint as the VFIO core hands them over, and
/// the parts of them whose records were lost.
pub(crate) struct TrackedRanges {
    ranges: KVec<TrackedRange>,
    /// Sorted, disjoint `[start, last]` intervals to report dirty once: their records were
    /// lost. A report takes out what it covers, so reports of parts (QEMU reports a memory
    /// section at a time) each report their part once.
    lost: KVec<(u64, u64)>,
    /// Recording a loss needed memory that was not available: everything is lost.
    lost_everything: bool,
}

impl TrackedRanges {
    /// Copies and checks the ranges of a `DMA_LOGGING_START` request.
    pub(crate) fn new(
        pdev: &pci::Device<kernel::device::Bound>,
        ranges: &IovaRanges<'_>,
    ) -> Result<Self> {
        let mut tracked = KVec::with_capacity(ranges.len(), GFP_KERNEL)?;
        for r in ranges.iter() {
            // The VFIO core hands an empty range over as [iova, iova - 1].
            if r.last < r.start {
                dev_dbg!(pdev, "dirty logging: empty range at {:#x}\n", r.start);
                return Err(EINVAL);
            }
            tracked.push(
                TrackedRange {
                    start: r.start,
                    last: r.last,
                },
                GFP_KERNEL,
            )?;
        }
        if tracked.is_empty() {
            return Err(EINVAL);
        }
        Ok(Self {
            ranges: tracked,
            lost: KVec::new(),
            lost_everything: false,
        })
    }

    /// The ranges, in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &TrackedRange> {
        self.ranges.iter()
    }

    /// Number of ranges.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// One past the highest tracked byte.
    pub(crate) fn end(&self) -> Result<u64> {
        self.ranges
            .iter()
            .map(|r| r.last.checked_add(1).ok_or(EINVAL))
            .try_fold(0, |end, r| Ok(end.max(r?)))
    }

    /// Records were lost anywhere: every range is reported whole once.
    pub(crate) fn lose_all(&mut self) {
        let mut lost = KVec::new();
        for r in self.ranges.iter() {
            if lost.push((r.start, r.last), GFP_KERNEL).is_err() {
                self.lost_everything = true;
                return;
            }
        }
        self.lost = lost;
        self.lost_everything = false;
    }

    /// Records of `[iova, last]` were lost: that part is reported once more.
    pub(crate) fn lose(&mut self, iova: u64, last: u64) {
        if self.lost_everything {
            return;
        }
        let mut merged = KVec::new();
        if merged.reserve(self.lost.len() + 1, GFP_KERNEL).is_err() {
            self.lost_everything = true;
            return;
        }
        let (mut start, mut end) = (iova, last);
        let mut placed = false;
        for &(s, e) in self.lost.iter() {
            if e.saturating_add(1) < start {
                let _ = merged.push((s, e), GFP_KERNEL);
            } else if s > end.saturating_add(1) {
                if !placed {
                    let _ = merged.push((start, end), GFP_KERNEL);
                    placed = true;
                }
                let _ = merged.push((s, e), GFP_KERNEL);
            } else {
                start = start.min(s);
                end = end.max(e);
            }
        }
        if !placed {
            let _ = merged.push((start, end), GFP_KERNEL);
        }
        self.lost = merged;
    }

    /// Marks dirty, in a report of `[iova, last]`, what no range covers (memory added after
    /// START was never tracked) and the lost parts the report covers, which are then trusted
    /// again.
    pub(crate) fn report_untracked(&mut self, iova: u64, last: u64, out: &mut impl DirtySink) {
        report_uncovered(&self.ranges, iova, last, out);
        if self.lost_everything {
            self.lose_all();
            if self.lost_everything {
                // Still no memory to remember what this report covers: report it all.
                out.set_range(iova, last - iova + 1);
                return;
            }
        }
        if self.lost.iter().all(|&(s, e)| e < iova || s > last) {
            return;
        }
        let mut rest = KVec::new();
        if rest.reserve(self.lost.len() + 1, GFP_KERNEL).is_err() {
            // Report the overlap now and keep every loss for later reports too.
            for &(s, e) in self.lost.iter() {
                let (a, b) = (s.max(iova), e.min(last));
                if a <= b {
                    out.set_range(a, b - a + 1);
                }
            }
            return;
        }
        for &(s, e) in self.lost.iter() {
            let (a, b) = (s.max(iova), e.min(last));
            if a > b {
                let _ = rest.push((s, e), GFP_KERNEL);
                continue;
            }
            out.set_range(a, b - a + 1);
            if s < a {
                let _ = rest.push((s, a - 1), GFP_KERNEL);
            }
            if b < e {
                let _ = rest.push((b + 1, e), GFP_KERNEL);
            }
        }
        self.lost = rest;
    }
}

/// Marks dirty the parts of `[iova, last]` that none of the sorted, disjoint `ranges` covers.
fn report_uncovered(ranges: &[TrackedRange], iova: u64, last: u64, out: &mut impl DirtySink) {
    let mut next = iova;
    for r in ranges {
        if r.last < next {
            continue;
        }
        if r.start > last {
            break;
        }
        if r.start > next {
            out.set_range(next, r.start - next);
        }
        match r.last.checked_add(1) {
            Some(after) => next = after,
            None => return,
        }
        if next > last {
            return;
        }
    }
    out.set_range(next, last - next + 1);
}

/// The user's bitmap as the output of a harvest: a word of pages at a time where the device
/// and the user count pages alike, runs otherwise.
pub(crate) struct UserBitmap<'a, 'b>(pub(crate) &'a mut IovaBitmap<'b>);

impl DirtySink for UserBitmap<'_, '_> {
    fn set_range(&mut self, iova: u64, len: u64) {
        self.0.set(iova, len);
    }

    fn set_pages(&mut self, iova: u64, bits: u64) {
        self.0.set_pages(iova, bits);
    }
}

/// The last byte of `[iova, iova + length)`, which must be a non-empty range.
pub(crate) fn last_byte(iova: u64, length: u64) -> Result<u64> {
    length
        .checked_sub(1)
        .and_then(|l| iova.checked_add(l))
        .ok_or(EINVAL)
}
