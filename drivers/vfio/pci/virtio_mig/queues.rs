// SPDX-License-Identifier: GPL-2.0

//! Stopping and restarting the virtqueues through the device state capability.
//!
//! The device ignores `queue_status` writes to a disabled queue and writes of 1 to a running
//! one, so every queue is stopped and resumed without first reading which are enabled.

use kernel::{
    io::poll::read_poll_timeout,
    prelude::*,
    time::{
        delay::fsleep,
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

/// First pause of a wait for the device, doubled after every look.
const POLL_FIRST_DELAY: Delta = Delta::from_micros(16);

/// Reads `op` until `cond` holds, at most `timeout` long. The first look is immediate, the
/// next after [`POLL_FIRST_DELAY`], each later one after twice the previous pause (never past
/// the timeout): a device that is ready at once costs one read, one that drains for 100 ms
/// about a dozen and one that drains for 2 s under twenty, where a fixed 1 ms period costs one
/// read per period. The price is that a wait sees the device ready at most as late again as
/// it waited already.
pub(crate) fn poll<T>(
    mut op: impl FnMut() -> Result<T>,
    cond: impl FnMut(&T) -> bool,
    timeout: Delta,
) -> Result<T> {
    let start = Instant::<Monotonic>::now();
    let mut pause = Delta::ZERO;
    read_poll_timeout(
        || {
            // Past the timeout the pause is negative: look once more, at once.
            if pause.as_nanos() > 0 {
                fsleep(pause);
            }
            pause = if pause.is_zero() {
                POLL_FIRST_DELAY
            } else {
                core::cmp::min(pause * 2, timeout - start.elapsed())
            };
            op()
        },
        cond,
        Delta::ZERO,
        timeout,
    )
}

/// Queue count the device reports, bounded by what a stream can describe.
pub(crate) fn num_queues(regs: &Regs<'_>) -> Result<u16> {
    let n = regs.common.num_queues()?;
    if usize::from(n) > MAX_QUEUES {
        return Err(EINVAL);
    }
    Ok(n)
}

/// Stops the device's `num_queues` queues and waits, at most `timeout`, until the device
/// reports each stopped (it completes the requests in flight first); returns them. A device
/// that never gets there costs a bounded wait and `ETIMEDOUT`, never a hang.
pub(crate) fn quiesce(regs: &Regs<'_>, num_queues: u16, timeout: Delta) -> Result<QueueSet> {
    let mut stopped = QueueSet::default();
    // Ask every queue to stop first, so their in-flight requests drain in parallel.
    for q in 0..num_queues {
        regs.state.select_queue(q)?;
        regs.state.stop_queue()?;
        stopped.insert(q);
    }
    // One budget for all queues. The last one asked is still selected.
    let start = Instant::<Monotonic>::now();
    let last = num_queues.checked_sub(1);
    for q in 0..num_queues {
        if Some(q) != last {
            regs.state.select_queue(q)?;
        }
        poll(
            || regs.state.queue_stopped(),
            |&done| done,
            timeout - start.elapsed(),
        )?;
    }
    Ok(stopped)
}

/// Restarts `queues` from their `last_avail_idx`. The device processes whatever the driver
/// made available while they were stopped by itself, so no notification is needed.
pub(crate) fn resume(regs: &Regs<'_>, queues: &QueueSet) -> Result {
    for q in (0..MAX_QUEUES as u16).filter(|&q| queues.contains(q)) {
        regs.state.select_queue(q)?;
        regs.state.resume_queue()?;
    }
    Ok(())
}
