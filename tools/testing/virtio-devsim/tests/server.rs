// SPDX-License-Identifier: GPL-2.0
//! Tests over a real vfio-user socket against the `virtio-devsim` binary.

mod support;

use std::time::Duration;

use support::*;
use virtio_devsim::layout::*;
use vm_memory::{Bytes, GuestAddress};

#[test]
fn negotiation_and_regions() {
    let srv = Server::spawn(&["--queues", "2"]);
    let d = srv.connect();
    let SocketBus(client) = &d.bus;
    let bar4 = client.region(4).expect("BAR4");
    assert_eq!(bar4.size, VIRTIO_BAR_SIZE);
    assert_eq!(client.region(1).expect("BAR1").size, MSIX_BAR_SIZE);
    assert_eq!(client.region(7).expect("config").size, 256);
    // Client::resettable() of vfio_user 0.1.7 inverts the RESET flag, so it
    // is not checked here; DEVICE_RESET is exercised by the reset tests.
}

#[test]
fn config_space_bytes() {
    let srv = Server::spawn(&["--queues", "2"]);
    let mut d = srv.connect();
    let c = d.config_space(256);
    let expect: &[(usize, &[u8])] = &[
        (0x00, &[0xf4, 0x1a, 0x42, 0x10]),
        (0x06, &[0x10, 0x00]),
        (0x08, &[0x01, 0x00, 0x80, 0x01]),
        (0x14, &[0, 0, 0, 0]),
        (0x20, &[0x04, 0, 0, 0]),
        (0x2c, &[0xf4, 0x1a, 0x00, 0x11]),
        (0x34, &[0x40]),
        (0x3d, &[0x00]),
        // common: bar 4, offset 0, length 0x38
        (
            0x40,
            &[0x09, 0x50, 16, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0x38, 0, 0, 0],
        ),
        // notify: offset 0x3000, length 0x1000, multiplier 4
        (
            0x50,
            &[
                0x09, 0x64, 20, 2, 4, 0, 0, 0, 0, 0x30, 0, 0, 0, 0x10, 0, 0, 4, 0, 0, 0,
            ],
        ),
        // isr: offset 0x1000, length 1
        (
            0x64,
            &[0x09, 0x74, 16, 3, 4, 0, 0, 0, 0, 0x10, 0, 0, 1, 0, 0, 0],
        ),
        // device: offset 0x2000, length 0x3c
        (
            0x74,
            &[0x09, 0x84, 16, 4, 4, 0, 0, 0, 0, 0x20, 0, 0, 0x3c, 0, 0, 0],
        ),
        // memory track: cfg_type 10, offset 0x4000, length 24
        (
            0x84,
            &[0x09, 0x94, 16, 10, 4, 0, 0, 0, 0, 0x40, 0, 0, 24, 0, 0, 0],
        ),
        // device state: cfg_type 11, offset 0x5000, length 8
        (
            0x94,
            &[0x09, 0xa4, 16, 11, 4, 0, 0, 0, 0, 0x50, 0, 0, 8, 0, 0, 0],
        ),
        // MSI-X: table size 3 (encoded 2), table BIR 1 @0, PBA BIR 1 @0x800
        (
            0xa4,
            &[0x11, 0xb0, 0x02, 0x00, 0x01, 0, 0, 0, 0x01, 0x08, 0, 0],
        ),
        // PCI Express: version 2, endpoint
        (0xb0, &[0x10, 0xec, 0x02, 0x00]),
        // Device Capabilities: role-based error reporting, FLR
        (0xb4, &[0x00, 0x80, 0x00, 0x10]),
        // Device Control 0x2810, Device Status 0
        (0xb8, &[0x10, 0x28, 0x00, 0x00]),
        // Link Capabilities and Status: 2.5 GT/s x1
        (0xbc, &[0x11, 0x00, 0x00, 0x00]),
        (0xc0, &[0x00, 0x00, 0x11, 0x00]),
        (0xc4, &[0; 0x28]),
        // power management: PMC version 3, PMCSR D0 with No_Soft_Reset clear
        (0xec, &[0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00]),
        (0xf4, &[0; 12]),
    ];
    for (at, bytes) in expect {
        assert_eq!(
            &c[*at..*at + bytes.len()],
            *bytes,
            "config space at {at:#x}"
        );
    }
}

