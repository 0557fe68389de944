// SPDX-License-Identifier: GPL-2.0

//! Stopping and restarting the virtqueues through the device state capability.

use kernel::{
    prelude::*,
    time::{
        delay::fsleep,
        Delta,
        Instant,
        Monotonic, //
    },
    virtio::pci::virtio_pci_caps as caps,
};

use crate::regs::Regs;
use virtio_mig_core::mig_stream::MAX_QUEUES;

/// A set of queue indices.
#[derive(Clone, Copy, Default)]
pub(crate) struct QueueSet([u64; MAX_QUEUES / 64]);

impl QueueSet {
    pub(crate) fn insert(&mut self, index: u16) {
        if let Some(word) = self.0.get_mut(usize::from(index) / 64) {
            *word |= 1 << (index % 64);
        }
    }

    pub(crate) fn contains(&self, index: u16) -> bool {
        matches!(self.0.get(usize::from(index) / 64), Some(w) if w & (1 << (index % 64)) != 0)
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Queue count the device reports, bounded by what a stream can describe.
pub(crate) fn num_queues(regs: &Regs<'_>) -> Result<u16> {
    let n = regs.common.num_queues()?;
    if usize::from(n) > MAX_QUEUES {
        return Err(EINVAL);
    }
    Ok(n)
}

/// Stops every enabled queue and waits, at most `timeout_ms`, until the device reports each
/// stopped (it completes the requests in flight first). Returns the queues that were running.
pub(crate) fn quiesce(regs: &Regs<'_>, timeout_ms: u32) -> Result<QueueSet> {
    let mut stopped = QueueSet::default();
    let n = num_queues(regs)?;
    // Ask every queue to stop first, so their in-flight requests drain in parallel.
    for q in 0..n {
        regs.common.select_queue(q)?;
        if regs.common.queue_reg16(caps::COMMON_QUEUE_ENABLE)? == 0 {
            continue;
        }
        regs.state.select_queue(q)?;
        if regs.state.queue_status()? != 0 {
            regs.state.set_queue_status(0)?;
        }
        stopped.insert(q);
    }
    // One budget for all queues: they drain in parallel.
    let mut budget = timeout_ms;
    for q in (0..n).filter(|&q| stopped.contains(q)) {
        regs.state.select_queue(q)?;
        budget = wait_for(budget, || Ok(regs.state.queue_status()? == 0))?;
    }
    Ok(stopped)
}

/// Polls `done` until it holds, for at most `timeout_ms` of elapsed time (sleeps last longer
/// than asked on coarse clocks, so time is measured, not counted); returns the time left. A
/// device that never gets there costs a bounded wait and `ETIMEDOUT`, never a hang.
pub(crate) fn wait_for(timeout_ms: u32, mut done: impl FnMut() -> Result<bool>) -> Result<u32> {
    let start = Instant::<Monotonic>::now();
    let limit = i64::from(timeout_ms);
    loop {
        if done()? {
            let left = limit - start.elapsed().as_millis();
            return Ok(u32::try_from(left.max(0)).unwrap_or(0));
        }
        if start.elapsed().as_millis() >= limit {
            return Err(ETIMEDOUT);
        }
        fsleep(Delta::from_millis(1));
    }
}

/// Restarts `queues` from their `last_avail_idx` and kicks each, so the device looks at
/// requests that arrived while it was stopped.
pub(crate) fn resume(regs: &Regs<'_>, queues: &QueueSet) -> Result {
    let n = num_queues(regs)?;
    for q in (0..n).filter(|&q| queues.contains(q)) {
        regs.state.select_queue(q)?;
        regs.state.set_queue_status(1)?;
        regs.common.select_queue(q)?;
        regs.kick(q)?;
    }
    Ok(())
}
