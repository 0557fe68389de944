// SPDX-License-Identifier: GPL-2.0
//! One virtqueue: the split ring (from `virtio-queue`), its MSI-X vector,
//! and the run state of the device state capability.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use virtio_queue::{Queue, QueueT};

use crate::layout::VIRTIO_MSI_NO_VECTOR;

/// Run state of an enabled queue, driven through `queue_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// The device fetches and processes available buffers.
    Running,
    /// The driver wrote 0 to `queue_status` at the given instant: no new
    /// buffers are fetched, in-flight requests are completing.
    Stopping(Instant),
    /// Stopped: nothing in flight, `last_avail_idx` may be accessed.
    Stopped,
}

/// A virtqueue and its device-side state.
pub struct VirtQueue {
    /// The split ring.
    pub queue: Queue,
    /// MSI-X vector for used-buffer notifications.
    pub msix_vector: u16,
    /// Run state (meaningful while the queue is enabled).
    pub run: RunState,
    /// Requests fetched from the ring and not yet completed.
    pub in_flight: u32,
    /// Incremented by every reset; completions of an older generation are
    /// dropped.
    pub generation: u64,
}

impl VirtQueue {
    /// A disabled queue of at most `max_size` entries.
    pub fn new(max_size: u16) -> Self {
        Self {
            // The size was validated as a power of two when parsing options.
            queue: Queue::new(max_size).unwrap_or_else(|_| {
                Queue::new(256).unwrap_or_else(|_| unreachable!("256 is a valid queue size"))
            }),
            msix_vector: VIRTIO_MSI_NO_VECTOR,
            run: RunState::Stopped,
            in_flight: 0,
            generation: 0,
        }
    }

    /// Device reset of this queue.
    pub fn reset(&mut self) {
        self.queue.reset();
        self.msix_vector = VIRTIO_MSI_NO_VECTOR;
        self.run = RunState::Stopped;
        self.abandon_in_flight();
    }

    /// Drops the requests in flight: their completions will not touch
    /// guest memory.
    pub fn abandon_in_flight(&mut self) {
        self.in_flight = 0;
        self.generation = self.generation.wrapping_add(1);
    }

    /// The driver wrote 1 to `queue_enable`.
    pub fn enable(&mut self, event_idx: bool) {
        self.queue.set_event_idx(event_idx);
        self.queue.set_ready(true);
        self.run = RunState::Running;
    }

    /// Whether the queue is enabled (`queue_enable` reads 1).
    pub fn enabled(&self) -> bool {
        self.queue.ready()
    }

    /// Whether the device may fetch new buffers.
    pub fn can_fetch(&self) -> bool {
        self.enabled() && self.run == RunState::Running
    }
}

/// A queue behind its lock.
pub struct QueueSlot(Mutex<VirtQueue>);

impl QueueSlot {
    /// Wraps `vq`.
    pub fn new(vq: VirtQueue) -> Self {
        Self(Mutex::new(vq))
    }

    /// Locks the queue (a poisoned lock is still usable: the state is plain data).
    pub fn lock(&self) -> MutexGuard<'_, VirtQueue> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