#[test]
fn feature_negotiation_and_common_cfg() {
    let srv = Server::spawn(&["--queues", "3", "--queue-size", "128"]);
    let mut d = srv.connect();
    let f = d.device_features();
    assert_eq!(
        f & (VERSION_1 | ACCESS_PLATFORM | EVENT_IDX | BLK_F_MQ),
        VERSION_1 | ACCESS_PLATFORM | EVENT_IDX | BLK_F_MQ
    );
    assert_eq!(d.bar_read(0x12, 2), 3, "num_queues");
    // Without VERSION_1 the device refuses FEATURES_OK.
    assert!(!d.negotiate(EVENT_IDX));
    // Unknown feature bits are refused too.
    assert!(!d.negotiate(VERSION_1 | (1 << 50)));
    assert!(d.negotiate(VERSION_1 | EVENT_IDX));
    d.bar_write(0x16, 2, 1);
    assert_eq!(d.bar_read(0x18, 2), 128, "queue_size defaults to max");
    assert_eq!(d.bar_read(0x1e, 2), 1, "queue_notify_off = index");
    d.bar_write(0x20, 8, 0x1234_5000);
    assert_eq!(d.bar_read(0x20, 8), 0x1234_5000);
    d.bar_write(0x1a, 2, 7);
    assert_eq!(
        d.bar_read(0x1a, 2),
        0xffff,
        "vector beyond table is refused"
    );
    d.bar_write(0x1a, 2, 2);
    assert_eq!(d.bar_read(0x1a, 2), 2);
    // Device config: capacity, num_queues and writeback (CONFIG_WCE).
    assert_eq!(d.bar_read(DEVICE_CFG_OFFSET, 8), 32768);
    assert_eq!(d.bar_read(DEVICE_CFG_OFFSET + 0x22, 2), 3);
    assert_ne!(f & (1 << 11), 0, "VIRTIO_BLK_F_CONFIG_WCE");
    d.bar_write(DEVICE_CFG_OFFSET + DEVICE_CFG_WRITEBACK, 1, 0);
    assert_eq!(d.bar_read(DEVICE_CFG_OFFSET + DEVICE_CFG_WRITEBACK, 1), 0);
}

#[test]
fn blk_read_writes_guest_memory() {
    let srv = Server::spawn(&["--capacity-sectors", "64"]);
    let pattern: Vec<u8> = (0..64 * 512).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(srv.backing(), &pattern).unwrap();
    let mut d = srv.connect();
    d.bring_up(VERSION_1 | EVENT_IDX, 1, 64);
    let irq = eventfd();
    let SocketBus(client) = &mut d.bus;
    client
        .set_irqs(
            2,
            (1 << 2) | (1 << 5),
            1,
            1,
            &[std::os::fd::AsRawFd::as_raw_fd(&irq)],
        )
        .unwrap();
    d.push_request(0, 0, T_IN, 3, &[(DATA_BASE, 1024)]);
    d.kick(0);
    let used = d.wait_used(0, 1);
    assert_eq!(used[0].1, 1025);
    assert_eq!(d.status_byte(0), 0);
    let mut got = vec![0u8; 1024];
    d.mem.read_slice(&mut got, GuestAddress(DATA_BASE)).unwrap();
    assert_eq!(&got[..], &pattern[3 * 512..5 * 512]);
    std::thread::sleep(Duration::from_millis(20));
    assert!(eventfd_take(&irq) >= 1, "MSI-X vector 1 signalled");
}

/// Pages the device writes when completing requests on queue 0 with the
/// tests' layout: the used ring (incl. avail_event) and the status bytes.
fn ring_and_status_pages(d: &Driver<SocketBus>) -> Vec<u64> {
    let mut p = d.queues[0].used_pages();
    p.push(STATUS_BASE >> 12);
    p
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn tracker_marks_exactly_the_written_pages() {
    let srv = Server::spawn(&["--capacity-sectors", "4096"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1 | EVENT_IDX, 1, 64);
    let bitmap_len = MEM_SIZE / 4096 / 8;
    assert_eq!(d.track_start(0, bitmap_len), 0);
    assert_eq!(d.track_read(8, 8), BITMAP_BASE);
    assert_eq!(d.track_read(16, 8), bitmap_len);
    assert_eq!(d.track_read(0, 1), 1);

    // A read into two pages (0x200e00..0x2011ff).
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE + 0xe00, 1024)]);
    d.kick(0);
    d.wait_used(0, 1);
    let mut expect = ring_and_status_pages(&d);
    expect.extend([DATA_BASE >> 12, (DATA_BASE >> 12) + 1]);
    assert_eq!(d.harvest(bitmap_len), sorted(expect));

    // A write: the device only writes the status byte and the used ring.
    d.push_request(0, 1, T_OUT, 8, &[(DATA_BASE + 0x5000, 4096)]);
    d.kick(0);
    d.wait_used(0, 1);
    assert_eq!(d.harvest(bitmap_len), sorted(ring_and_status_pages(&d)));

    // Nothing written, nothing dirty.
    assert_eq!(d.harvest(bitmap_len), Vec::<u64>::new());

    // Disabled: nothing is tracked.
    d.track_write(0, 1, 0);
    d.push_request(0, 2, T_IN, 0, &[(DATA_BASE, 512)]);
    d.kick(0);
    d.wait_used(0, 1);
    assert_eq!(d.harvest(bitmap_len), Vec::<u64>::new());
}

