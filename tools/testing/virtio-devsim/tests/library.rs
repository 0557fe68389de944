// SPDX-License-Identifier: GPL-2.0
//! Tests of the device logic in-process (no socket): the library's
//! `Device` is driven through its `ServerBackend` methods.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use proptest::prelude::*;
use support::*;
use virtio_devsim::layout::{
    Area, DEVICE_CFG_LEN, DEVICE_CFG_OFFSET, DEVICE_CFG_WRITEBACK, DEVICE_STATE_OFFSET, ISR_OFFSET,
    MEMORY_TRACK_OFFSET, MSIX_BAR, VIRTIO_BAR,
};
use virtio_devsim::Config;

fn cfg(capacity: u64) -> Config {
    Config {
        capacity_sectors: Some(capacity),
        ..Config::default()
    }
}

/// Pages a request's completion writes besides its data: the status byte
/// and the used ring.
fn bookkeeping_pages(d: &Driver<DirectBus>, slot: u64) -> Vec<u64> {
    let mut p = d.queues[0].used_pages();
    p.push((STATUS_BASE + slot) >> 12);
    p
}

#[test]
fn tracker_with_concurrent_clearing() {
    let (mut d, _dir) = direct(cfg(4096));
    d.bring_up(VERSION_1 | EVENT_IDX, 1, 128);
    let bitmap_len = MEM_SIZE / 4096 / 8;
    d.track_start(0, bitmap_len);

    // A harvester swaps bitmap words to zero while the device sets bits.
    let stop = Arc::new(AtomicBool::new(false));
    let harvester = {
        let view = d.mem.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !stop.load(Ordering::SeqCst) {
                seen.extend(harvest(&view, bitmap_len));
            }
            seen
        })
    };

    let mut expect = BTreeSet::new();
    let rounds = 40u64;
    for r in 0..rounds {
        let slot = r % 100;
        let page = 0x200 + (r * 37) % 0x600;
        d.push_request(0, slot, T_IN, r, &[(page << 12, 4096)]);
        expect.insert(page);
        expect.extend(bookkeeping_pages(&d, slot));
        d.kick(0);
        d.wait_used(0, 1);
    }
    stop.store(true, Ordering::SeqCst);
    let mut seen = harvester.join().unwrap();
    seen.extend(d.harvest(bitmap_len));
    assert_eq!(seen, expect, "no dirty page lost, none invented");
    let stats = d.bus.0.shared().stats.clone();
    assert_eq!(stats.requests_served.load(Ordering::SeqCst), rounds);
    assert_eq!(stats.bitmap_dma_errors.load(Ordering::SeqCst), 0);
    assert!(stats.writes_of(Area::MemoryTrack) >= 4);
}

#[test]
fn in_process_stop_waits_for_in_flight() {
    let (mut d, _dir) = direct(Config {
        request_delay_ms: 100,
        ..cfg(64)
    });
    d.bring_up(VERSION_1, 1, 32);
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 512)]);
    d.push_request(0, 1, T_IN, 1, &[(DATA_BASE + 512, 512)]);
    d.kick(0);
    thread::sleep(Duration::from_millis(30));
    d.select_state(0);
    d.set_queue_status(0);
    let mut polls = 0;
    while d.queue_status() != 0 {
        // Reading 1 means requests are still being completed.
        assert!(d.queues[0].used_idx(&d.mem) < 2);
        polls += 1;
        thread::sleep(Duration::from_millis(5));
    }
    assert!(polls > 0, "the stop could not have completed instantly");
    assert_eq!(d.queues[0].used_idx(&d.mem), 2);
}

/// A queue that resumes notifies its vector once, even with nothing new to
/// complete: the notification of a request completed while it stopped may
/// have been lost on the way to the driver.
#[test]
fn resume_notifies_the_driver() {
    use vfio_bindings::bindings::vfio::{
        VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX,
    };
    use vfio_user::ServerBackend;

    let (mut d, _dir) = direct(cfg(64));
    d.bring_up(VERSION_1 | EVENT_IDX, 1, 32);
    let irq = eventfd();
    d.bus
        .0
        .set_irqs(
            VFIO_PCI_MSIX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            1,
            1,
            vec![irq.try_clone().unwrap()],
        )
        .unwrap();
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 512)]);
    d.kick(0);
    d.wait_used(0, 1);
    thread::sleep(Duration::from_millis(20));
    assert!(eventfd_take(&irq) >= 1, "the completion was notified");

    d.select_state(0);
    d.set_queue_status(0);
    while d.queue_status() != 0 {
        thread::sleep(Duration::from_millis(1));
    }
    // Stopping alone notifies nothing.
    assert_eq!(eventfd_take(&irq), 0);
    d.set_queue_status(1);
    assert_eq!(eventfd_take(&irq), 1, "resuming notified the driver once");
    let stats = d.bus.0.shared().stats.clone();
    assert_eq!(stats.resume_notifications.load(Ordering::SeqCst), 1);
    // Writing 1 to a running queue is not a resume.
    d.set_queue_status(1);
    assert_eq!(eventfd_take(&irq), 0);
}

