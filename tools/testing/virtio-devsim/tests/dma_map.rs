// SPDX-License-Identifier: GPL-2.0
//! DMA mappings over a real vfio-user socket, as QEMU sends them under a
//! vIOMMU: one `VFIO_USER_DMA_MAP` per 4 KiB page, the pages of one memfd
//! at increasing offsets.

mod support;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use support::*;

const PAGE: u64 = 4096;
/// Bound on every reply. QEMU aborts after 5 s; this is a bound against
/// hangs and per-map costs that grow with the number of mappings, not a
/// performance figure.
const REPLY_BOUND: Duration = Duration::from_secs(1);
/// `VIRTIO_BLK_S_OK` and `VIRTIO_BLK_S_IOERR`.
const OK: u8 = 0;
const IOERR: u8 = 1;
/// Disk size of these tests, in sectors.
const SECTORS: u64 = 64;

/// Byte `i` of the disk.
fn disk_byte(i: u64) -> u8 {
    (i * 7 % 251) as u8
}

/// A device whose disk holds the [`disk_byte`] pattern.
fn spawn() -> Server {
    let srv = Server::spawn(&["--capacity-sectors", &SECTORS.to_string()]);
    let disk: Vec<u8> = (0..SECTORS * 512).map(disk_byte).collect();
    std::fs::write(srv.backing(), disk).unwrap();
    srv
}