#[test]
fn tracker_with_larger_granularity() {
    let srv = Server::spawn(&["--capacity-sectors", "4096"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    let gra = 2u8; // 16 KiB pages
    let bitmap_len = MEM_SIZE / (4096 << gra) / 8;
    assert_eq!(d.track_start(gra, bitmap_len), gra);
    // 0x213000..0x214fff covers 16 KiB pages 0x84 and 0x85.
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE + 0x13000, 8192)]);
    d.kick(0);
    d.wait_used(0, 1);
    let mut expect: Vec<u64> = ring_and_status_pages(&d).iter().map(|p| p >> gra).collect();
    expect.extend([0x84, 0x85]);
    assert_eq!(d.harvest(bitmap_len), sorted(expect));
}

#[test]
fn tracker_never_sets_bits_past_length() {
    let srv = Server::spawn(&["--capacity-sectors", "4096"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    // 0x21 bytes cover pages 0..263: the used ring page (0x18) is inside,
    // the status (0x180) and data (0x200) pages are not.
    let bitmap_len = 0x21;
    d.track_start(0, bitmap_len);
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 4096)]);
    d.kick(0);
    d.wait_used(0, 1);
    let mut tail = [0u8; 64];
    d.mem
        .read_slice(&mut tail, GuestAddress(BITMAP_BASE + bitmap_len))
        .unwrap();
    assert!(
        tail.iter().all(|b| *b == 0),
        "bits past bitmap_length: {tail:?}"
    );
    assert_eq!(d.harvest(bitmap_len), d.queues[0].used_pages());
}

#[test]
fn fault_bits_past_length() {
    let srv = Server::spawn(&["--capacity-sectors", "4096", "--fault-bits-past-length"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    let bitmap_len = 0x21;
    d.track_start(0, bitmap_len);
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 4096)]);
    d.kick(0);
    d.wait_used(0, 1);
    let mut tail = [0u8; 7];
    d.mem
        .read_slice(&mut tail, GuestAddress(BITMAP_BASE + bitmap_len))
        .unwrap();
    assert_eq!(tail, [0xff; 7], "the fault sets the rest of the last word");
}

#[test]
fn tracker_min_gra_power_and_byte_granularity() {
    let srv = Server::spawn(&["--min-gra-power", "3", "--byte-granular-dirty"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    assert_eq!(d.track_read(1, 1), 3, "initial gra_power");
    let bitmap_len = MEM_SIZE / (4096 << 3) / 8;
    assert_eq!(d.track_start(0, bitmap_len), 3, "device raised gra_power");
    d.track_write(1, 1, 5);
    assert_eq!(d.track_read(1, 1), 5, "larger values are kept");
    d.track_write(1, 1, 3);
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 512)]);
    d.kick(0);
    d.wait_used(0, 1);
    // Page 0x200 >> 3 = 0x40 lives in byte 8: the whole byte is set.
    let byte: u8 = d.mem.read_obj(GuestAddress(BITMAP_BASE + 8)).unwrap();
    assert_eq!(byte, 0xff);
}

#[test]
fn tracker_pasid_and_reset() {
    // Without a PASID capability, pasid writes are ignored.
    let srv = Server::spawn(&[]);
    let mut d = srv.connect();
    d.track_write(4, 4, 0x12345);
    assert_eq!(d.track_read(4, 4), 0);
    drop(d);
    drop(srv);

    let srv = Server::spawn(&["--pasid"]);
    let mut d = srv.connect();
    let c = d.config_space(4096);
    assert_eq!(&c[0x100..0x104], &[0x1b, 0x00, 0x01, 0x00], "PASID ext cap");
    assert_eq!(c[0xa5], CAP_PCIE_AT, "MSI-X links to the PCIe cap");
    // Present but disabled: still ignored.
    d.track_write(4, 4, 0x12345);
    assert_eq!(d.track_read(4, 4), 0);
    d.bus.write(7, 0x106, &[1, 0]);
    d.track_write(4, 4, 0xfff1_2345);
    assert_eq!(d.track_read(4, 4), 0x1_2345, "upper 12 bits reserved");
    d.track_write(0, 1, 1);
    d.track_write(8, 8, BITMAP_BASE);
    // Device reset clears enable and pasid.
    d.set_status(0);
    assert_eq!(d.track_read(0, 1), 0);
    assert_eq!(d.track_read(4, 4), 0);
    // Function reset too (and disables PASID).
    d.track_write(0, 1, 1);
    d.track_write(4, 4, 7);
    let SocketBus(client) = &mut d.bus;
    client.reset().unwrap();
    assert_eq!(d.track_read(0, 1), 0);
    assert_eq!(d.track_read(4, 4), 0);
    assert_eq!(d.config_space(0x108)[0x106], 0);
}

