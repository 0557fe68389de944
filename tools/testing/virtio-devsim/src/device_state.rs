// SPDX-License-Identifier: GPL-2.0
//! Device state capability (`VIRTIO_PCI_CAP_DEVICE_STATE_CFG`, cfg_type 11).
//!
//! Register block (8 bytes, little endian):
//!
//! | offset | field                 | access |
//! |--------|-----------------------|--------|
//! | 0      | `le16 queue_select`   | RW     |
//! | 2      | `le16 last_avail_idx` | RW while the selected queue is stopped |
//! | 4      | `u8 queue_status`     | RW: 1 running, 0 stopped |
//! | 5      | `u8 reserved[3]`      | RO 0   |
//!
//! Rules implemented:
//! - `queue_status` reads 0 after reset and 1 once `queue_enable` is 1.
//! - Writing 0 stops fetching new buffers; `queue_status` keeps reading 1
//!   until every request fetched before the stop completed (used ring
//!   updated), then reads 0.
//! - Writing 1 resumes fetching at `last_avail_idx`, processes whatever
//!   the driver made available meanwhile, and sends the queue's used-buffer
//!   notification once. A notification the source raised while it stopped
//!   may never have reached the driver: a hypervisor that delivers MSI-X
//!   from its main loop reads the eventfd only after it saved the interrupt
//!   controller. The driver copes with a spurious notification, not with a
//!   lost one (a request it waits for forever).
//! - `last_avail_idx` writes are honoured only while the queue is stopped
//!   (enabled and `queue_status` reading 0); they set both the next index
//!   to fetch and the next used index (equal once nothing is in flight).
//! - `queue_status` and `last_avail_idx` writes to a queue whose
//!   `queue_enable` is 0 are ignored.

use std::time::{Duration, Instant};

use virtio_queue::QueueT;

use crate::config::Faults;
use crate::device::Device;
use crate::queue::{RunState, VirtQueue};
use crate::regs::Field;
use crate::stats::Stats;

const QUEUE_SELECT: Field = Field::new(0, 2);
const LAST_AVAIL_IDX: Field = Field::new(2, 2);
const QUEUE_STATUS: Field = Field::new(4, 1);

/// The value `queue_status` reads for `vq`. A stopping queue whose in-flight
/// requests all completed becomes stopped here, when the driver looks.
pub fn queue_status(vq: &mut VirtQueue, faults: &Faults) -> u8 {
    if !vq.enabled() {
        return 0;
    }
    match vq.run {
        RunState::Running => 1,
        RunState::Stopped => 0,
        RunState::Stopping(since) => {
            let drained = vq.in_flight == 0;
            let slow = Duration::from_millis(faults.slow_stop_ms);
            if drained && !faults.never_stop && since.elapsed() >= slow {
                vq.run = RunState::Stopped;
                0
            } else {
                1
            }
        }
    }
}

impl Device {
    pub(crate) fn device_state_read(&mut self, off: u64, buf: &mut [u8]) {
        QUEUE_SELECT.read(off, buf, self.state_select.into());
        let faults = self.shared.cfg.faults.clone();
        let Some(slot) = self.shared.queues.get(self.state_select as usize) else {
            return;
        };
        let mut vq = slot.lock();
        LAST_AVAIL_IDX.read(off, buf, vq.queue.next_avail().into());
        if QUEUE_STATUS.overlaps(off, buf.len()) {
            let status = queue_status(&mut vq, &faults);
            QUEUE_STATUS.read(off, buf, status.into());
        }
    }

    pub(crate) fn device_state_write(&mut self, off: u64, data: &[u8]) {
        if let Some(v) = QUEUE_SELECT.write(off, data, self.state_select.into()) {
            self.state_select = v as u16;
        }
        let index = self.state_select as usize;
        let faults = self.shared.cfg.faults.clone();
        let Some(slot) = self.shared.queues.get(index) else {
            return;
        };
        let mut resume = None;
        {
            let mut vq = slot.lock();
            if !vq.enabled() {
                return;
            }
            if let Some(v) = LAST_AVAIL_IDX.write(off, data, vq.queue.next_avail().into()) {
                if queue_status(&mut vq, &faults) == 0 {
                    vq.queue.set_next_avail(v as u16);
                    vq.queue.set_next_used(v as u16);
                }
            }
            if let Some(v) = QUEUE_STATUS.write(off, data, 0) {
                match (v, vq.run) {
                    (0, RunState::Running) => {
                        vq.run = RunState::Stopping(Instant::now());
                        Stats::add(&self.shared.stats.queue_stops, 1);
                    }
                    (0, _) => {}
                    (_, RunState::Running) => {}
                    (_, _) => {
                        vq.run = RunState::Running;
                        resume = Some(vq.msix_vector);
                    }
                }
            }
        }
        if let Some(vector) = resume {
            Stats::add(&self.shared.stats.resume_notifications, 1);
            self.shared.interrupt_queue(vector);
            // Process whatever became available while the queue was stopped.
            self.kick(index);
        }
    }
}
