// SPDX-License-Identifier: GPL-2.0
//! Memory dirty pages tracker (`VIRTIO_PCI_CAP_MEMORY_TRACK_CFG`, cfg_type 10).
//!
//! Register block (24 bytes, little endian):
//!
//! | offset | field           | access |
//! |--------|-----------------|--------|
//! | 0      | `u8 enable`     | RW     |
//! | 1      | `u8 gra_power`  | RW     |
//! | 2      | `u8 reserved[2]`| RO 0   |
//! | 4      | `le32 pasid` (bits 0..19) | RW if PASID is enabled |
//! | 8      | `le64 bitmap_addr`   | RW |
//! | 16     | `le64 bitmap_length` | RW (bytes) |
//!
//! While `enable` is 1, every device write into guest memory sets bit `n`
//! of the bitmap for each page `n` it touches, page `n` being the bytes at
//! `n << (12 + gra_power)`. Bits are set with an atomic OR on the bitmap in
//! guest memory, so a driver may clear harvested words concurrently with an
//! atomic exchange. The tracker's own bitmap writes are not logged, and no
//! bit at or past `bitmap_length * 8` is ever set.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{GuestAddress, VolatileMemory};

use crate::layout::{MAX_GRA_POWER, TRACK_PAGE_SHIFT};
use crate::memory::{DmaSpace, WriteSink};
use crate::regs::Field;
use crate::stats::Stats;

const ENABLE: Field = Field::new(0, 1);
const GRA_POWER: Field = Field::new(1, 1);
const PASID: Field = Field::new(4, 4);
const BITMAP_ADDR: Field = Field::new(8, 8);
const BITMAP_LENGTH: Field = Field::new(16, 8);
/// Bits of the `pasid` field that hold the PASID.
const PASID_MASK: u64 = (1 << 20) - 1;

/// The register values of the tracker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerRegs {
    /// Tracking enabled.
    pub enable: bool,
    /// Page size is `1 << (12 + gra_power)`.
    pub gra_power: u8,
    /// PASID the bitmap is written with.
    pub pasid: u32,
    /// Address of the bitmap.
    pub bitmap_addr: u64,
    /// Length of the bitmap in bytes.
    pub bitmap_length: u64,
}

/// Behaviour switches of the tracker.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackerOptions {
    /// `gra_power` is raised to at least this value.
    pub min_gra_power: u8,
    /// Set the whole bitmap byte holding a dirty page's bit.
    pub byte_granular: bool,
    /// Fault: also set the bits between `bitmap_length` and the end of its
    /// last 64-bit word.
    pub bits_past_length: bool,
}

/// The memory dirty pages tracker.
pub struct Tracker {
    regs: Mutex<TrackerRegs>,
    mem: Arc<DmaSpace>,
    opts: TrackerOptions,
    stats: Arc<Stats>,
}

