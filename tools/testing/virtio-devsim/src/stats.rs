// SPDX-License-Identifier: GPL-2.0
//! Counters, dumped as `key=value` lines.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::layout::Area;

/// Device counters. All are monotonic.
#[derive(Default)]
pub struct Stats {
    /// Requests completed (used ring entries added).
    pub requests_served: AtomicU64,
    /// Requests completed with a status other than OK.
    pub requests_failed: AtomicU64,
    /// Bytes the device wrote into guest memory (data, status, rings).
    pub bytes_dma_written: AtomicU64,
    /// Pages the tracker reported dirty (one per page per write).
    pub pages_marked_dirty: AtomicU64,
    /// Bitmap bits the tracker changed from 0 to 1.
    pub dirty_bits_set: AtomicU64,
    /// Tracker bitmap updates that failed (bitmap not in mapped memory).
    pub bitmap_dma_errors: AtomicU64,
    /// MSI-X messages sent.
    pub interrupts_sent: AtomicU64,
    /// Queue stop requests (`queue_status` written 0).
    pub queue_stops: AtomicU64,
    /// Queues resumed (`queue_status` written 1 while stopped), each with
    /// one used-buffer notification.
    pub resume_notifications: AtomicU64,
    /// Device resets (every virtio reset, including those of function resets).
    pub resets: AtomicU64,
    /// Function-level resets, whatever their trigger.
    pub function_resets: AtomicU64,
    /// Function Level Resets (Initiate FLR written 1).
    pub flr_resets: AtomicU64,
    /// Power management resets (D3hot to D0).
    pub pm_resets: AtomicU64,
    /// Requests abandoned by a reset before they completed (guest memory
    /// untouched).
    pub requests_abandoned: AtomicU64,
    /// DMA mappings added (`VFIO_USER_DMA_MAP` with a file descriptor).
    pub dma_maps: AtomicU64,
    /// DMA unmaps that removed something (`VFIO_USER_DMA_UNMAP`).
    pub dma_unmaps: AtomicU64,
    /// Backing files mapped into the process (one per file, however many
    /// DMA mappings use it).
    pub dma_file_mmaps: AtomicU64,
    /// Device configuration writes that changed `writeback`.
    pub config_writes: AtomicU64,
    /// BAR accesses (reads and writes) while the function did not decode
    /// memory: Memory Space Enable clear, or not in D0. They are served all
    /// the same; a driver should never make one.
    pub bar_accesses_while_disabled: AtomicU64,
    /// Admin commands the owner took from its admin queue (with
    /// `--owner-socket`; the counters of admin write recording are the
    /// process's, kept with the member's).
    pub admin_commands: AtomicU64,
    /// Admin commands completed with a status other than OK, or without
    /// room for a status.
    pub admin_commands_failed: AtomicU64,
    /// Page records the member stored.
    pub write_records_stored: AtomicU64,
    /// Page records READ commands returned (stray records of the fault
    /// excluded).
    pub write_records_read: AtomicU64,
    /// New page records dropped because the store was full.
    pub write_record_overflows: AtomicU64,
    /// Successful WRITE_RECORDS_START commands.
    pub write_records_started: AtomicU64,
    mmio_reads: [AtomicU64; Area::ALL.len()],
    mmio_writes: [AtomicU64; Area::ALL.len()],
    /// The owner function's own counters, rendered with an `owner_` prefix.
    owner: OnceLock<Arc<Stats>>,
}

fn slot(area: Area) -> usize {
    Area::ALL.iter().position(|a| *a == area).unwrap_or(0)
}