#[test]
fn queue_status_follows_enable_and_reset() {
    let srv = Server::spawn(&["--queues", "2"]);
    let mut d = srv.connect();
    assert!(d.negotiate(VERSION_1));
    d.select_state(0);
    assert_eq!(d.queue_status(), 0, "0 after reset");
    // Writes while queue_enable == 0 are ignored.
    d.set_queue_status(1);
    assert_eq!(d.queue_status(), 0);
    d.set_last_avail_idx(9);
    assert_eq!(d.last_avail_idx(), 0);
    d.setup_queue(0, 64, 1);
    assert_eq!(d.queue_status(), 1, "1 after queue_enable");
    d.select_state(1);
    assert_eq!(d.queue_status(), 0, "queue 1 still disabled");
    assert_eq!(
        d.bar_read(DEVICE_STATE_OFFSET, 2),
        1,
        "queue_select reads back"
    );
    d.select_state(7);
    assert_eq!(d.queue_status(), 0, "no such queue");
    d.select_state(0);
    d.set_status(0);
    assert_eq!(d.queue_status(), 0, "reset stops the queue");
    assert_eq!(
        d.bar_read(DEVICE_STATE_OFFSET, 2),
        0,
        "reset clears queue_select"
    );
    assert_eq!(d.bar_read(0x1c, 2), 0, "queue_enable reset");
}

#[test]
fn stop_completes_in_flight_requests_first() {
    let srv = Server::spawn(&["--request-delay-ms", "150", "--capacity-sectors", "64"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1 | EVENT_IDX, 1, 64);
    for slot in 0..3 {
        d.push_request(0, slot, T_IN, slot, &[(DATA_BASE + 0x1000 * slot, 512)]);
    }
    d.kick(0);
    // Let the worker fetch all three.
    std::thread::sleep(Duration::from_millis(50));
    d.select_state(0);
    d.set_queue_status(0);
    assert_eq!(d.queue_status(), 1, "requests still in flight");
    let start = std::time::Instant::now();
    while d.queue_status() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "stop never completed"
        );
        // Whenever it still reads 1, something must still be in flight.
        std::thread::sleep(Duration::from_millis(5));
    }
    let used = d.queues[0].used_idx(&d.mem);
    assert_eq!(
        used, 3,
        "every in-flight request completed before 0 was read"
    );
    for slot in 0..3 {
        assert_eq!(d.status_byte(slot), 0);
    }
    assert_eq!(d.last_avail_idx(), 3);

    // Stopped: new requests are not fetched.
    d.push_request(0, 3, T_IN, 3, &[(DATA_BASE + 0x3000, 512)]);
    d.kick(0);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(d.queues[0].used_idx(&d.mem), 3);
    assert_eq!(d.last_avail_idx(), 3);
    // Resume: pending work is processed.
    d.set_queue_status(1);
    assert_eq!(d.queue_status(), 1);
    d.wait_used(0, 4);
    assert_eq!(d.status_byte(3), 0);
}