/// How long `f` took.
fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Reads `len` bytes from `sector` on into guest address `addr` (a request
/// using descriptor slot `slot`); returns the status byte.
fn read_into(d: &mut Driver<SocketBus>, slot: u64, sector: u64, addr: u64, len: u32) -> u8 {
    d.push_request(0, slot, T_IN, sector, &[(addr, len)]);
    d.kick(0);
    d.wait_used(0, 1);
    d.status_byte(slot)
}

/// Asserts that `file` holds the disk bytes from `sector` on at `offset`.
fn assert_disk_data(file: &File, offset: u64, sector: u64, len: usize) {
    let mut got = vec![0u8; len];
    file.read_exact_at(&mut got, offset).unwrap();
    let want: Vec<u8> = (0..len as u64)
        .map(|i| disk_byte(sector * 512 + i))
        .collect();
    assert!(got == want, "disk data at file offset {offset:#x}");
}

/// Waits for the device to exit after the client went away.
fn disconnect(mut srv: Server, d: Driver<SocketBus>) -> Server {
    drop(d);
    assert!(srv.wait(Duration::from_secs(10)).success());
    srv
}

#[test]
fn a_quarter_million_page_maps_reply_in_time() {
    const MAPS: u64 = 262_144;
    const HALF: u64 = MAPS / 2;
    let srv = spawn();
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    let big = memfd(MAPS * PAGE);
    let base = 1u64 << 32;

    let SocketBus(client) = &mut d.bus;
    let worst_map = (0..MAPS)
        .map(|i| {
            timed(|| {
                client
                    .dma_map(i * PAGE, base + i * PAGE, PAGE, big.as_raw_fd())
                    .expect("dma map")
            })
        })
        .max()
        .unwrap_or_default();
    eprintln!("{MAPS} page maps: worst reply {worst_map:?}");
    assert!(worst_map < REPLY_BOUND, "worst map reply {worst_map:?}");

    // The device still reads into memory: 8 KiB across three page maps.
    let at = base + 1000 * PAGE + 0x800;
    assert_eq!(read_into(&mut d, 0, 2, at, 8192), OK);
    assert_disk_data(&big, 1000 * PAGE + 0x800, 2, 8192);

    // Half the pages one by one, the other half in one message spanning
    // 131,072 mappings.
    let SocketBus(client) = &mut d.bus;
    let worst_unmap = (0..HALF)
        .map(|i| timed(|| client.dma_unmap(base + i * PAGE, PAGE).expect("dma unmap")))
        .max()
        .unwrap_or_default();
    let last = timed(|| {
        client
            .dma_unmap(base + HALF * PAGE, HALF * PAGE)
            .expect("dma unmap")
    });
    eprintln!("{HALF} page unmaps: worst reply {worst_unmap:?}; one unmap of {HALF}: {last:?}");
    assert!(
        worst_unmap < REPLY_BOUND,
        "worst unmap reply {worst_unmap:?}"
    );
    assert!(last < REPLY_BOUND, "unmap of {HALF} mappings took {last:?}");
    assert_eq!(read_into(&mut d, 1, 2, at, 8192), IOERR, "unmapped");

    let srv = disconnect(srv, d);
    assert_eq!(
        srv.stat("dma_file_mmaps"),
        2,
        "RAM and the big file, each mapped once"
    );
    assert_eq!(srv.stat("dma_maps"), MAPS + 1);
    assert_eq!(srv.stat("dma_unmaps"), HALF + 1);
}

#[test]
fn io_through_page_maps_is_tracked() {
    let srv = spawn();
    // All of guest RAM (rings, requests, data, the tracker bitmap) in 4 KiB
    // maps.
    let mut d = srv.connect_with(|client, ram| {
        for page in 0..MEM_SIZE / PAGE {
            let at = page * PAGE;
            client
                .dma_map(at, at, PAGE, ram.as_raw_fd())
                .expect("dma map");
        }
    });
    d.bring_up(VERSION_1 | EVENT_IDX, 1, 64);
    let bitmap_len = MEM_SIZE / PAGE / 8;
    assert_eq!(d.track_start(0, bitmap_len), 0);

    // 0x200e00..0x2021ff: three pages, three mappings.
    assert_eq!(read_into(&mut d, 0, 1, DATA_BASE + 0xe00, 5120), OK);
    assert_disk_data(&d.ram, DATA_BASE + 0xe00, 1, 5120);
    let mut want = d.queues[0].used_pages();
    want.push(STATUS_BASE >> 12);
    want.extend((DATA_BASE >> 12)..(DATA_BASE >> 12) + 3);
    want.sort_unstable();
    want.dedup();
    assert_eq!(d.harvest(bitmap_len), want);

    let srv = disconnect(srv, d);
    assert_eq!(srv.stat("dma_maps"), MEM_SIZE / PAGE);
    assert_eq!(srv.stat("dma_file_mmaps"), 1);
    assert_eq!(srv.stat("bitmap_dma_errors"), 0);
}

#[test]
fn map_of_a_second_file() {
    let srv = spawn();
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    let second = memfd(4 * PAGE);
    let base = 0x4000_0000;
    // IOVA page i is page 3 - i of the second file.
    let SocketBus(client) = &mut d.bus;
    for i in 0..4 {
        client
            .dma_map((3 - i) * PAGE, base + i * PAGE, PAGE, second.as_raw_fd())
            .expect("dma map");
    }
    // The IOVA range of the tracker bitmap covers the second file.
    let bitmap_len = ((base >> 12) + 4).div_ceil(8);
    d.track_start(0, bitmap_len);

    assert_eq!(read_into(&mut d, 0, 0, base, 4 * PAGE as u32), OK);
    for i in 0..4 {
        assert_disk_data(&second, (3 - i) * PAGE, i * PAGE / 512, PAGE as usize);
    }
    // The first file still works.
    assert_eq!(read_into(&mut d, 1, 8, DATA_BASE, 512), OK);
    assert_disk_data(&d.ram, DATA_BASE, 8, 512);
    let dirty = d.harvest(bitmap_len);
    for i in 0..4 {
        assert!(
            dirty.contains(&((base >> 12) + i)),
            "page {i} of the second file"
        );
    }
    assert!(dirty.contains(&(DATA_BASE >> 12)));

    let srv = disconnect(srv, d);
    assert_eq!(srv.stat("dma_file_mmaps"), 2);
}

#[test]
fn unmap_of_a_sub_range_splits_the_map() {
    let srv = spawn();
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    let file = memfd(16 * PAGE);
    let base = 0x4000_0000;
    let SocketBus(client) = &mut d.bus;
    client
        .dma_map(0, base, 16 * PAGE, file.as_raw_fd())
        .expect("dma map");
    // Pages 4..8 go: the map is split in two.
    client.dma_unmap(base + 4 * PAGE, 4 * PAGE).expect("unmap");
    // A map overlapping the tail is refused (an error reply) and changes
    // nothing.
    let other = memfd(16 * PAGE);
    client
        .dma_map(0, base + 7 * PAGE, 2 * PAGE, other.as_raw_fd())
        .expect("dma map");

    assert_eq!(read_into(&mut d, 0, 1, base + 2 * PAGE, 4096), OK);
    assert_disk_data(&file, 2 * PAGE, 1, 4096);
    assert_eq!(read_into(&mut d, 1, 1, base + 5 * PAGE, 512), IOERR);
    assert_eq!(read_into(&mut d, 2, 1, base + 4 * PAGE - 512, 1024), IOERR);
    // The tail keeps its file offsets.
    assert_eq!(read_into(&mut d, 3, 9, base + 8 * PAGE, 4096), OK);
    assert_disk_data(&file, 8 * PAGE, 9, 4096);
    let mut b = [0u8; 1];
    other.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(b[0], 0, "the refused map is not used");

    let srv = disconnect(srv, d);
    assert_eq!(srv.stat("dma_maps"), 2, "RAM and the one map");
    assert_eq!(srv.stat("dma_file_mmaps"), 2);
}

#[test]
fn unmap_spanning_several_maps() {
    let srv = spawn();
    let mut d = srv.connect();
    d.bring_up(VERSION_1, 1, 64);
    let file = memfd(8 * PAGE);
    let base = 0x4000_0000;
    let SocketBus(client) = &mut d.bus;
    for i in 0..8 {
        client
            .dma_map(i * PAGE, base + i * PAGE, PAGE, file.as_raw_fd())
            .expect("dma map");
    }
    // From the middle of page 1 to the middle of page 6.
    client
        .dma_unmap(base + PAGE + 0x800, 5 * PAGE)
        .expect("unmap");

    let reachable = [
        (base, true),
        (base + PAGE, true),
        (base + PAGE + 0x800, false),
        (base + 3 * PAGE, false),
        (base + 6 * PAGE + 0x600, false),
        (base + 6 * PAGE + 0x800, true),
        (base + 7 * PAGE, true),
    ];
    for (slot, (addr, mapped)) in reachable.into_iter().enumerate() {
        let status = read_into(&mut d, slot as u64, 4, addr, 512);
        assert_eq!(status == OK, mapped, "read into {addr:#x}: status {status}");
        if mapped {
            assert_disk_data(&file, addr - base, 4, 512);
        }
    }
}
