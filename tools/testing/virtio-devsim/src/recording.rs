// SPDX-License-Identifier: GPL-2.0
//! Write recording of a member function, driven by its owner's admin
//! commands (`WRITE_RECORDS_START`/`STOP`/`READ`, see [`crate::admin`]).
//!
//! While recording, every device write of the member that overlaps a
//! started range records each page (of the START page size) it touches,
//! clipped to the started ranges, in a bounded set of page IOVAs. A page
//! already recorded costs nothing; a new page when the store is full is
//! dropped and sets the overflow indication, which the next READ reports
//! (once). The store lives with the member (its write hook feeds it) and
//! is shared with the owner, which reads and clears it.
//!
//! A reset of the member keeps recording and records: the owner controls
//! recording. The owner's reset stops it ([`WriteRecorder::stop`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::stats::Stats;

/// One started recording.
#[derive(Debug)]
struct Session {
    /// log2 of the page size.
    shift: u32,
    /// Started ranges `[start, end)`, ascending, non-overlapping, aligned
    /// to the page size.
    ranges: Vec<(u64, u64)>,
    /// IOVAs of the recorded pages.
    pages: BTreeSet<u64>,
    /// A write could not be recorded since OVERFLOW was last reported.
    overflow: bool,
}

/// What one READ takes from the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOut {
    /// Recorded pages overlapping the window, ascending, now cleared.
    pub pages: Vec<u64>,
    /// Records overlapping the window remain.
    pub more: bool,
    /// The overflow indication (now cleared).
    pub overflow: bool,
}

/// The write record store of one member.
pub struct WriteRecorder {
    session: Mutex<Option<Session>>,
    capacity: usize,
    stats: Arc<Stats>,
}

impl WriteRecorder {
    /// A store of at most `capacity` page records, not recording.
    pub fn new(capacity: u32, stats: Arc<Stats>) -> Self {
        Self {
            session: Mutex::new(None),
            capacity: capacity as usize,
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Session>> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether recording is started.
    pub fn recording(&self) -> bool {
        self.lock().is_some()
    }

    /// Starts recording pages of `1 << shift` bytes in `ranges` (`[start,
    /// end)` pairs, validated by the caller). Returns false, changing
    /// nothing, if already recording.
    pub fn start(&self, shift: u32, ranges: Vec<(u64, u64)>) -> bool {
        let mut s = self.lock();
        if s.is_some() {
            return false;
        }
        *s = Some(Session {
            shift,
            ranges,
            pages: BTreeSet::new(),
            overflow: false,
        });
        true
    }

    /// Stops recording; unread records and the overflow indication go.
    pub fn stop(&self) {
        *self.lock() = None;
    }

    /// The recorded pages (for tests and diagnostics), without clearing.
    pub fn pages(&self) -> Vec<u64> {
        self.lock()
            .as_ref()
            .map(|s| s.pages.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The page size of the started recording.
    pub fn page_size(&self) -> Option<u64> {
        self.lock().as_ref().map(|s| 1u64 << s.shift)
    }

    /// Records a device write of `len` bytes at `addr`.
    pub fn record(&self, addr: u64, len: usize) {
        if len == 0 {
            return;
        }
        let mut guard = self.lock();
        let Some(s) = guard.as_mut() else {
            return;
        };
        // Inclusive last byte: a write never wraps (it is in mapped memory).
        let last = addr.saturating_add(len as u64 - 1);
        // The first range that ends after `addr`.
        let first = s.ranges.partition_point(|&(_, end)| end <= addr);
        let (mut stored, mut dropped) = (0u64, 0u64);
        for &(start, end) in &s.ranges[first..] {
            if start > last {
                break;
            }
            let lo = addr.max(start) >> s.shift;
            let hi = last.min(end - 1) >> s.shift;
            for page in lo..=hi {
                let iova = page << s.shift;
                if s.pages.contains(&iova) {
                    continue;
                }
                if s.pages.len() >= self.capacity {
                    s.overflow = true;
                    dropped += 1;
                } else {
                    s.pages.insert(iova);
                    stored += 1;
                }
            }
        }
        drop(guard);
        Stats::add(&self.stats.write_records_stored, stored);
        Stats::add(&self.stats.write_record_overflows, dropped);
    }

    /// Takes at most `max` recorded pages overlapping `[iova, end)` and the
    /// overflow indication. `None` when not recording.
    pub fn read(&self, iova: u64, end: u64, max: usize) -> Option<ReadOut> {
        let mut guard = self.lock();
        let s = guard.as_mut()?;
        let mask = (1u64 << s.shift) - 1;
        // Pages starting before `iova` overlap the window if they hold it.
        let from = iova & !mask;
        let pages: Vec<u64> = s.pages.range(from..end).take(max).copied().collect();
        for p in &pages {
            s.pages.remove(p);
        }
        let more = s.pages.range(from..end).next().is_some();
        let overflow = std::mem::replace(&mut s.overflow, false);
        drop(guard);
        Stats::add(&self.stats.write_records_read, pages.len() as u64);
        Some(ReadOut {
            pages,
            more,
            overflow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K4: u64 = 4096;

    fn rec(cap: u32) -> WriteRecorder {
        WriteRecorder::new(cap, Arc::new(Stats::default()))
    }

    #[test]
    fn clips_to_ranges_and_pages() {
        let r = rec(100);
        r.record(0, 10);
        assert!(!r.recording() && r.pages().is_empty());
        assert!(r.start(12, vec![(0x1000, 0x3000), (0x5000, 0x6000)]));
        assert!(!r.start(12, vec![(0, 0x1000)]));
        // Straddles the first range's start and the gap after it.
        r.record(0x0ff0, 0x4020);
        assert_eq!(r.pages(), vec![0x1000, 0x2000, 0x5000]);
        r.record(0x3000, 0x2000);
        r.record(0x6000, 1);
        assert_eq!(r.pages().len(), 3);
        let out = r.read(0x1800, 0x1801, 10).unwrap();
        assert_eq!(out.pages, vec![0x1000]);
        assert!(!out.more && !out.overflow);
        assert_eq!(r.pages(), vec![0x2000, 0x5000]);
        r.stop();
        assert!(r.read(0, u64::MAX, 10).is_none());
    }

    #[test]
    fn overflow_and_capacity() {
        let r = rec(2);
        assert!(r.start(12, vec![(0, 16 * K4)]));
        r.record(0, 3 * K4 as usize);
        r.record(0, 1);
        assert_eq!(r.pages(), vec![0, K4]);
        let out = r.read(0, K4, 10).unwrap();
        assert_eq!((out.pages, out.more, out.overflow), (vec![0], false, true));
        let out = r.read(0, 16 * K4, 0).unwrap();
        assert_eq!((out.pages.len(), out.more, out.overflow), (0, true, false));
        assert_eq!(
            r.stats
                .write_record_overflows
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn range_at_the_top_of_the_address_space() {
        let r = rec(10);
        let top = u64::MAX - 2 * K4 + 1;
        assert!(r.start(12, vec![(top, u64::MAX - K4 + 1)]));
        r.record(u64::MAX - 10, 11);
        r.record(top + 5, 1);
        assert_eq!(r.pages(), vec![top]);
    }
}
