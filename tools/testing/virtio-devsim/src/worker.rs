// SPDX-License-Identifier: GPL-2.0
//! Queue workers: one thread per virtqueue fetches available requests,
//! holds them in flight, executes them against the block backend and
//! publishes the used entries.
//!
//! A fetch takes every available descriptor chain at once (so several
//! requests are in flight together); completion then goes one request at a
//! time, each held `--request-delay-ms`. A stop written through the device
//! state capability prevents the next fetch but lets the fetched requests
//! complete, which is what `queue_status` waits for.
//!
//! The owner's admin queue has a worker like the others; it executes admin
//! commands ([`crate::admin`]) instead of block requests.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use virtio_bindings::virtio_blk::VIRTIO_BLK_S_OK;
use virtio_queue::QueueT;

use crate::admin::Outcome;
use crate::blk::Segment;
use crate::device::Shared;
use crate::stats::Stats;

/// A request fetched from the ring.
struct Fetched {
    head: u16,
    segs: Vec<Segment>,
}

/// Starts the worker of queue `index`; it runs until `kicks` is closed.
pub fn spawn(shared: Arc<Shared>, index: usize, kicks: Receiver<()>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("devsim-q{index}"))
        .spawn(move || {
            while kicks.recv().is_ok() {
                while let Some((generation, batch)) = fetch(&shared, index) {
                    for req in batch {
                        complete(&shared, index, generation, req);
                    }
                }
            }
        })
}

/// Takes every available request of queue `index`, if the queue may fetch.
fn fetch(shared: &Shared, index: usize) -> Option<(u64, Vec<Fetched>)> {
    if !shared.driver_ok() {
        return None;
    }
    let mem = shared.mem.memory();
    let mut vq = shared.queues.get(index)?.lock();
    // `quiesced` is read under the queue lock: a reset waiting for the
    // queue to drain either sees what this fetch takes, or stops it.
    if !vq.can_fetch() || shared.quiesced.load(Ordering::SeqCst) {
        return None;
    }
    let mut batch = Vec::new();
    loop {
        let before = batch.len();
        // Errors here come from ring addresses outside guest memory; the
        // fetch then simply finds nothing.
        let _ = vq.queue.disable_notification(&mem);
        while let Some(chain) = vq.queue.pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            let segs = chain
                .map(|d| Segment {
                    addr: d.addr().0,
                    len: d.len(),
                    write: d.is_write_only(),
                })
                .collect();
            batch.push(Fetched { head, segs });
        }
        // Re-arm notifications; if more arrived meanwhile, fetch again
        // (but never spin on a ring that yields nothing).
        let more = vq.queue.enable_notification(&mem).unwrap_or(false);
        if !more || batch.len() == before {
            break;
        }
    }
    if batch.is_empty() {
        return None;
    }
    vq.in_flight += batch.len() as u32;
    Some((vq.generation, batch))
}

/// Executes one fetched request and publishes it in the used ring.
fn complete(shared: &Shared, index: usize, generation: u64, req: Fetched) {
    let Some(slot) = shared.queues.get(index) else {
        return;
    };
    if shared.cfg.request_delay_ms > 0 {
        if slot.lock().generation != generation {
            Stats::add(&shared.stats.requests_abandoned, 1);
            return;
        }
        thread::sleep(Duration::from_millis(shared.cfg.request_delay_ms));
    }
    let mem = shared.mem.memory();
    let mut vq = slot.lock();
    if vq.generation != generation {
        // The device was reset while the request was in flight: it is
        // abandoned, guest memory is not touched.
        Stats::add(&shared.stats.requests_abandoned, 1);
        return;
    }
    if shared.admin_queue() == Some(index) {
        let Some(admin) = shared.admin.as_ref() else {
            return;
        };
        match admin.execute(&mem, &req.segs) {
            Outcome::Hang => {
                // Never completed; not in flight either, so that resets do
                // not wait for it.
                vq.in_flight = vq.in_flight.saturating_sub(1);
            }
            Outcome::Done {
                used_len,
                reset_after,
                ..
            } => {
                let _ = vq.queue.add_used(&mem, req.head, used_len);
                if vq.queue.needs_notification(&mem).unwrap_or(true) {
                    shared.interrupt_queue(vq.msix_vector);
                }
                vq.in_flight = vq.in_flight.saturating_sub(1);
                drop(vq);
                if reset_after {
                    eprintln!("virtio-devsim: fault: owner resets after a READ");
                    shared.reset_by_device();
                }
            }
        }
        return;
    }
    let done = shared.blk.execute(&mem, &req.segs);
    if done.status != Some(VIRTIO_BLK_S_OK as u8) {
        Stats::add(&shared.stats.requests_failed, 1);
    }
    let _ = vq.queue.add_used(&mem, req.head, done.used_len);
    if vq.queue.needs_notification(&mem).unwrap_or(true) {
        shared.interrupt_queue(vq.msix_vector);
    }
    vq.in_flight = vq.in_flight.saturating_sub(1);
    drop(vq);
    shared.request_completed();
}