/// One generated request: read or write `sectors` sectors at `sector`
/// into a buffer at `page` + `offset`.
#[derive(Clone, Debug)]
struct Req {
    read: bool,
    sector: u64,
    sectors: u64,
    page: u64,
    offset: u64,
}

fn req() -> impl Strategy<Value = Req> {
    (
        any::<bool>(),
        0u64..120,
        1u64..17,
        0x200u64..0xe00,
        0u64..4096,
    )
        .prop_map(|(read, sector, sectors, page, offset)| Req {
            read,
            sector,
            sectors,
            page,
            offset,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The set of dirty pages equals the set of pages the device wrote.
    #[test]
    fn dirty_set_equals_written_set(reqs in prop::collection::vec(req(), 1..12), gra in 0u8..3) {
        let (mut d, _dir) = direct(cfg(256));
        d.bring_up(VERSION_1 | EVENT_IDX, 1, 64);
        let bitmap_len = MEM_SIZE / (4096 << gra) / 8;
        prop_assert_eq!(d.track_start(gra, bitmap_len), gra);
        let mut expect = BTreeSet::new();
        for (i, r) in reqs.iter().enumerate() {
            let slot = i as u64;
            let addr = (r.page << 12) + r.offset;
            let len = r.sectors * 512;
            d.push_request(0, slot, if r.read { T_IN } else { T_OUT }, r.sector, &[(addr, len as u32)]);
            if r.read {
                expect.extend((addr >> 12..=(addr + len - 1) >> 12).map(|p| p >> gra));
            }
            expect.extend(bookkeeping_pages(&d, slot).into_iter().map(|p| p >> gra));
        }
        d.kick(0);
        d.wait_used(0, reqs.len() as u16);
        for i in 0..reqs.len() as u64 {
            prop_assert_eq!(d.status_byte(i), 0);
        }
        let seen: BTreeSet<u64> = d.harvest(bitmap_len).into_iter().collect();
        prop_assert_eq!(seen, expect);
    }
}

#[test]
fn reset_abandons_requests_that_outlast_the_drain() {
    use virtio_devsim::layout::RESET_DRAIN_TIMEOUT_MS;
    use vm_memory::Bytes;
    let delay = RESET_DRAIN_TIMEOUT_MS + 1500;
    let (mut d, _dir) = direct(Config {
        request_delay_ms: delay,
        ..cfg(64)
    });
    d.bring_up(VERSION_1, 1, 32);
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 512)]);
    d.mem
        .write_slice(&[0x5a; 512], vm_memory::GuestAddress(DATA_BASE))
        .unwrap();
    d.kick(0);
    thread::sleep(Duration::from_millis(50));
    let start = std::time::Instant::now();
    d.set_power_state(3);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(RESET_DRAIN_TIMEOUT_MS));
    assert!(waited < Duration::from_millis(delay), "bounded wait");
    d.set_power_state(0);
    assert_eq!(d.status(), 0);
    // Past the moment the request would have completed: it never does.
    let done_at = Duration::from_millis(delay + 200);
    thread::sleep(done_at.saturating_sub(start.elapsed()));
    assert_eq!(d.queues[0].used_idx(&d.mem), 0);
    assert_eq!(d.status_byte(0), 0xff);
    let mut data = [0u8; 512];
    d.mem
        .read_slice(&mut data, vm_memory::GuestAddress(DATA_BASE))
        .unwrap();
    assert_eq!(data, [0x5a; 512], "guest memory untouched");
    let stats = d.bus.0.shared().stats.clone();
    assert_eq!(stats.requests_abandoned.load(Ordering::SeqCst), 1);
    assert_eq!(stats.requests_served.load(Ordering::SeqCst), 0);
    assert_eq!(stats.pm_resets.load(Ordering::SeqCst), 1);
}

/// `VIRTIO_BLK_F_CONFIG_WCE`.
const BLK_F_CONFIG_WCE: u64 = 1 << 11;

fn device_config(d: &mut Driver<DirectBus>) -> Vec<u8> {
    let mut b = vec![0u8; DEVICE_CFG_LEN as usize];
    d.bus.read(VIRTIO_BAR as u32, DEVICE_CFG_OFFSET, &mut b);
    b
}

