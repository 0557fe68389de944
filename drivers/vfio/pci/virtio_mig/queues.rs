// SPDX-License-Identifier: GPL-2.0

//! Stopping and restarting the virtqueues through the device state capability.

use kernel::{
    io::poll::read_poll_timeout,
    prelude::*,
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
};
use virtio_mig_core::mig_stream::{
    QueueSet,
    MAX_QUEUES, //
};

use crate::regs::Regs;

/// How often a wait for the device looks again.
pub(crate) const POLL_INTERVAL: Delta = Delta::from_millis(1);

/// Queue count the device reports, bounded by what a stream can describe.
pub(crate) fn num_queues(regs: &Regs<'_>) -> Result<u16> {
    let n = regs.common.num_queues()?;
    if usize::from(n) > MAX_QUEUES {
        return Err(EINVAL);
    }
    Ok(n)
}

/// Stops every enabled queue and waits, at most `timeout`, until the device reports each
/// stopped (it completes the requests in flight first). Returns the queues that were running.
/// A device that never gets there costs a bounded wait and `ETIMEDOUT`, never a hang.
pub(crate) fn quiesce(regs: &Regs<'_>, timeout: Delta) -> Result<QueueSet> {
    let mut stopped = QueueSet::default();
    let n = num_queues(regs)?;
    // Ask every queue to stop first, so their in-flight requests drain in parallel.
    for q in 0..n {
        regs.common.select_queue(q)?;
        if regs.common.queue_enable()? == 0 {
            continue;
        }
        regs.state.select_queue(q)?;
        if !regs.state.queue_stopped()? {
            regs.state.stop_queue()?;
        }
        stopped.insert(q);
    }
    // One budget for all queues: they drain in parallel.
    let start = Instant::<Monotonic>::now();
    for q in (0..n).filter(|&q| stopped.contains(q)) {
        regs.state.select_queue(q)?;
        read_poll_timeout(
            || regs.state.queue_stopped(),
            |&done| done,
            POLL_INTERVAL,
            timeout - start.elapsed(),
        )?;
    }
    Ok(stopped)
}

/// Restarts `queues` from their `last_avail_idx` and kicks each, so the device looks at
/// requests that arrived while it was stopped.
pub(crate) fn resume(regs: &Regs<'_>, queues: &QueueSet) -> Result {
    let n = num_queues(regs)?;
    for q in (0..n).filter(|&q| queues.contains(q)) {
        regs.state.select_queue(q)?;
        regs.state.resume_queue()?;
        regs.common.select_queue(q)?;
        regs.kick(q)?;
    }
    Ok(())
}