#[test]
fn last_avail_idx_round_trip_and_restore() {
    let srv = Server::spawn(&["--capacity-sectors", "64"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    for slot in 0..5 {
        d.push_request(0, slot, T_IN, 0, &[(DATA_BASE, 512)]);
    }
    d.kick(0);
    d.wait_used(0, 5);
    d.select_state(0);
    // Ignored while running.
    d.set_last_avail_idx(77);
    assert_eq!(d.last_avail_idx(), 5);
    d.set_queue_status(0);
    assert_eq!(d.queue_status(), 0);
    d.set_last_avail_idx(1234);
    assert_eq!(d.last_avail_idx(), 1234);
    d.set_last_avail_idx(5);
    assert_eq!(d.last_avail_idx(), 5);

    // Restore onto a reset device: same rings in guest memory, the queue is
    // re-enabled, stopped, given last_avail_idx 5 and resumed. Only the new
    // request is processed.
    let used_before = d.queues[0].used_idx(&d.mem);
    let q = std::mem::replace(&mut d.queues[0], DriverQueue::layout(0, 64));
    d.set_status(0);
    assert!(d.negotiate(VERSION_1));
    d.bar_write(0x16, 2, 0);
    d.bar_write(0x18, 2, 64);
    d.bar_write(0x1a, 2, 1);
    d.bar_write(0x20, 8, q.desc);
    d.bar_write(0x28, 8, q.avail);
    d.bar_write(0x30, 8, q.used);
    d.bar_write(0x1c, 2, 1);
    d.queues[0] = q;
    d.select_state(0);
    d.set_queue_status(0);
    assert_eq!(d.queue_status(), 0);
    d.set_last_avail_idx(5);
    d.set_status(1 | 2 | 8 | 4);
    d.set_queue_status(1);
    d.push_request(0, 6, T_GET_ID, 0, &[(DATA_BASE + 0x8000, 20)]);
    d.kick(0);
    let used = d.wait_used(0, 1);
    assert_eq!(used[0].1, 21);
    assert_eq!(d.queues[0].used_idx(&d.mem), used_before.wrapping_add(1));
    let mut id = [0u8; 7];
    d.mem
        .read_slice(&mut id, GuestAddress(DATA_BASE + 0x8000))
        .unwrap();
    assert_eq!(&id, b"devsim0");
}

#[test]
fn reset_abandons_nothing_and_clears_state() {
    let srv = Server::spawn(&["--queues", "2"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1 | EVENT_IDX, 2, 32);
    assert_eq!(d.bar_read(0x1c, 2), 1);
    d.set_status(0);
    assert_eq!(d.status(), 0);
    for q in 0..2u64 {
        d.bar_write(0x16, 2, q);
        assert_eq!(d.bar_read(0x1c, 2), 0, "queue_enable");
        assert_eq!(d.bar_read(0x18, 2), 256, "queue_size back to max");
        assert_eq!(d.bar_read(0x20, 8), 0, "queue_desc");
        assert_eq!(d.bar_read(0x1a, 2), 0xffff, "queue_msix_vector");
    }
    d.bar_write(0x08, 4, 0);
    assert_eq!(d.bar_read(0x0c, 4), 0, "driver features cleared");
    // The device works again after re-initialisation.
    d.queues.clear();
    d.bring_up(VERSION_1, 1, 32);
    d.push_request(0, 0, T_FLUSH, 0, &[]);
    d.kick(0);
    d.wait_used(0, 1);
    assert_eq!(d.status_byte(0), 0);
}

#[test]
fn fault_never_stop() {
    let srv = Server::spawn(&["--fault-never-stop"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 32);
    d.select_state(0);
    d.set_queue_status(0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.queue_status(), 1);
    // Nothing is fetched while "stopping".
    d.push_request(0, 0, T_FLUSH, 0, &[]);
    d.kick(0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(d.queues[0].used_idx(&d.mem), 0);
    // Resuming still works.
    d.set_queue_status(1);
    d.wait_used(0, 1);
}

#[test]
fn fault_slow_stop() {
    let srv = Server::spawn(&["--fault-slow-stop-ms", "300"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 32);
    d.select_state(0);
    let start = std::time::Instant::now();
    d.set_queue_status(0);
    assert_eq!(d.queue_status(), 1);
    while d.queue_status() != 0 {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn fault_bad_cap() {
    for (kind, at, expect) in [("bar", 4usize, 7u8), ("caplen", 2, 8)] {
        let srv = Server::spawn(&[&format!("--fault-bad-cap={kind}")]);
        let mut d = srv.connect();
        let c = d.config_space(256);
        assert_eq!(c[CAP_MEMORY_TRACK_AT as usize + 3], 10);
        assert_eq!(c[CAP_MEMORY_TRACK_AT as usize + at], expect, "{kind}");
    }
    let srv = Server::spawn(&["--fault-bad-cap", "offset"]);
    let mut d = srv.connect();
    let c = d.config_space(256);
    let at = CAP_MEMORY_TRACK_AT as usize + 8;
    let off = u32::from_le_bytes(c[at..at + 4].try_into().unwrap()) as u64;
    assert!(off >= VIRTIO_BAR_SIZE, "offset past the end of BAR4");
    // The other capabilities are intact.
    assert_eq!(c[CAP_DEVICE_STATE_AT as usize + 3], 11);
    assert_eq!(c[CAP_DEVICE_STATE_AT as usize + 4], 4);
}

#[test]
fn fault_disconnect_after_requests() {
    let mut srv = Server::spawn(&["--fault-disconnect-after-requests", "2"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 32);
    for slot in 0..3 {
        d.push_request(0, slot, T_FLUSH, 0, &[]);
    }
    // The device may disappear before it answers the kick itself: that write may fail.
    let SocketBus(client) = &mut d.bus;
    let _ = client.region_write(VIRTIO_BAR as u32, NOTIFY_OFFSET, &0u16.to_le_bytes());
    let st = srv.wait(Duration::from_secs(10));
    assert!(st.success(), "exit status {st:?}");
    assert_eq!(d.queues[0].used_idx(&d.mem), 2, "two requests completed");
    assert!(!srv.socket.exists(), "socket removed");
    assert_eq!(srv.stat("requests_served"), 2);
    let mut b = [0u8; 4];
    let SocketBus(client) = &mut d.bus;
    assert!(
        client.region_read(7, 0, &mut b).is_err(),
        "connection is gone"
    );
}

#[test]
fn exits_when_client_disconnects_and_writes_stats() {
    let mut srv = Server::spawn(&[]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 32);
    d.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 512)]);
    d.kick(0);
    d.wait_used(0, 1);
    // SIGUSR1 dumps the counters without exiting.
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGUSR1) };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !srv.stats_path().exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(srv.stat("requests_served"), 1);
    assert!(srv.stat("bytes_dma_written") >= 512 + 1 + 8 + 2);
    assert!(srv.stat("mmio_writes_notify") >= 1);
    assert!(srv.stat("mmio_reads_config") >= 1 || srv.stat("mmio_writes_common") > 0);
    assert!(srv.child.try_wait().unwrap().is_none(), "still running");
    drop(d);
    let st = srv.wait(Duration::from_secs(10));
    assert!(st.success());
    assert!(!srv.socket.exists());
}

#[test]
fn sigterm_removes_the_socket() {
    let mut srv = Server::spawn(&[]);
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    let st = srv.wait(Duration::from_secs(10));
    assert!(st.success());
    assert!(!srv.socket.exists());
    assert_eq!(srv.stat("requests_served"), 0);
}

#[test]
fn malicious_guest_cannot_crash_the_server() {
    let srv = Server::spawn(&["--queues", "2"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1 | EVENT_IDX, 2, 32);
    // Descriptors pointing outside guest memory, a looping chain, and a
    // queue whose rings are unmapped.
    d.push_request(0, 0, T_IN, 0, &[(0xdead_0000_0000, 4096)]);
    d.push_request(0, 1, T_OUT, 0, &[(MEM_SIZE - 8, 4096)]);
    d.kick(0);
    let used = d.wait_used(0, 2);
    assert_eq!(used.len(), 2);
    assert_eq!(d.status_byte(0), 1, "IOERR");
    assert_eq!(d.status_byte(1), 1, "IOERR");
    let q = &d.queues[1];
    let at = q.desc;
    d.mem.write_obj(0u64, GuestAddress(at)).unwrap();
    d.mem.write_obj(16u32, GuestAddress(at + 8)).unwrap();
    d.mem.write_obj(1u16, GuestAddress(at + 12)).unwrap(); // NEXT -> itself
    d.mem.write_obj(0u16, GuestAddress(at + 14)).unwrap();
    d.mem.write_obj(0u16, GuestAddress(q.avail + 4)).unwrap();
    d.mem.write_obj(1u16, GuestAddress(q.avail + 2)).unwrap();
    d.kick(1);
    // Garbage avail index.
    d.mem
        .write_obj(0x7777u16, GuestAddress(d.queues[0].avail + 2))
        .unwrap();
    d.kick(0);
    // Register accesses out of range.
    d.bar_write(0x7ff8, 8, u64::MAX);
    d.bar_read(0x7ff8, 8);
    d.bus.write(7, 0xfff, &[1, 2, 3, 4]);
    d.bus.write(1, 0xffc, &[1, 2, 3, 4]);
    std::thread::sleep(Duration::from_millis(50));
    // Still alive and answering.
    assert_eq!(d.bar_read(0x12, 2), 2);
}

#[test]
fn disconnect_abandons_delayed_requests() {
    let mut srv = Server::spawn(&["--request-delay-ms", "400"]);
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 32);
    for slot in 0..10 {
        d.push_request(0, slot, T_FLUSH, 0, &[]);
    }
    d.kick(0);
    std::thread::sleep(Duration::from_millis(50));
    let start = std::time::Instant::now();
    drop(d);
    assert!(srv.wait(Duration::from_secs(10)).success());
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "exit must not wait for every queued request"
    );
    assert!(srv.stat("requests_served") < 10);
}

/// Walks the capability chain; returns (offset, id) pairs.
fn cap_chain(c: &[u8]) -> Vec<(u8, u8)> {
    let mut out = Vec::new();
    let mut at = c[0x34];
    while at != 0 && out.len() < 48 {
        out.push((at, c[at as usize]));
        at = c[at as usize + 1];
    }
    out
}

/// Brings the device up with tracking on and queue 0 running; returns the
/// bitmap length.
fn busy_device(d: &mut Driver<SocketBus>) -> u64 {
    d.bring_up(VERSION_1 | EVENT_IDX, 1, 64);
    let bitmap_len = MEM_SIZE / 4096 / 8;
    d.track_start(0, bitmap_len);
    d.select_state(0);
    assert_eq!(d.queue_status(), 1);
    bitmap_len
}

/// Everything a reset clears, as seen from the registers.
fn assert_reset(d: &mut Driver<SocketBus>) {
    assert_eq!(d.status(), 0, "device_status");
    d.bar_write(0x16, 2, 0);
    assert_eq!(d.bar_read(0x1c, 2), 0, "queue_enable");
    assert_eq!(d.bar_read(0x20, 8), 0, "queue_desc");
    assert_eq!(
        d.bar_read(DEVICE_STATE_OFFSET, 2),
        0,
        "device state queue_select"
    );
    assert_eq!(d.queue_status(), 0, "queue_status");
    assert_eq!(d.track_read(0, 1), 0, "tracker enable");
    assert_eq!(d.track_read(4, 4), 0, "tracker pasid");
    assert_eq!(d.track_read(8, 8), BITMAP_BASE, "bitmap_addr is kept");
    assert_eq!(d.power_state(), 0, "D0");
}

#[test]
fn capability_chain_and_power_state() {
    let srv = Server::spawn(&[]);
    let mut d = srv.connect();
    let c = d.config_space(256);
    let ids: Vec<u8> = cap_chain(&c).iter().map(|&(_, id)| id).collect();
    assert_eq!(ids, [9, 9, 9, 9, 9, 9, 0x11, 0x10, 0x01]);
    assert_eq!(cap_chain(&c).last(), Some(&(CAP_PM_AT, PCI_CAP_ID_PM)));
    let pmcsr = d.config_read(CAP_PM_AT as u64 + 4, 2) as u16;
    assert_eq!(pmcsr & PM_NO_SOFT_RESET, 0, "No_Soft_Reset clear");
    // D1/D2 are not supported: the write is discarded.
    d.set_power_state(1);
    assert_eq!(d.power_state(), 0);
    d.set_power_state(3);
    assert_eq!(d.power_state(), 3, "PMCSR reads the current state");
    d.set_power_state(2);
    assert_eq!(d.power_state(), 3);
    d.set_power_state(0);
    assert_eq!(d.power_state(), 0);
}

#[test]
fn pm_d3hot_to_d0_resets_the_device() {
    let mut srv = Server::spawn(&["--pasid", "--capacity-sectors", "64"]);
    let mut d = srv.connect();
    // PASID enabled, so that the tracker takes a pasid.
    d.config_write(0x106, 2, 1);
    busy_device(&mut d);
    d.track_write(4, 4, 0x42);
    assert_eq!(d.track_read(4, 4), 0x42);
    // Command register: memory space and bus master.
    d.config_write(0x04, 2, 0x0006);

    d.set_power_state(3);
    assert_eq!(d.power_state(), 3);
    d.set_power_state(0);
    assert_reset(&mut d);
    assert_eq!(d.config_read(0x04, 2), 0, "command register reset");
    assert_eq!(d.config_read(0x106, 2), 0, "PASID disabled");

    // The function works again once re-initialised.
    d.config_write(0x106, 2, 1);
    d.queues.clear();
    d.bring_up(VERSION_1, 1, 32);
    d.push_request(0, 0, T_GET_ID, 0, &[(DATA_BASE, 20)]);
    d.kick(0);
    d.wait_used(0, 1);
    assert_eq!(d.status_byte(0), 0);
    drop(d);
    assert!(srv.wait(Duration::from_secs(10)).success());
    assert_eq!(srv.stat("pm_resets"), 1);
    assert_eq!(srv.stat("function_resets"), 1);
    assert_eq!(srv.stat("flr_resets"), 0);
}

#[test]
fn pm_reset_waits_for_in_flight_requests() {
    let mut srv = Server::spawn(&["--request-delay-ms", "300", "--capacity-sectors", "64"]);
    let pattern: Vec<u8> = (0..64 * 512).map(|i| (i * 13 % 241) as u8).collect();
    std::fs::write(srv.backing(), &pattern).unwrap();
    let mut d = srv.connect();
    busy_device(&mut d);
    d.push_request(0, 0, T_IN, 4, &[(DATA_BASE, 512)]);
    d.push_request(0, 1, T_IN, 9, &[(DATA_BASE + 0x1000, 512)]);
    d.kick(0);
    // Let the worker fetch both; each takes 300 ms.
    std::thread::sleep(Duration::from_millis(50));
    assert!(d.queues[0].used_idx(&d.mem) < 2, "still in flight");

    d.set_power_state(3);
    // Both requests completed before the write returned.
    assert_eq!(d.queues[0].used_idx(&d.mem), 2);
    for slot in 0..2 {
        assert_eq!(d.status_byte(slot), 0);
    }
    let mut got = vec![0u8; 512];
    d.mem
        .read_slice(&mut got, GuestAddress(DATA_BASE + 0x1000))
        .unwrap();
    assert_eq!(&got[..], &pattern[9 * 512..10 * 512]);

    // In D3hot nothing is fetched.
    d.push_request(0, 2, T_IN, 0, &[(DATA_BASE + 0x2000, 512)]);
    d.kick(0);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(d.queues[0].used_idx(&d.mem), 2);

    d.set_power_state(0);
    assert_reset(&mut d);
    // Nothing is written after the reset either.
    let mut snapshot = vec![0u8; 0xc000];
    d.mem
        .read_slice(&mut snapshot, GuestAddress(d.queues[0].desc))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut now = vec![0u8; 0xc000];
    d.mem
        .read_slice(&mut now, GuestAddress(d.queues[0].desc))
        .unwrap();
    assert!(snapshot == now, "the rings changed after the reset");
    assert_eq!(d.status_byte(2), 0xff);
    drop(d);
    assert!(srv.wait(Duration::from_secs(10)).success());
    assert_eq!(srv.stat("requests_served"), 2);
    assert_eq!(srv.stat("requests_abandoned"), 0);
    assert_eq!(srv.stat("pm_resets"), 1);
}

#[test]
fn flr_resets_the_device_after_in_flight_requests() {
    let mut srv = Server::spawn(&["--request-delay-ms", "400", "--capacity-sectors", "64"]);
    let mut d = srv.connect();
    let devcap = d.config_read(CAP_PCIE_AT as u64 + 4, 4) as u32;
    assert_ne!(devcap & PCIE_DEVCAP_FLR, 0, "FLR advertised");
    busy_device(&mut d);
    // Max payload 256 bytes, extended tags.
    let devctl = CAP_PCIE_AT as u64 + 8;
    d.config_write(devctl, 2, PCIE_DEVCTL_DEFAULT as u64 | 0x0120);
    d.push_request(0, 0, T_FLUSH, 0, &[]);
    d.kick(0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(d.queues[0].used_idx(&d.mem), 0, "still in flight");

    d.initiate_flr();
    assert_eq!(
        d.queues[0].used_idx(&d.mem),
        1,
        "completed before the reset"
    );
    assert_eq!(d.status_byte(0), 0);
    assert_reset(&mut d);
    assert_eq!(
        d.config_read(devctl, 2),
        PCIE_DEVCTL_DEFAULT as u64,
        "Device Control back to its default, Initiate FLR reads 0"
    );
    drop(d);
    assert!(srv.wait(Duration::from_secs(10)).success());
    assert_eq!(srv.stat("flr_resets"), 1);
    assert_eq!(srv.stat("pm_resets"), 0);
    assert_eq!(srv.stat("requests_abandoned"), 0);
}

#[test]
fn client_reset_waits_for_in_flight_requests() {
    let srv = Server::spawn(&["--request-delay-ms", "400"]);
    let mut d = srv.connect();
    busy_device(&mut d);
    d.push_request(0, 0, T_FLUSH, 0, &[]);
    d.kick(0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(d.queues[0].used_idx(&d.mem), 0, "still in flight");
    let SocketBus(client) = &mut d.bus;
    client.reset().unwrap();
    assert_eq!(d.queues[0].used_idx(&d.mem), 1);
    assert_reset(&mut d);
}

#[test]
fn fault_no_reset() {
    let mut srv = Server::spawn(&["--fault-no-reset"]);
    let mut d = srv.connect();
    let c = d.config_space(256);
    let chain = cap_chain(&c);
    assert_eq!(chain.last(), Some(&(CAP_PCIE_AT, PCI_CAP_ID_EXP)));
    assert!(chain.iter().all(|&(_, id)| id != PCI_CAP_ID_PM));
    let at = CAP_PCIE_AT as usize;
    let devcap = u32::from_le_bytes(c[at + 4..at + 8].try_into().unwrap());
    assert_eq!(devcap & PCIE_DEVCAP_FLR, 0, "no FLR");
    busy_device(&mut d);
    // Neither write resets anything.
    d.initiate_flr();
    d.config_write(CAP_PM_AT as u64 + 4, 2, 3);
    d.config_write(CAP_PM_AT as u64 + 4, 2, 0);
    assert_eq!(d.status(), 1 | 2 | 4 | 8);
    assert_eq!(d.queue_status(), 1);
    assert_eq!(d.track_read(0, 1), 1);
    drop(d);
    assert!(srv.wait(Duration::from_secs(10)).success());
    assert_eq!(srv.stat("function_resets"), 0);
}