/// `writeback` is the one writable byte of the device configuration; every
/// reset makes it 1 again.
#[test]
fn config_wce_writeback_is_writable_until_reset() {
    use vfio_user::ServerBackend;

    let (mut d, _dir) = direct(cfg(64));
    let stats = d.bus.0.shared().stats.clone();
    let config_writes = || stats.config_writes.load(Ordering::SeqCst);
    let wb = DEVICE_CFG_OFFSET + DEVICE_CFG_WRITEBACK;
    assert_ne!(
        d.device_features() & BLK_F_CONFIG_WCE,
        0,
        "CONFIG_WCE offered"
    );
    assert!(d.negotiate(VERSION_1 | BLK_F_CONFIG_WCE));
    assert_eq!(d.bar_read(wb, 1), 1, "writeback after creation");
    let initial = device_config(&mut d);

    d.bar_write(wb, 1, 0);
    assert_eq!(d.bar_read(wb, 1), 0, "writethrough");
    assert_eq!(config_writes(), 1);
    d.bar_write(wb, 1, 0);
    assert_eq!(config_writes(), 1, "a write that changes nothing");

    // Every other byte ignores writes, alone or next to writeback.
    let mut expect = initial.clone();
    expect[DEVICE_CFG_WRITEBACK as usize] = 0;
    for off in (0..DEVICE_CFG_LEN).filter(|&o| o != DEVICE_CFG_WRITEBACK) {
        d.bar_write(DEVICE_CFG_OFFSET + off, 1, 0xa5);
    }
    assert_eq!(device_config(&mut d), expect);
    assert_eq!(config_writes(), 1);
    d.bar_write(wb, 4, 0xa5a5_a501);
    assert_eq!(device_config(&mut d), initial, "only writeback changed");
    assert_eq!(config_writes(), 2);

    // Virtio reset, then each function reset.
    type Reset = fn(&mut Driver<DirectBus>);
    let resets: [(&str, Reset); 4] = [
        ("device_status 0", |d| d.set_status(0)),
        ("FLR", |d| d.initiate_flr()),
        ("D3hot to D0", |d| {
            d.set_power_state(3);
            d.set_power_state(0);
        }),
        ("VFIO_USER_DEVICE_RESET", |d| d.bus.0.reset().unwrap()),
    ];
    for (i, (name, reset)) in resets.iter().enumerate() {
        d.bar_write(wb, 1, 0);
        assert_eq!(d.bar_read(wb, 1), 0);
        reset(&mut d);
        assert_eq!(d.bar_read(wb, 1), 1, "writeback after {name}");
        assert_eq!(device_config(&mut d), initial, "configuration after {name}");
        assert_eq!(config_writes(), 3 + i as u64);
    }
}

/// Every BAR access made while the function does not decode memory is
/// counted, and served all the same.
#[test]
fn bar_accesses_while_disabled_are_counted() {
    let (mut d, _dir) = direct(cfg(64));
    let stats = d.bus.0.shared().stats.clone();
    let disabled = || stats.bar_accesses_while_disabled.load(Ordering::SeqCst);
    // One access of each BAR area; returns how many it made.
    let touch_all = |d: &mut Driver<DirectBus>| -> u64 {
        assert_eq!(d.bar_read(0x12, 2), 1, "num_queues is served");
        assert_eq!(d.bar_read(DEVICE_CFG_OFFSET, 8), 64, "capacity is served");
        d.bar_read(ISR_OFFSET, 1);
        d.bar_read(MEMORY_TRACK_OFFSET, 1);
        d.bar_read(DEVICE_STATE_OFFSET, 2);
        d.bar_write(DEVICE_STATE_OFFSET, 2, 0);
        d.kick(0);
        d.bar_read(0x7000, 4);
        let mut b = [0u8; 4];
        d.bus.read(MSIX_BAR as u32, 0, &mut b);
        d.bus.write(MSIX_BAR as u32, 0, &b);
        d.bus.read(0, 0, &mut b);
        11
    };
    let command = 0x0006; // memory space, bus master
    d.config_write(0x04, 2, command);
    d.bring_up(VERSION_1, 1, 32);
    touch_all(&mut d);
    assert_eq!(disabled(), 0, "memory space enabled");

    d.config_write(0x04, 2, command & !2);
    let n = touch_all(&mut d);
    assert_eq!(disabled(), n, "memory space disabled");
    assert_eq!(
        d.config_read(0x04, 2),
        command & !2,
        "config access is no BAR access"
    );
    assert_eq!(disabled(), n);

    d.config_write(0x04, 2, command);
    touch_all(&mut d);
    assert_eq!(disabled(), n, "memory space enabled again");

    d.set_power_state(3);
    let m = touch_all(&mut d);
    assert_eq!(disabled(), n + m, "D3hot");
    // Back in D0 the function was reset: Command is 0 again.
    d.set_power_state(0);
    assert_eq!(d.config_read(0x04, 2), 0);
    d.bar_read(0x12, 2);
    assert_eq!(disabled(), n + m + 1);
    d.config_write(0x04, 2, command);
    touch_all(&mut d);
    assert_eq!(disabled(), n + m + 1);
}