impl Tracker {
    /// A disabled tracker that writes its bitmap into `mem`.
    pub fn new(mem: Arc<DmaSpace>, opts: TrackerOptions, stats: Arc<Stats>) -> Self {
        let regs = TrackerRegs {
            gra_power: opts.min_gra_power,
            ..TrackerRegs::default()
        };
        Self {
            regs: Mutex::new(regs),
            mem,
            opts,
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, TrackerRegs> {
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the registers.
    pub fn regs(&self) -> TrackerRegs {
        *self.lock()
    }

    /// Register read of `buf.len()` bytes at `offset` of the block.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        let r = self.regs();
        buf.fill(0);
        ENABLE.read(offset, buf, r.enable as u64);
        GRA_POWER.read(offset, buf, r.gra_power as u64);
        PASID.read(offset, buf, r.pasid as u64);
        BITMAP_ADDR.read(offset, buf, r.bitmap_addr);
        BITMAP_LENGTH.read(offset, buf, r.bitmap_length);
    }

    /// Register write at `offset` of the block. `pasid_enabled` tells whether
    /// the PASID extended capability exists and is enabled.
    pub fn write(&self, offset: u64, data: &[u8], pasid_enabled: bool) {
        let mut r = self.lock();
        if let Some(v) = ENABLE.write(offset, data, r.enable as u64) {
            r.enable = v & 1 != 0;
        }
        if let Some(v) = GRA_POWER.write(offset, data, r.gra_power as u64) {
            // The device may raise the granularity; the driver reads it back.
            r.gra_power = (v as u8).clamp(self.opts.min_gra_power, MAX_GRA_POWER);
        }
        if let Some(v) = PASID.write(offset, data, r.pasid as u64) {
            if pasid_enabled {
                r.pasid = (v & PASID_MASK) as u32;
            }
        }
        if let Some(v) = BITMAP_ADDR.write(offset, data, r.bitmap_addr) {
            r.bitmap_addr = v;
        }
        if let Some(v) = BITMAP_LENGTH.write(offset, data, r.bitmap_length) {
            r.bitmap_length = v;
        }
    }

    /// Device reset: tracking stops, `enable` and `pasid` read 0.
    pub fn reset(&self) {
        let mut r = self.lock();
        r.enable = false;
        r.pasid = 0;
    }

    /// Records that the device wrote `len` bytes at `addr`.
    pub fn log(&self, addr: u64, len: usize) {
        Stats::add(&self.stats.bytes_dma_written, len as u64);
        let r = self.regs();
        if !r.enable || len == 0 {
            return;
        }
        let shift = TRACK_PAGE_SHIFT + r.gra_power as u32;
        let first = addr >> shift;
        let last = addr.saturating_add(len as u64 - 1) >> shift;
        // Bits at or past `limit` must never be set.
        let limit = r.bitmap_length.saturating_mul(8);
        let last = last.min(limit.saturating_sub(1));
        if limit == 0 || first > last {
            self.fault_past_length(&r);
            return;
        }
        Stats::add(&self.stats.pages_marked_dirty, last - first + 1);

        // Accumulate the bits of one 64-bit bitmap word, then OR it in.
        let mut word = first / 64;
        let mut mask = 0u64;
        for page in first..=last {
            if page / 64 != word {
                self.or_word(&r, word, mask);
                word = page / 64;
                mask = 0;
            }
            let bit = page % 64;
            mask |= if self.opts.byte_granular {
                0xff << (bit & !7)
            } else {
                1 << bit
            };
        }
        self.or_word(&r, word, mask);
        self.fault_past_length(&r);
    }

    /// With `--fault-bits-past-length`: sets the bits between the end of
    /// the bitmap and the end of its last 64-bit word.
    fn fault_past_length(&self, r: &TrackerRegs) {
        if !self.opts.bits_past_length || r.bitmap_length % 8 == 0 {
            return;
        }
        let Some(end) = r.bitmap_length.checked_next_multiple_of(8) else {
            return;
        };
        for byte in r.bitmap_length..end {
            self.or_byte(r.bitmap_addr.wrapping_add(byte), 0xff);
        }
    }

    /// ORs `mask` into 64-bit word `word` of the bitmap, leaving out any bit
    /// past `bitmap_length`.
    fn or_word(&self, r: &TrackerRegs, word: u64, mask: u64) {
        if mask == 0 {
            return;
        }
        let start = word * 8;
        let addr = r.bitmap_addr.wrapping_add(start);
        let full = start + 8 <= r.bitmap_length;
        if full && addr % 8 == 0 {
            let mem = self.mem.memory();
            let done = mem.get_slice(GuestAddress(addr), 8).ok().and_then(|s| {
                s.get_atomic_ref::<AtomicU64>(0)
                    .ok()
                    .map(|w| w.fetch_or(mask, Ordering::SeqCst))
            });
            match done {
                Some(old) => {
                    Stats::add(
                        &self.stats.dirty_bits_set,
                        (mask & !old).count_ones() as u64,
                    );
                }
                None => Stats::add(&self.stats.bitmap_dma_errors, 1),
            }
            return;
        }
        // Unaligned bitmap or the partial last word: go byte by byte.
        for i in 0..8u64 {
            let byte_mask = (mask >> (i * 8)) as u8;
            if byte_mask != 0 && start + i < r.bitmap_length {
                self.or_byte(r.bitmap_addr.wrapping_add(start + i), byte_mask);
            }
        }
    }

    fn or_byte(&self, addr: u64, mask: u8) {
        let mem = self.mem.memory();
        let done = mem.get_slice(GuestAddress(addr), 1).ok().and_then(|s| {
            s.get_atomic_ref::<AtomicU8>(0)
                .ok()
                .map(|b| b.fetch_or(mask, Ordering::SeqCst))
        });
        match done {
            Some(old) => Stats::add(
                &self.stats.dirty_bits_set,
                (mask & !old).count_ones() as u64,
            ),
            None => Stats::add(&self.stats.bitmap_dma_errors, 1),
        }
    }
}

impl WriteSink for Tracker {
    fn on_write(&self, addr: u64, len: usize) {
        self.log(addr, len);
    }
}