impl Stats {
    /// Counts one read of `area`.
    pub fn mmio_read(&self, area: Area) {
        self.mmio_reads[slot(area)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one write of `area`.
    pub fn mmio_write(&self, area: Area) {
        self.mmio_writes[slot(area)].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads of `area` so far.
    pub fn reads_of(&self, area: Area) -> u64 {
        self.mmio_reads[slot(area)].load(Ordering::Relaxed)
    }

    /// Writes of `area` so far.
    pub fn writes_of(&self, area: Area) -> u64 {
        self.mmio_writes[slot(area)].load(Ordering::Relaxed)
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Renders the counters of `owner` (the owner function's) after these,
    /// each key prefixed with `owner_`. Only the first call has an effect.
    pub fn attach_owner(&self, owner: Arc<Stats>) {
        let _ = self.owner.set(owner);
    }

    /// Every counter as `key=value` lines: the function's, the admin write
    /// recording counters, then the owner's (`owner_` prefix) if attached.
    pub fn render(&self) -> String {
        let mut s = self.render_function("");
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let admin = [
            ("admin_commands", &self.admin_commands),
            ("admin_commands_failed", &self.admin_commands_failed),
            ("write_records_stored", &self.write_records_stored),
            ("write_records_read", &self.write_records_read),
            ("write_record_overflows", &self.write_record_overflows),
            ("write_records_started", &self.write_records_started),
        ];
        for (k, v) in admin {
            let _ = writeln!(s, "{k}={}", get(v));
        }
        if let Some(owner) = self.owner.get() {
            s.push_str(&owner.render_function("owner_"));
        }
        s
    }

    /// The counters of one function, each key prefixed with `prefix`.
    fn render_function(&self, prefix: &str) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let scalars = [
            ("requests_served", &self.requests_served),
            ("requests_failed", &self.requests_failed),
            ("bytes_dma_written", &self.bytes_dma_written),
            ("pages_marked_dirty", &self.pages_marked_dirty),
            ("dirty_bits_set", &self.dirty_bits_set),
            ("bitmap_dma_errors", &self.bitmap_dma_errors),
            ("interrupts_sent", &self.interrupts_sent),
            ("queue_stops", &self.queue_stops),
            ("resume_notifications", &self.resume_notifications),
            ("resets", &self.resets),
            ("function_resets", &self.function_resets),
            ("flr_resets", &self.flr_resets),
            ("pm_resets", &self.pm_resets),
            ("requests_abandoned", &self.requests_abandoned),
            ("dma_maps", &self.dma_maps),
            ("dma_unmaps", &self.dma_unmaps),
            ("dma_file_mmaps", &self.dma_file_mmaps),
            ("config_writes", &self.config_writes),
            (
                "bar_accesses_while_disabled",
                &self.bar_accesses_while_disabled,
            ),
        ];
        for (k, v) in scalars {
            let _ = writeln!(s, "{prefix}{k}={}", get(v));
        }
        for (i, area) in Area::ALL.iter().enumerate() {
            let name = area.name();
            let _ = writeln!(s, "{prefix}mmio_reads_{name}={}", get(&self.mmio_reads[i]));
            let _ = writeln!(
                s,
                "{prefix}mmio_writes_{name}={}",
                get(&self.mmio_writes[i])
            );
        }
        s
    }

    /// Writes [`Stats::render`] to `path` (atomically, through a rename).
    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_key() {
        let s = Stats::default();
        Stats::add(&s.requests_served, 3);
        s.mmio_write(Area::Notify);
        let out = s.render();
        assert!(out.contains("requests_served=3\n"));
        assert!(out.contains("mmio_writes_notify=1\n"));
        assert!(out.contains("mmio_reads_memory_track=0\n"));
        assert!(out.contains("admin_commands=0\n"));
        assert!(out.contains("\nconfig_writes=0\n"));
        assert!(out.contains("\nbar_accesses_while_disabled=0\n"));
        assert!(!out.contains("owner_"));
        let owner = Arc::new(Stats::default());
        Stats::add(&owner.resets, 2);
        Stats::add(&s.write_records_started, 1);
        s.attach_owner(owner);
        let out = s.render();
        assert!(out.contains("\nresets=0\n"));
        assert!(out.contains("\nowner_resets=2\n"));
        assert!(out.contains("write_records_started=1\n"));
        assert!(out.contains("\nowner_bar_accesses_while_disabled=0\n"));
        assert!(!out.contains("owner_admin_commands"));
    }
}
