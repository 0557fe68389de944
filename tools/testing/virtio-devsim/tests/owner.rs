// SPDX-License-Identifier: GPL-2.0
//! The owner function and admin write recording (`--owner-socket`).
//!
//! Most tests run in-process: a member and its owner made by the library,
//! each with its own guest RAM and DMA mappings, driven through their
//! `ServerBackend` methods; the member's device writes are made directly
//! through its DMA space (the path every device write takes), so the
//! recorded page sets are exact. The tests at the end run the binary and
//! talk to both sockets with vfio-user clients.
//!
//! Expected bytes and values are written out here from the protocol text,
//! not taken from the library's constants.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::*;
use vfio_user::{DmaMapFlags, ServerBackend};
use virtio_devsim::layout::{DEVICE_CFG_OFFSET, DEVICE_STATE_OFFSET, MEMORY_TRACK_OFFSET};
use virtio_devsim::Config;
use vm_memory::{Bytes, GuestAddress};

const ADMIN_VQ: u64 = 1 << 41;
const INDIRECT_DESC: u64 = 1 << 28;

const LIST_QUERY: u16 = 0x0;
const LIST_USE: u16 = 0x1;
const CAP_QUERY: u16 = 0x13;
const START: u16 = 0x14;
const STOP: u16 = 0x15;
const READ: u16 = 0x16;
/// Bits 0, 1, 0x13..=0x16.
const ALL_OPCODES: u64 = 0x0078_0003;

const SRIOV: u16 = 1;
const SLOT: u16 = 2;

const OK: (u16, u16) = (0, 0);
const INVALID_COMMAND: (u16, u16) = (22, 1);
const INVALID_OPCODE: (u16, u16) = (22, 2);
const INVALID_FIELD: (u16, u16) = (22, 3);
const INVALID_GROUP: (u16, u16) = (22, 4);
const INVALID_MEMBER: (u16, u16) = (22, 5);

const MORE: u32 = 1;
const OVERFLOW: u32 = 2;

const K4: u64 = 4096;
const M2: u64 = 2 << 20;
/// The member's second mapping: 4 MiB of its RAM (from 8 MiB on) above 4 GiB.
const HIGH: u64 = 1 << 32;
const HIGH_LEN: u64 = 4 << 20;

/// Where commands (readable) and replies (writable) go in the owner's RAM.
const CMD_AREA: u64 = 0x10_0000;
const RES_AREA: u64 = 0x80_0000;
/// What unwritten reply bytes hold.
const SENTINEL: u8 = 0xee;

/// The admin queue's size in these tests.
const AQ_SIZE: u16 = 64;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A command: header and data.
fn cmd(opcode: u16, group: u16, member: u64, data: &[u8]) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&opcode.to_le_bytes());
    c.extend_from_slice(&group.to_le_bytes());
    c.extend_from_slice(&[0; 12]);
    c.extend_from_slice(&member.to_le_bytes());
    c.extend_from_slice(data);
    c
}

/// START data: page size, count, then (iova, page_count) entries.
fn start_data(page_size: u64, ranges: &[(u64, u64)]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&page_size.to_le_bytes());
    d.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
    d.extend_from_slice(&[0; 4]);
    for &(iova, pages) in ranges {
        d.extend_from_slice(&iova.to_le_bytes());
        d.extend_from_slice(&pages.to_le_bytes());
    }
    d
}

fn read_data(iova: u64, length: u64) -> Vec<u8> {
    let mut d = iova.to_le_bytes().to_vec();
    d.extend_from_slice(&length.to_le_bytes());
    d
}

fn words(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// What the device wrote back.
#[derive(Debug)]
struct Reply {
    /// The used length.
    used: u32,
    /// The whole writable part (unwritten bytes hold [`SENTINEL`]).
    bytes: Vec<u8>,
}

impl Reply {
    fn status(&self) -> (u16, u16) {
        assert!(self.used >= 8, "no status: used {}", self.used);
        (le16(&self.bytes, 0), le16(&self.bytes, 2))
    }

    /// The result after the status.
    fn result(&self) -> &[u8] {
        &self.bytes[8..self.used as usize]
    }

    /// Asserts an error completion: the status alone.
    fn assert_error(&self, want: (u16, u16), what: &str) {
        assert_eq!(self.status(), want, "{what}");
        assert_eq!(self.used, 8, "{what}: used length");
        assert_eq!(&self.bytes[4..8], &[0; 4], "{what}: reserved");
        assert!(
            self.bytes[8..].iter().all(|&b| b == SENTINEL),
            "{what}: nothing after the status"
        );
    }

    /// A READ result: entries and flags.
    fn records(&self) -> (Vec<u64>, u32) {
        assert_eq!(self.status(), OK, "READ failed");
        let r = self.result();
        let count = le32(r, 0) as usize;
        assert_eq!(r.len(), 8 + 8 * count, "used length matches the count");
        let entries = (0..count).map(|i| le64(r, 8 + 8 * i)).collect();
        (entries, le32(r, 4))
    }
}

/// The owner side of the tests: a driver and its admin queue index.
struct Owner<B: Bus> {
    d: Driver<B>,
    aq: u16,
}

impl<B: Bus> Owner<B> {
    /// Brings the owner up as a driver would: features with
    /// VIRTIO_F_ADMIN_VQ, the admin queue found through the common
    /// configuration, polled (no MSI-X vector), DRIVER_OK.
    fn up(d: Driver<B>) -> Self {
        Self::up_with_vector(d, 0xffff)
    }

    fn up_with_vector(mut d: Driver<B>, vector: u16) -> Self {
        assert!(d.negotiate(VERSION_1 | ADMIN_VQ), "owner features");
        let aq = d.bar_read(0x3c, 2) as u16;
        assert_eq!(d.bar_read(0x3e, 2), 1, "admin_queue_num");
        d.setup_queue(aq, AQ_SIZE, vector);
        d.set_status(1 | 2 | 8 | 4);
        Self { d, aq }
    }

    /// Re-initialises after a reset (as the kernel does after a timeout);
    /// the driver's view of the admin queue starts over too.
    fn reinit(&mut self) {
        assert!(self.d.negotiate(VERSION_1 | ADMIN_VQ));
        self.d.setup_queue(self.aq, AQ_SIZE, 0xffff);
        self.d.set_status(1 | 2 | 8 | 4);
    }

    /// LIST_USE of every supported opcode.
    fn use_all(&mut self) {
        let r = self.exec(&cmd(LIST_USE, SLOT, 0, &words(&[ALL_OPCODES])), 8);
        r.assert_error(OK, "LIST_USE");
    }

    /// Posts `command` split into readable pieces of `rsplit` bytes (the
    /// rest in a last piece) and a writable part of pieces `wsplit`; returns
    /// the head.
    fn submit(&mut self, command: &[u8], rsplit: &[usize], wsplit: &[u32]) -> u16 {
        let mut bufs = Vec::new();
        let mut at = CMD_AREA;
        let mut rest = command;
        let mut pieces: Vec<usize> = rsplit.to_vec();
        let split: usize = rsplit.iter().sum();
        if command.len() > split {
            pieces.push(command.len() - split);
        }
        for len in pieces {
            let (piece, tail) = rest.split_at(len.min(rest.len()));
            self.d.mem.write_slice(piece, GuestAddress(at)).unwrap();
            bufs.push((at, piece.len() as u32, false));
            // Pieces are not contiguous.
            at += (piece.len() as u64).next_multiple_of(64) + 64;
            rest = tail;
        }
        let mut at = RES_AREA;
        for &len in wsplit {
            self.d
                .mem
                .write_slice(&vec![SENTINEL; len as usize], GuestAddress(at))
                .unwrap();
            bufs.push((at, len, true));
            at += (len as u64).next_multiple_of(64) + 64;
        }
        let mem = self.d.mem.clone();
        self.d.queues[self.aq as usize].push(&mem, &bufs)
    }

    /// The writable part of a chain posted with `wsplit`, concatenated.
    fn writable(&self, wsplit: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = RES_AREA;
        for &len in wsplit {
            let mut b = vec![0u8; len as usize];
            self.d.mem.read_slice(&mut b, GuestAddress(at)).unwrap();
            out.extend(b);
            at += (len as u64).next_multiple_of(64) + 64;
        }
        out
    }

    fn kick(&mut self) {
        let aq = self.aq;
        self.d.kick(aq);
    }

    /// Submits, notifies and waits for the completion.
    fn exec_split(&mut self, command: &[u8], rsplit: &[usize], wsplit: &[u32]) -> Reply {
        let head = self.submit(command, rsplit, wsplit);
        self.kick();
        let aq = self.aq;
        let used = self.d.wait_used(aq, 1);
        assert_eq!(used[0].0, head as u32, "completion of this command");
        Reply {
            used: used[0].1,
            bytes: self.writable(wsplit),
        }
    }

    /// One readable and one writable descriptor, as the kernel sends.
    fn exec(&mut self, command: &[u8], wlen: u32) -> Reply {
        self.exec_split(command, &[], &[wlen])
    }

    fn start(&mut self, member: u64, page_size: u64, ranges: &[(u64, u64)]) -> Reply {
        self.exec(&cmd(START, SLOT, member, &start_data(page_size, ranges)), 8)
    }

    fn stop(&mut self, member: u64) -> Reply {
        self.exec(&cmd(STOP, SLOT, member, &[]), 8)
    }

    /// READ with room for `slots` entries.
    fn read(&mut self, member: u64, iova: u64, length: u64, slots: u32) -> Reply {
        self.exec(
            &cmd(READ, SLOT, member, &read_data(iova, length)),
            16 + 8 * slots,
        )
    }

    /// READs the window until MORE is clear; returns the records and the
    /// flags of every READ or'ed together.
    fn read_all(&mut self, member: u64, iova: u64, length: u64) -> (BTreeSet<u64>, u32) {
        let mut all = BTreeSet::new();
        let mut flags = 0;
        loop {
            let (entries, f) = self.read(member, iova, length, 64).records();
            for e in entries {
                assert!(all.insert(e), "record {e:#x} returned twice");
            }
            flags |= f;
            if f & MORE == 0 {
                return (all, flags);
            }
        }
    }

    /// Whether a completion arrives within `wait`.
    fn completes_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let q = &self.d.queues[self.aq as usize];
        while Instant::now() < deadline {
            if q.used_idx(&self.d.mem) != q.last_used {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

/// A member and its owner, in-process.
struct Pair {
    m: Driver<DirectBus>,
    o: Owner<DirectBus>,
    _dir: tempfile::TempDir,
}

impl Pair {
    /// The pair with the owner up (not yet LIST_USE'd).
    fn new(cfg: Config) -> Self {
        let (mut m, o, dir) = direct_pair(cfg);
        // Part of the member's RAM also appears above 4 GiB.
        let ram = m.ram.try_clone().unwrap();
        m.bus
            .0
            .dma_map(DmaMapFlags::READ_WRITE, 8 << 20, HIGH, HIGH_LEN, Some(ram))
            .unwrap();
        Self {
            m,
            o: Owner::up(o),
            _dir: dir,
        }
    }

    /// The pair, LIST_USE done.
    fn ready(cfg: Config) -> Self {
        let mut p = Self::new(cfg);
        p.o.use_all();
        p
    }

    /// A device write of the member: `len` bytes at `iova`.
    fn dev_write(&self, iova: u64, len: usize) {
        let shared = self.m.bus.0.shared().clone();
        let mem = shared.mem.memory();
        mem.write_slice(&vec![0x5a; len], GuestAddress(iova))
            .unwrap_or_else(|e| panic!("device write at {iova:#x}: {e}"));
    }

    fn stat(
        &self,
        f: impl Fn(&virtio_devsim::stats::Stats) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        let stats = self.m.bus.0.shared().stats.clone();
        f(&stats).load(std::sync::atomic::Ordering::SeqCst)
    }

    fn recording(&self) -> bool {
        let shared = self.m.bus.0.shared();
        shared.recorder.as_ref().unwrap().recording()
    }
}

fn set(v: &[u64]) -> BTreeSet<u64> {
    v.iter().copied().collect()
}

#[test]
fn admin_queue_through_common_cfg() {
    let (_m, mut o, _dir) = direct_pair(Config::default());
    let f = o.device_features();
    assert_eq!(f & (VERSION_1 | ADMIN_VQ), VERSION_1 | ADMIN_VQ);
    assert_eq!(f & INDIRECT_DESC, 0, "no indirect descriptors");
    assert_eq!(o.bar_read(0x12, 2), 1, "num_queues: the request queue");
    assert_eq!(o.bar_read(0x3c, 2), 1, "admin_queue_index");
    assert_eq!(o.bar_read(0x3e, 2), 1, "admin_queue_num");
    assert_eq!(o.bar_read(0x38, 4), 0, "queue_notify_data, queue_reset");
    assert_eq!(o.bar_read(0x3c, 4), 0x0001_0001, "one 32-bit read");
    // The admin queue is set up like any queue.
    assert!(o.negotiate(VERSION_1 | ADMIN_VQ));
    o.bar_write(0x16, 2, 1);
    assert_eq!(o.bar_read(0x18, 2), 256, "queue_size defaults to max");
    assert_eq!(o.bar_read(0x1e, 2), 1, "queue_notify_off");
    o.setup_queue(1, AQ_SIZE, 2);
    o.bar_write(0x16, 2, 1);
    assert_eq!(o.bar_read(0x1c, 2), 1, "queue_enable");
    assert_eq!(o.bar_read(0x1a, 2), 2, "vector 2 exists (3 vectors)");
    o.bar_write(0x1a, 2, 3);
    assert_eq!(o.bar_read(0x1a, 2), 0xffff, "vector 3 does not");
    // Reset disables it.
    o.set_status(0);
    o.bar_write(0x16, 2, 1);
    assert_eq!(o.bar_read(0x1c, 2), 0);
    assert_eq!(o.bar_read(0x20, 8), 0, "queue_desc");
    // Features without ADMIN_VQ are fine too (no admin queue used).
    assert!(o.negotiate(VERSION_1));
}

#[test]
fn admin_queue_interrupts_and_polling() {
    use vfio_bindings::bindings::vfio::{
        VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX,
    };
    let (_m, od, _dir) = direct_pair(Config::default());
    let mut o = Owner::up_with_vector(od, 2);
    let irq = eventfd();
    o.d.bus
        .0
        .set_irqs(
            VFIO_PCI_MSIX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            2,
            1,
            vec![irq.try_clone().unwrap()],
        )
        .unwrap();
    assert_eq!(o.exec(&cmd(LIST_QUERY, SLOT, 0, &[]), 16).status(), OK);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(eventfd_take(&irq), 1, "admin queue vector signalled");
    // Polled: vector 0xffff, nothing signalled, completion still there.
    let (_m, od, _dir) = direct_pair(Config::default());
    let mut o = Owner::up(od);
    assert_eq!(o.exec(&cmd(LIST_QUERY, SLOT, 0, &[]), 16).status(), OK);
}

#[test]
fn list_query_bytes() {
    let mut p = Pair::new(Config::default());
    let r = p.o.exec(&cmd(LIST_QUERY, SLOT, 0, &[]), 16);
    assert_eq!(r.used, 16);
    assert_eq!(
        r.bytes,
        [0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0x00, 0x78, 0x00, 0, 0, 0, 0]
    );
    // As many words as fit; a partial word is not written.
    let r = p.o.exec(&cmd(LIST_QUERY, SLOT, 0, &[]), 8 + 3 * 8 + 4);
    assert_eq!(r.used, 32);
    assert_eq!(le64(&r.bytes, 8), ALL_OPCODES);
    assert_eq!(&r.bytes[16..32], &[0; 16]);
    assert_eq!(&r.bytes[32..], &[SENTINEL; 4]);
    // No room for one word.
    p.o.exec(&cmd(LIST_QUERY, SLOT, 0, &[]), 15)
        .assert_error(INVALID_FIELD, "LIST_QUERY without room");
    p.o.exec(&cmd(LIST_QUERY, SRIOV, 0, &[]), 16)
        .assert_error(INVALID_GROUP, "LIST_QUERY SR-IOV");
    p.o.exec(&cmd(LIST_QUERY, 0, 0, &[]), 16)
        .assert_error(INVALID_GROUP, "LIST_QUERY group 0");
    p.o.exec(&cmd(LIST_QUERY, SLOT, 1, &[]), 16)
        .assert_error(INVALID_MEMBER, "LIST_QUERY member 1");
}

#[test]
fn list_use_gates_the_other_opcodes() {
    let mut p = Pair::new(Config::default());
    let cap = cmd(CAP_QUERY, SLOT, 1, &[]);
    for op in [CAP_QUERY, START, STOP, READ] {
        p.o.exec(&cmd(op, SLOT, 1, &[]), 64)
            .assert_error(INVALID_OPCODE, &format!("opcode {op:#x} before LIST_USE"));
    }
    // Failed LIST_USEs change nothing.
    for (data, what) in [
        (words(&[ALL_OPCODES | (1 << 2)]), "unsupported opcode 2"),
        (
            words(&[ALL_OPCODES | (1 << 0x17)]),
            "unsupported opcode 0x17",
        ),
        (words(&[ALL_OPCODES, 1]), "unsupported opcode 64"),
        (vec![3, 0, 0, 0], "half a word"),
        (words(&[ALL_OPCODES, 0])[..12].to_vec(), "a word and a half"),
        (Vec::new(), "no bitmap"),
    ] {
        p.o.exec(&cmd(LIST_USE, SLOT, 0, &data), 8)
            .assert_error(INVALID_FIELD, what);
        p.o.exec(&cap, 24).assert_error(INVALID_OPCODE, what);
    }
    p.o.exec(&cmd(LIST_USE, SRIOV, 0, &words(&[ALL_OPCODES])), 8)
        .assert_error(INVALID_GROUP, "LIST_USE SR-IOV");
    p.o.exec(&cmd(LIST_USE, SLOT, 1, &words(&[ALL_OPCODES])), 8)
        .assert_error(INVALID_MEMBER, "LIST_USE member 1");
    p.o.exec(&cap, 24)
        .assert_error(INVALID_OPCODE, "still gated");
    // Only what was used is accepted.
    let r =
        p.o.exec(&cmd(LIST_USE, SLOT, 0, &words(&[1 << CAP_QUERY])), 8);
    r.assert_error(OK, "LIST_USE of CAP_QUERY");
    assert_eq!(r.bytes, [0; 8]);
    assert_eq!(p.o.exec(&cap, 24).status(), OK);
    p.o.start(1, K4, &[(0, 1)])
        .assert_error(INVALID_OPCODE, "START not used");
    // LIST_QUERY and LIST_USE are never gated; a second LIST_USE replaces
    // the first; trailing zero words are fine.
    p.o.exec(&cmd(LIST_USE, SLOT, 0, &words(&[ALL_OPCODES, 0, 0])), 8)
        .assert_error(OK, "LIST_USE again");
    p.o.start(1, K4, &[(0, 1)]).assert_error(OK, "START used");
    p.o.exec(&cmd(LIST_USE, SLOT, 0, &words(&[0])), 8)
        .assert_error(OK, "LIST_USE of nothing");
    p.o.stop(1)
        .assert_error(INVALID_OPCODE, "STOP no longer used");
    // Unknown opcodes, after LIST_USE too.
    p.o.use_all();
    for op in [0x2, 0x12, 0x17, 0xffff] {
        p.o.exec(&cmd(op, SLOT, 1, &[]), 64)
            .assert_error(INVALID_OPCODE, &format!("opcode {op:#x}"));
    }
}

#[test]
fn cap_query_bytes() {
    let mut p = Pair::ready(Config::default());
    let r = p.o.exec(&cmd(CAP_QUERY, SLOT, 1, &[]), 24);
    assert_eq!(r.used, 24);
    assert_eq!(
        r.bytes,
        [
            0, 0, 0, 0, 0, 0, 0, 0, // status
            0x01, 0x02, 0, 0, // 4 KiB and 2 MiB
            32, 0, 0, 0, // ranges
            0, 0, 1, 0, // 65536 records
            0, 0, 0, 0,
        ]
    );
    // A larger writable part: 16 result bytes, the rest untouched.
    let r = p.o.exec(&cmd(CAP_QUERY, SLOT, 1, &[]), 40);
    assert_eq!(r.used, 24);
    assert_eq!(&r.bytes[24..], &[SENTINEL; 16]);
    p.o.exec(&cmd(CAP_QUERY, SLOT, 1, &[]), 23)
        .assert_error(INVALID_FIELD, "no room for the result");
    p.o.exec(&cmd(CAP_QUERY, SLOT, 2, &[]), 24)
        .assert_error(INVALID_MEMBER, "member 2");
    p.o.exec(&cmd(CAP_QUERY, SLOT, 0, &[]), 24)
        .assert_error(INVALID_MEMBER, "member 0");
    p.o.exec(&cmd(CAP_QUERY, SRIOV, 1, &[]), 24)
        .assert_error(INVALID_GROUP, "SR-IOV group, same member id");

    let mut p = Pair::ready(Config {
        record_capacity: 5,
        record_page_sizes: 0x8003,
        record_ranges: 7,
        member_id: 3,
        ..Config::default()
    });
    let r = p.o.exec(&cmd(CAP_QUERY, SLOT, 3, &[]), 24);
    assert_eq!(
        r.result(),
        [0x03, 0x80, 0, 0, 7, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
    );
    p.o.exec(&cmd(CAP_QUERY, SLOT, 1, &[]), 24)
        .assert_error(INVALID_MEMBER, "member 1 when the member is 3");
}

#[test]
fn start_read_stop_bytes() {
    let mut p = Pair::ready(Config::default());
    let r = p.o.start(1, K4, &[(0x20_0000, 4), (HIGH, 2)]);
    assert_eq!((r.used, r.bytes.clone()), (8, vec![0; 8]));
    assert!(p.recording());
    p.dev_write(0x20_1000, 1);
    p.dev_write(HIGH + 0x1fff, 1);
    p.dev_write(0x20_0010, 8);
    let r = p.o.read(1, 0, u64::MAX, 4);
    assert_eq!(r.used, 8 + 8 + 3 * 8);
    let mut want = vec![0u8; 8];
    want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
    for e in [0x20_0000u64, 0x20_1000, HIGH + 0x1000] {
        want.extend_from_slice(&e.to_le_bytes());
    }
    assert_eq!(&r.bytes[..r.used as usize], &want[..]);
    assert_eq!(&r.bytes[r.used as usize..], &[SENTINEL; 8]);
    // Each record is returned once.
    let r = p.o.read(1, 0, u64::MAX, 4);
    assert_eq!(r.result(), [0, 0, 0, 0, 0, 0, 0, 0]);
    let r = p.o.stop(1);
    assert_eq!((r.used, r.bytes.clone()), (8, vec![0; 8]));
    assert!(!p.recording());
    p.o.read(1, 0, u64::MAX, 4)
        .assert_error(INVALID_COMMAND, "READ after STOP");
    p.o.stop(1).assert_error(OK, "STOP when not recording");
    p.dev_write(0x20_1000, 1);
    p.o.start(1, K4, &[(0x20_0000, 4)])
        .assert_error(OK, "START again");
    let (got, flags) = p.o.read_all(1, 0, u64::MAX);
    assert!(got.is_empty() && flags == 0, "recording starts empty");
    assert_eq!(p.stat(|s| &s.write_records_started), 2);
}

#[test]
fn start_validation() {
    let mut p = Pair::ready(Config::default());
    let good = [(0x20_0000u64, 2u64)];
    let top_page = u64::MAX - K4 + 1;
    let too_many: Vec<(u64, u64)> = (0..33).map(|i| (i * 2 * K4, 1)).collect();
    let most: Vec<(u64, u64)> = (0..32).map(|i| (i * 2 * K4, 1)).collect();
    let mut short = start_data(K4, &good);
    short.pop();
    let mut long = start_data(K4, &good);
    long.push(0);
    // (data, what): each is EINVAL/INVALID_FIELD and starts nothing.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (start_data(0, &good), "page size 0"),
        (start_data(3 * K4, &good), "page size not a power of two"),
        (start_data(2 * K4, &good), "8 KiB not in the bitmap"),
        (start_data(2048, &good), "below 4 KiB"),
        (start_data(1 << 44, &good), "bit 32"),
        (start_data(1 << 63, &good), "2^63"),
        (start_data(K4, &[]), "count 0"),
        (start_data(K4, &too_many), "count 33 > 32 ranges"),
        (short, "data one byte short"),
        (long, "data one byte long"),
        (start_data(K4, &good)[..15].to_vec(), "15 bytes of data"),
        (Vec::new(), "no data"),
        (
            start_data(K4, &good)[..16].to_vec(),
            "count 1 without its entry",
        ),
        (
            start_data(K4, &[(0x20_0000, 1), (0x10_0000, 1)]),
            "not ascending",
        ),
        (
            start_data(K4, &[(0x20_0000, 2), (0x20_1000, 1)]),
            "overlapping",
        ),
        (start_data(K4, &[(0x20_0000, 1), (0x20_0000, 1)]), "equal"),
        (start_data(K4, &[(0x20_0800, 1)]), "unaligned to 4 KiB"),
        (start_data(M2, &[(0x30_0000, 1)]), "unaligned to 2 MiB"),
        (start_data(K4, &[(0x20_0000, 0)]), "page_count 0"),
        (start_data(K4, &[(top_page, 1)]), "ends at 2^64"),
        (
            start_data(K4, &[(0, u64::MAX)]),
            "page_count * page_size wraps",
        ),
        (start_data(M2, &[(0, 1 << 43)]), "2 MiB * 2^43 = 2^64"),
    ];
    for (data, what) in cases {
        p.o.exec(&cmd(START, SLOT, 1, &data), 8)
            .assert_error(INVALID_FIELD, what);
        assert!(!p.recording(), "{what}: not recording");
    }
    p.o.exec(&cmd(START, SLOT, 2, &start_data(K4, &good)), 8)
        .assert_error(INVALID_MEMBER, "member 2");
    p.o.exec(&cmd(START, SLOT, 0, &start_data(K4, &good)), 8)
        .assert_error(INVALID_MEMBER, "member 0");
    p.o.exec(&cmd(START, SRIOV, 1, &start_data(K4, &good)), 8)
        .assert_error(INVALID_GROUP, "SR-IOV");
    assert!(!p.recording());
    // The limits themselves are fine: 32 ranges, adjacent ranges, the last
    // page below 2^64, 2 MiB pages.
    for (ps, ranges) in [
        (K4, most),
        (K4, vec![(0x20_0000, 1), (0x20_1000, 1)]),
        (K4, vec![(top_page - K4, 1)]),
        (M2, vec![(HIGH, 2)]),
    ] {
        p.o.start(1, ps, &ranges).assert_error(OK, "valid START");
        p.o.stop(1).assert_error(OK, "STOP");
    }
    // START while recording: INVALID_COMMAND, recording and records kept.
    p.o.start(1, K4, &good).assert_error(OK, "START");
    p.dev_write(0x20_0000, 1);
    p.o.start(1, K4, &[(0, 1)])
        .assert_error(INVALID_COMMAND, "START while recording");
    p.o.exec(&cmd(START, SLOT, 1, &start_data(0, &good)), 8)
        .assert_error(INVALID_COMMAND, "state is checked before fields");
    let (got, _) = p.o.read_all(1, 0, u64::MAX);
    assert_eq!(got, set(&[0x20_0000]));
    assert_eq!(p.stat(|s| &s.write_records_started), 5);
}

#[test]
fn read_validation() {
    let mut p = Pair::ready(Config::default());
    p.o.read(1, 0, 1, 1)
        .assert_error(INVALID_COMMAND, "READ when not recording");
    p.o.exec(&cmd(READ, SLOT, 1, &[]), 32)
        .assert_error(INVALID_COMMAND, "state before fields");
    p.o.start(1, K4, &[(0x20_0000, 4)]).assert_error(OK, "");
    p.dev_write(0x20_0000, 4 * K4 as usize);
    p.o.read(1, 0x20_0000, 0, 4)
        .assert_error(INVALID_FIELD, "length 0");
    p.o.read(1, u64::MAX, 2, 4)
        .assert_error(INVALID_FIELD, "window wraps");
    p.o.read(1, 1, u64::MAX, 4)
        .assert_error(INVALID_FIELD, "window ends at 2^64");
    p.o.exec(&cmd(READ, SLOT, 1, &read_data(0, 1)[..15]), 32)
        .assert_error(INVALID_FIELD, "short data");
    p.o.exec(&cmd(READ, SLOT, 1, &read_data(0, u64::MAX)), 15)
        .assert_error(INVALID_FIELD, "no room for count and flags");
    p.o.exec(&cmd(READ, SLOT, 2, &read_data(0, u64::MAX)), 32)
        .assert_error(INVALID_MEMBER, "member 2");
    p.o.exec(&cmd(READ, SRIOV, 1, &read_data(0, u64::MAX)), 32)
        .assert_error(INVALID_GROUP, "SR-IOV");
    // Room for count and flags only: no entry, MORE.
    let r = p.o.exec(&cmd(READ, SLOT, 1, &read_data(0, u64::MAX)), 16);
    assert_eq!(r.used, 16);
    assert_eq!(r.result(), [0, 0, 0, 0, 1, 0, 0, 0]);
    // Nothing was consumed by the failures.
    let (got, flags) = p.o.read_all(1, 0, u64::MAX);
    assert_eq!(got.len(), 4);
    assert_eq!(flags & OVERFLOW, 0);
    // The largest window that does not wrap.
    p.o.read(1, 0, u64::MAX, 1).records();
}

#[test]
fn malformed_chains_never_crash() {
    let mut p = Pair::ready(Config::default());
    let lq = cmd(LIST_QUERY, SLOT, 0, &[]);
    // No writable part, or one too short for the status: used length 0,
    // nothing written.
    let r = p.o.exec_split(&lq, &[], &[]);
    assert_eq!(r.used, 0);
    let r = p.o.exec_split(&lq, &[], &[4, 3]);
    assert_eq!((r.used, r.bytes), (0, vec![SENTINEL; 7]));
    // Readable part shorter than the header: INVALID_COMMAND.
    p.o.exec(&lq[..23], 16)
        .assert_error(INVALID_COMMAND, "23-byte header");
    p.o.exec(&[], 16)
        .assert_error(INVALID_COMMAND, "no readable part");
    // Unmapped memory in the readable part; in the writable part.
    let (q, mem) = (p.o.aq as usize, p.o.d.mem.clone());
    let head = p.o.d.queues[q].push(&mem, &[(0xdead_0000_0000, 24, false), (RES_AREA, 16, true)]);
    p.o.kick();
    assert_eq!(p.o.d.wait_used(q as u16, 1), vec![(head as u32, 8)]);
    assert_eq!(
        p.o.writable(&[16])[..8],
        [22, 0, 1, 0, 0, 0, 0, 0],
        "unreadable command"
    );
    let head = p.o.d.queues[q].push(&mem, &[(CMD_AREA, 24, false), (0xdead_0000_0000, 16, true)]);
    p.o.kick();
    assert_eq!(p.o.d.wait_used(q as u16, 1), vec![(head as u32, 0)]);
    // A readable descriptor after a writable one is still readable.
    p.o.d
        .mem
        .write_slice(&lq[..10], GuestAddress(CMD_AREA))
        .unwrap();
    p.o.d
        .mem
        .write_slice(&lq[10..], GuestAddress(CMD_AREA + 0x100))
        .unwrap();
    p.o.d
        .mem
        .write_slice(&[SENTINEL; 16], GuestAddress(RES_AREA))
        .unwrap();
    let head = p.o.d.queues[q].push(
        &mem,
        &[
            (CMD_AREA, 10, false),
            (RES_AREA, 16, true),
            (CMD_AREA + 0x100, 14, false),
        ],
    );
    p.o.kick();
    assert_eq!(p.o.d.wait_used(q as u16, 1), vec![(head as u32, 16)]);
    // A huge readable part (2 GiB) is refused without reading it. (A chain
    // longer than 4 GiB in all ends at virtio-queue before that.)
    let head = p.o.d.queues[q].push(&mem, &[(0, 1 << 31, false), (RES_AREA, 16, true)]);
    p.o.kick();
    assert_eq!(p.o.d.wait_used(q as u16, 1), vec![(head as u32, 8)]);
    // Still serving.
    assert_eq!(p.o.exec(&lq, 16).status(), OK);
    let failed = p.stat(|s| &s.admin_commands_failed);
    assert_eq!(failed, 7);
}

#[test]
fn any_descriptor_split() {
    let mut p = Pair::ready(Config::default());
    let ranges = [(0x20_0000, 8), (0x40_0000, 8), (HIGH, 8)];
    let start = cmd(START, SLOT, 1, &start_data(K4, &ranges));
    // The header split inside its fields, the data inside an entry.
    p.o.exec_split(&start, &[1, 2, 20, 5, 13, 7], &[3, 1, 4])
        .assert_error(OK, "split START");
    for page in [0x20_0000u64, 0x20_3000, 0x40_7000, HIGH + 0x5000, 0x30_0000] {
        p.dev_write(page + 17, 1);
    }
    // Split status and entries.
    let read = cmd(READ, SLOT, 1, &read_data(0, u64::MAX));
    let r =
        p.o.exec_split(&read, &[24, 3, 13], &[1, 1, 6, 5, 3, 17, 100]);
    assert_eq!(r.status(), OK);
    assert_eq!(r.used, 8 + 8 + 4 * 8);
    let (got, flags) = r.records();
    assert_eq!(flags, 0);
    assert_eq!(got, [0x20_0000, 0x20_3000, 0x40_7000, HIGH + 0x5000]);
    // The same bytes as an unsplit reply would hold.
    let mut want = vec![0u8; 8];
    want.extend_from_slice(&4u32.to_le_bytes());
    want.extend_from_slice(&0u32.to_le_bytes());
    for g in &got {
        want.extend_from_slice(&g.to_le_bytes());
    }
    assert_eq!(&r.bytes[..r.used as usize], &want[..]);
    // One byte per writable descriptor.
    let lq = cmd(LIST_QUERY, SLOT, 0, &[]);
    let r = p.o.exec_split(&lq, &[5; 4], &[1; 16]);
    assert_eq!(r.used, 16);
    assert_eq!(le64(&r.bytes, 8), ALL_OPCODES);
}

#[test]
fn records_exact_4k_pages() {
    let mut p = Pair::ready(Config::default());
    let hi = HIGH + 0x10_0000;
    p.o.start(
        1,
        K4,
        &[(0x20_0000, 16), (0x40_0000, 1), (0x40_2000, 2), (hi, 8)],
    )
    .assert_error(OK, "START");
    let writes: [(u64, usize); 12] = [
        (0x20_0005, 1),             // one byte
        (0x20_1ff0, 0x20),          // straddles two pages
        (0x1f_f000, 0x1800),        // straddles the first range's start
        (0x20_f800, 0x1000),        // straddles its end
        (0x30_0000, 0x4000),        // outside every range
        (0x3f_ffff, 0x1002),        // from below range 2 into range 2
        (0x40_0fff, 0x1002),        // range 2's last byte, a gap, range 3
        (0x40_3fff, 2),             // range 3's last byte and past it
        (hi + 0x3007, 1),           // above 4 GiB
        (hi + 0x7ff0, 0x40),        // straddles the high range's end
        (hi - 0x10, 0x10),          // just below the high range
        (HIGH + 0x20_0000, 0x1000), // above 4 GiB, outside
    ];
    for (a, l) in writes {
        p.dev_write(a, l);
    }
    let want = set(&[
        0x20_0000,
        0x20_1000,
        0x20_2000,
        0x20_f000,
        0x40_0000,
        0x40_2000,
        0x40_3000,
        hi + 0x3000,
        hi + 0x7000,
    ]);
    let shared = p.m.bus.0.shared().clone();
    assert_eq!(set(&shared.recorder.as_ref().unwrap().pages()), want);
    let (got, flags) = p.o.read_all(1, 0, u64::MAX);
    assert_eq!(got, want);
    assert_eq!(flags, 0);
    assert_eq!(p.stat(|s| &s.write_records_stored), want.len() as u64);
    assert_eq!(p.stat(|s| &s.write_records_read), want.len() as u64);
    // A page already recorded costs nothing: written again, one record.
    p.dev_write(0x20_0000, 1);
    p.dev_write(0x20_0fff, 1);
    p.dev_write(0x20_0000, 1);
    assert_eq!(p.o.read_all(1, 0, u64::MAX).0, set(&[0x20_0000]));
}

#[test]
fn records_exact_2m_pages() {
    let mut p = Pair::ready(Config::default());
    p.o.start(1, M2, &[(0x40_0000, 2), (HIGH, 2)])
        .assert_error(OK, "START 2 MiB");
    p.dev_write(0x40_1234, 1);
    p.dev_write(0x5f_fff0, 0x20); // two pages
    p.dev_write(0x80_0000, 0x1000); // just past the range
    p.dev_write(0x3f_ffff, 1); // just below
    p.dev_write(HIGH + 0x20_0005, 3);
    let (got, flags) = p.o.read_all(1, 0, u64::MAX);
    assert_eq!(got, set(&[0x40_0000, 0x60_0000, HIGH + M2]));
    assert_eq!(flags, 0);
    // A window inside a page returns the page (its aligned IOVA).
    p.dev_write(HIGH + 0x1000, 1);
    let (got, _) = p.o.read(1, HIGH + 0x1f_ffff, 1, 4).records();
    assert_eq!(got, [HIGH]);
}

#[test]
fn read_window_takes_overlapping_records_only() {
    let mut p = Pair::ready(Config::default());
    p.o.start(1, K4, &[(0x20_0000, 32)]).assert_error(OK, "");
    for i in 0..32 {
        p.dev_write(0x20_0000 + i * K4, 1);
    }
    // [0x20_3800, 0x20_6001): pages 3, 4, 5 and 6.
    let (got, flags) = p.o.read(1, 0x20_3800, 0x2801, 8).records();
    assert_eq!(got, [0x20_3000, 0x20_4000, 0x20_5000, 0x20_6000]);
    assert_eq!(flags, 0, "no MORE: nothing else overlaps the window");
    assert!(p.o.read(1, 0x20_3800, 0x2801, 8).records().0.is_empty());
    // A window outside the started ranges: nothing.
    assert!(p.o.read(1, 0x30_0000, 0x10_0000, 8).records().0.is_empty());
    let (got, _) = p.o.read_all(1, 0x20_0000, 32 * K4);
    assert_eq!(got.len(), 28);
    assert!(!got.contains(&0x20_3000));
}

#[test]
fn small_buffers_get_more_then_the_rest() {
    let mut p = Pair::ready(Config::default());
    p.o.start(1, K4, &[(0x20_0000, 16), (HIGH, 16)])
        .assert_error(OK, "");
    let mut want = BTreeSet::new();
    for i in [0u64, 3, 5, 9, 15] {
        p.dev_write(0x20_0000 + i * K4, 1);
        want.insert(0x20_0000 + i * K4);
        p.dev_write(HIGH + i * K4, 1);
        want.insert(HIGH + i * K4);
    }
    let mut got = Vec::new();
    for (slots, flags) in [(3, MORE), (3, MORE), (3, MORE), (3, 0)] {
        let r = p.o.read(1, 0, u64::MAX, slots);
        let (e, f) = r.records();
        assert_eq!(f, flags, "after {} records", got.len());
        got.extend(e);
    }
    assert_eq!(got.len(), 10);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "ascending, each once");
    assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), want);
    // A partial slot is not used: room for 2 entries and a half.
    p.dev_write(0x20_0000, 1);
    p.dev_write(0x20_1000, 1);
    p.dev_write(0x20_2000, 1);
    let r =
        p.o.exec(&cmd(READ, SLOT, 1, &read_data(0, u64::MAX)), 16 + 20);
    assert_eq!(r.used, 32);
    assert_eq!(r.records(), (vec![0x20_0000, 0x20_1000], MORE));
}

#[test]
fn overflow_is_reported_once() {
    let mut p = Pair::ready(Config {
        record_capacity: 4,
        ..Config::default()
    });
    p.o.start(1, K4, &[(0x20_0000, 64)]).assert_error(OK, "");
    p.dev_write(0x20_0000, 4 * K4 as usize);
    assert_eq!(p.stat(|s| &s.write_record_overflows), 0);
    // Full: recorded pages cost nothing, new ones are dropped.
    p.dev_write(0x20_0000, 1);
    assert_eq!(p.stat(|s| &s.write_record_overflows), 0);
    p.dev_write(0x20_8000, 2 * K4 as usize);
    assert_eq!(p.stat(|s| &s.write_records_stored), 4);
    assert_eq!(p.stat(|s| &s.write_record_overflows), 2);
    // Reported on the next READ of any window, with its records.
    let (got, flags) = p.o.read(1, 0x20_1000, 1, 8).records();
    assert_eq!((got, flags), (vec![0x20_1000], OVERFLOW));
    let (got, flags) = p.o.read(1, 0x20_0000, 64 * K4, 8).records();
    assert_eq!(got, [0x20_0000, 0x20_2000, 0x20_3000]);
    assert_eq!(flags, 0, "reported once");
    // Room again: new pages are stored.
    p.dev_write(0x20_9000, 1);
    let (got, flags) = p.o.read(1, 0, u64::MAX, 8).records();
    assert_eq!((got, flags), (vec![0x20_9000], 0));
    // Reported even by a READ of a window without records.
    p.dev_write(0x20_a000, 5 * K4 as usize);
    let r = p.o.read(1, 0x90_0000, 1, 8);
    assert_eq!(r.records(), (vec![], OVERFLOW));
    assert_eq!(r.result(), [0, 0, 0, 0, 2, 0, 0, 0]);
    // Writes outside the ranges never overflow.
    let (_, flags) = p.o.read_all(1, 0, u64::MAX);
    assert_eq!(flags, 0);
    p.dev_write(0x20_0000, 4 * K4 as usize);
    p.dev_write(0x30_0000, 4 * K4 as usize);
    assert_eq!(p.o.read(1, 0x90_0000, 1, 8).records(), (vec![], 0));
}

#[test]
fn stop_discards_records_and_overflow() {
    let mut p = Pair::ready(Config {
        record_capacity: 2,
        ..Config::default()
    });
    p.o.start(1, K4, &[(0x20_0000, 8)]).assert_error(OK, "");
    p.dev_write(0x20_0000, 8 * K4 as usize);
    p.o.stop(1).assert_error(OK, "STOP");
    p.o.start(1, K4, &[(0x20_0000, 8)]).assert_error(OK, "");
    assert_eq!(p.o.read(1, 0, u64::MAX, 8).records(), (vec![], 0));
    // Stopped: writes are not recorded.
    p.o.stop(1).assert_error(OK, "STOP");
    p.dev_write(0x20_0000, 1);
    p.o.start(1, K4, &[(0x20_0000, 8)]).assert_error(OK, "");
    assert_eq!(p.o.read(1, 0, u64::MAX, 8).records(), (vec![], 0));
}

#[test]
fn owner_reset_stops_recording_and_discards() {
    for how in ["device_status", "flr"] {
        let mut p = Pair::ready(Config {
            record_capacity: 1,
            ..Config::default()
        });
        p.o.start(1, K4, &[(0x20_0000, 8)]).assert_error(OK, "");
        p.dev_write(0x20_0000, 2 * K4 as usize);
        match how {
            "flr" => p.o.d.initiate_flr(),
            _ => p.o.d.set_status(0),
        }
        assert!(!p.recording(), "{how}: recording stopped");
        assert_eq!(p.o.d.status(), 0);
        p.o.d.bar_write(0x16, 2, 1);
        assert_eq!(p.o.d.bar_read(0x1c, 2), 0, "{how}: admin queue reset");
        // Writes meanwhile are not recorded.
        p.dev_write(0x20_1000, 1);
        p.o.reinit();
        // LIST_USE is forgotten too.
        p.o.read(1, 0, u64::MAX, 8)
            .assert_error(INVALID_OPCODE, "gated again after reset");
        p.o.use_all();
        p.o.read(1, 0, u64::MAX, 8)
            .assert_error(INVALID_COMMAND, "not recording after reset");
        p.o.start(1, K4, &[(0x20_0000, 8)]).assert_error(OK, "");
        assert_eq!(
            p.o.read(1, 0, u64::MAX, 8).records(),
            (vec![], 0),
            "{how}: no record, no overflow survives"
        );
    }
}

#[test]
fn an_owner_that_goes_away_stops_recording() {
    let mut p = Pair::ready(Config::default());
    p.o.start(1, K4, &[(0x20_0000, 8)]).assert_error(OK, "");
    let Pair { m, o, _dir } = p;
    drop(o);
    let recorder = m.bus.0.shared().recorder.clone().unwrap();
    assert!(!recorder.recording());
}

#[test]
fn member_reset_keeps_recording() {
    let mut p = Pair::ready(Config::default());
    p.m.bring_up(VERSION_1 | EVENT_IDX, 1, 64);
    p.o.start(1, K4, &[(DATA_BASE, 256)]).assert_error(OK, "");
    // A real block request: its data pages are recorded.
    p.m.push_request(0, 0, T_IN, 0, &[(DATA_BASE + 0xe00, 1024)]);
    p.m.kick(0);
    p.m.wait_used(0, 1);
    p.m.set_status(0);
    p.dev_write(DATA_BASE + 0x5000, 1);
    p.m.initiate_flr();
    p.m.set_power_state(3);
    p.m.set_power_state(0);
    assert!(p.recording(), "member resets keep recording");
    p.dev_write(DATA_BASE + 0x7000, 1);
    let (got, flags) = p.o.read_all(1, 0, u64::MAX);
    assert_eq!(
        got,
        set(&[
            DATA_BASE,
            DATA_BASE + 0x1000,
            DATA_BASE + 0x5000,
            DATA_BASE + 0x7000
        ])
    );
    assert_eq!(flags, 0);
    let stats = p.m.bus.0.shared().stats.clone();
    assert_eq!(
        stats
            .function_resets
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[test]
fn recording_and_tracker_are_independent() {
    let mut p = Pair::ready(Config::default());
    let bitmap_len = MEM_SIZE / 4096 / 8;
    p.m.track_start(0, bitmap_len);
    p.o.start(1, K4, &[(DATA_BASE, 1)]).assert_error(OK, "");
    p.dev_write(DATA_BASE + 0x10, 1);
    p.dev_write(DATA_BASE + 0x1000, 1);
    assert_eq!(
        p.m.harvest(bitmap_len),
        [DATA_BASE >> 12, (DATA_BASE >> 12) + 1]
    );
    assert_eq!(p.o.read_all(1, 0, u64::MAX).0, set(&[DATA_BASE]));
    // The tracker's own bitmap writes are not device writes of the
    // recording: the bitmap page is not recorded even inside a range.
    p.o.stop(1).assert_error(OK, "");
    p.o.start(1, K4, &[(DATA_BASE, 1), (BITMAP_BASE, 16)])
        .assert_error(OK, "");
    p.dev_write(DATA_BASE, 1);
    let (got, _) = p.o.read_all(1, 0, u64::MAX);
    assert_eq!(got, set(&[DATA_BASE]), "the bitmap page is not recorded");
    assert_ne!(p.m.harvest(bitmap_len), Vec::<u64>::new());
}

#[test]
fn owner_request_queue_is_inert() {
    let (_m, mut o, _dir) = direct_pair(Config::default());
    o.bring_up(VERSION_1 | ADMIN_VQ, 1, 32);
    assert_eq!(o.bar_read(DEVICE_CFG_OFFSET, 8), 0, "capacity 0");
    o.push_request(0, 0, T_GET_ID, 0, &[(DATA_BASE, 20)]);
    o.push_request(0, 1, T_IN, 0, &[(DATA_BASE + 512, 512)]);
    o.push_request(0, 2, T_FLUSH, 0, &[]);
    o.kick(0);
    o.wait_used(0, 3);
    assert_eq!(
        [o.status_byte(0), o.status_byte(1), o.status_byte(2)],
        [0, 1, 0]
    );
    let mut id = [0u8; 12];
    o.mem.read_slice(&mut id, GuestAddress(DATA_BASE)).unwrap();
    assert_eq!(&id, b"devsim-owner");
    // No tracker and no device state block.
    o.bar_write(MEMORY_TRACK_OFFSET, 1, 1);
    assert_eq!(o.bar_read(MEMORY_TRACK_OFFSET, 1), 0);
    o.bar_write(DEVICE_STATE_OFFSET + 4, 1, 0);
    assert_eq!(o.bar_read(DEVICE_STATE_OFFSET + 4, 1), 0);
}

#[test]
fn fault_admin_hang() {
    let mut p = Pair::ready(Config {
        faults: virtio_devsim::config::Faults {
            admin_hang: Some(READ),
            ..Default::default()
        },
        ..Config::default()
    });
    p.o.start(1, K4, &[(0x20_0000, 1)]).assert_error(OK, "");
    p.o.submit(&cmd(READ, SLOT, 1, &read_data(0, u64::MAX)), &[], &[64]);
    p.o.kick();
    assert!(
        !p.o.completes_within(Duration::from_millis(300)),
        "never completed"
    );
    // Other commands still complete; after an owner reset too.
    p.o.submit(&cmd(LIST_QUERY, SLOT, 0, &[]), &[], &[16]);
    p.o.kick();
    let aq = p.o.aq;
    let used = p.o.d.wait_used(aq, 1);
    assert_eq!(used[0].1, 16);
    p.o.d.set_status(0);
    p.o.reinit();
    p.o.use_all();
    assert_eq!(p.stat(|s| &s.admin_commands), 5);
}

#[test]
fn fault_admin_status() {
    let mut p = Pair::ready(Config {
        faults: virtio_devsim::config::Faults {
            admin_status: Some(START),
            ..Default::default()
        },
        ..Config::default()
    });
    let r = p.o.start(1, K4, &[(0x20_0000, 1)]);
    assert_eq!(
        (r.used, r.bytes.clone()),
        (8, vec![0xff, 0x7f, 0, 0, 0, 0, 0, 0])
    );
    assert!(!p.recording(), "the command had no effect");
    // Other opcodes are unaffected.
    p.o.read(1, 0, 1, 1)
        .assert_error(INVALID_COMMAND, "READ is fine");
    assert_eq!(p.stat(|s| &s.admin_commands_failed), 2);
}

#[test]
fn fault_stray_records() {
    let mut p = Pair::ready(Config {
        faults: virtio_devsim::config::Faults {
            stray_records: true,
            ..Default::default()
        },
        ..Config::default()
    });
    p.o.start(1, K4, &[(0x20_0000, 16)]).assert_error(OK, "");
    p.dev_write(0x20_0000, 3 * K4 as usize);
    // The window ends inside page 2: the stray is page 3.
    let (got, flags) = p.o.read(1, 0x20_0000, 0x2800, 8).records();
    assert_eq!(
        (got, flags),
        (vec![0x20_0000, 0x20_1000, 0x20_2000, 0x20_3000], 0)
    );
    // No records: no stray.
    assert_eq!(p.o.read(1, 0x20_0000, 0x2800, 8).records(), (vec![], 0));
    // The window ends on a page boundary: the stray is the page there.
    p.dev_write(0x20_5000, 1);
    let (got, _) = p.o.read(1, 0x20_5000, K4, 8).records();
    assert_eq!(got, [0x20_5000, 0x20_6000]);
    assert_eq!(p.stat(|s| &s.write_records_read), 4, "strays not counted");
}

#[test]
fn fault_owner_reset_after_reads() {
    let mut p = Pair::ready(Config {
        faults: virtio_devsim::config::Faults {
            owner_reset_after_reads: Some(2),
            ..Default::default()
        },
        ..Config::default()
    });
    p.o.start(1, K4, &[(0x20_0000, 16)]).assert_error(OK, "");
    p.dev_write(0x20_0000, 3 * K4 as usize);
    assert_eq!(p.o.read(1, 0x20_0000, K4, 8).records().0, [0x20_0000]);
    assert_eq!(p.o.d.status(), 15, "one READ: still up");
    // The second READ completes, then the owner is reset.
    assert_eq!(p.o.read(1, 0x20_1000, K4, 8).records().0, [0x20_1000]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.recording() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(p.o.d.status(), 0, "device_status reads 0");
    p.o.d.bar_write(0x16, 2, 1);
    assert_eq!(p.o.d.bar_read(0x1c, 2), 0, "admin queue disabled");
    // Re-initialised: recording and the third record are gone; the fault
    // does not come back.
    p.o.reinit();
    p.o.use_all();
    p.o.read(1, 0, u64::MAX, 8)
        .assert_error(INVALID_COMMAND, "recording stopped");
    p.o.start(1, K4, &[(0x20_0000, 16)]).assert_error(OK, "");
    assert_eq!(p.o.read(1, 0, u64::MAX, 8).records(), (vec![], 0));
    assert_eq!(p.o.read(1, 0, u64::MAX, 8).records(), (vec![], 0));
    assert_eq!(p.o.d.status(), 15);
    let owner_resets =
        p.o.d
            .bus
            .0
            .shared()
            .stats
            .resets
            .load(std::sync::atomic::Ordering::SeqCst);
    assert!(owner_resets >= 2);
}

// ---- Over the sockets, against the binary ----

/// (offset, id) of the standard capabilities, vendor ones as cfg_type.
fn caps(c: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = c[0x34] as usize;
    while at != 0 && out.len() < 48 {
        out.push(if c[at] == 9 { c[at + 3] } else { c[at] });
        at = c[at + 1] as usize;
    }
    out
}

#[test]
fn two_functions_two_sockets() {
    let srv = Server::spawn_pair(&["--capacity-sectors", "4096"]);
    let mut m = srv.connect();
    let mut o = srv.connect_owner();
    for (d, who) in [(&mut m, "member"), (&mut o, "owner")] {
        let SocketBus(client) = &d.bus;
        assert_eq!(client.region(7).expect("config").size, 4096, "{who}");
        let c = d.config_space(4096);
        assert_eq!(&c[0..4], &[0xf4, 0x1a, 0x42, 0x10], "{who}: ids");
        assert_eq!(c[0x0e], 0x80, "{who}: multi-function");
        // PCI Express endpoint.
        assert_eq!(&c[0xb0..0xb4], &[0x10, 0xec, 0x02, 0x00], "{who}");
        // ACS: id 0x0d version 1, last; SV|RR|CR|UF; control 0.
        assert_eq!(
            &c[0x100..0x108],
            &[0x0d, 0, 0x01, 0, 0x1d, 0, 0, 0],
            "{who}"
        );
        d.config_write(0x106, 2, 0xffff);
        assert_eq!(d.config_read(0x106, 2), 0x1d, "{who}: ACS control");
    }
    assert_eq!(
        caps(&m.config_space(256)),
        [1, 2, 3, 4, 10, 11, 0x11, 0x10, 0x01]
    );
    assert_eq!(caps(&o.config_space(256)), [1, 2, 3, 4, 0x11, 0x10, 0x01]);
    assert_eq!(o.config_read(0x4c, 4), 0x40, "owner common cfg length");
    assert_eq!(m.config_read(0x4c, 4), 0x38, "member common cfg length");
    assert_eq!(m.device_features() & ADMIN_VQ, 0);
    assert_eq!(m.bar_read(0x3c, 4), 0, "the member has no admin queue");

    // Each function has its own RAM and mappings: the owner's commands
    // live in its RAM, the member's requests in its own.
    m.bring_up(VERSION_1 | EVENT_IDX, 1, 64);
    let mut o = Owner::up(o);
    o.use_all();
    o.start(1, K4, &[(DATA_BASE, 256)])
        .assert_error(OK, "START");
    m.push_request(0, 0, T_IN, 0, &[(DATA_BASE + 0xe00, 1024)]);
    m.push_request(0, 1, T_IN, 0, &[(DATA_BASE + 0x20_0000, 512)]);
    m.kick(0);
    m.wait_used(0, 2);
    let (got, flags) = o.read_all(1, 0, u64::MAX);
    assert_eq!(got, set(&[DATA_BASE, DATA_BASE + 0x1000]));
    assert_eq!(flags, 0);
}

#[test]
fn stats_over_sockets() {
    let srv = Server::spawn_pair(&["--record-capacity", "2"]);
    let mut m = srv.connect();
    let mut o = Owner::up(srv.connect_owner());
    o.use_all();
    o.start(1, K4, &[(DATA_BASE, 16)]).assert_error(OK, "START");
    o.start(1, K4, &[(DATA_BASE, 16)])
        .assert_error(INVALID_COMMAND, "START twice");
    m.bring_up(VERSION_1, 1, 64);
    m.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 3 * 4096)]);
    m.kick(0);
    m.wait_used(0, 1);
    let (got, flags) = o.read_all(1, 0, u64::MAX);
    assert_eq!((got.len(), flags), (2, OVERFLOW));
    srv.dump_stats("write_records_started");
    for (k, v) in [
        ("admin_commands", 4),
        ("admin_commands_failed", 1),
        ("write_records_stored", 2),
        ("write_records_read", 2),
        ("write_record_overflows", 1),
        ("write_records_started", 1),
        ("requests_served", 1),
        ("owner_requests_served", 0),
        ("owner_resets", 1),
    ] {
        assert_eq!(srv.stat(k), v, "{k}");
    }
    assert!(srv.stat("owner_mmio_writes_notify") >= 4);
    assert!(srv.stat("mmio_writes_notify") >= 1);
}

#[test]
fn fault_switches_on_the_command_line() {
    let srv = Server::spawn_pair(&[
        "--member-id",
        "5",
        "--record-page-sizes",
        "0x1",
        "--record-ranges",
        "2",
        "--fault-admin-status",
        "0x13",
        "--fault-stray-records",
        "--fault-owner-reset-after-reads=1",
        "--fault-admin-hang",
        "21",
    ]);
    let mut o = Owner::up(srv.connect_owner());
    o.use_all();
    let r = o.exec(&cmd(CAP_QUERY, SLOT, 5, &[]), 24);
    assert_eq!(&r.bytes[..8], &[0xff, 0x7f, 0, 0, 0, 0, 0, 0]);
    o.start(5, M2, &[(0, 1)])
        .assert_error(INVALID_FIELD, "2 MiB not supported");
    o.start(5, K4, &[(0, 1), (K4, 1), (2 * K4, 1)])
        .assert_error(INVALID_FIELD, "3 ranges");
    o.start(1, K4, &[(0, 1)])
        .assert_error(INVALID_MEMBER, "member 1");
    o.start(5, K4, &[(DATA_BASE, 4)]).assert_error(OK, "START");
    o.submit(&cmd(STOP, SLOT, 5, &[]), &[], &[8]);
    o.kick();
    assert!(
        !o.completes_within(Duration::from_millis(200)),
        "STOP hangs"
    );
    let mut m = srv.connect();
    m.bring_up(VERSION_1, 1, 64);
    m.push_request(0, 0, T_IN, 0, &[(DATA_BASE, 512)]);
    m.kick(0);
    m.wait_used(0, 1);
    let (got, _) = o.read(5, DATA_BASE, 512, 8).records();
    assert_eq!(got, [DATA_BASE, DATA_BASE + 0x1000], "a stray record");
    let deadline = Instant::now() + Duration::from_secs(5);
    while o.d.status() != 0 {
        assert!(Instant::now() < deadline, "owner reset after 1 READ");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn exits_when_both_clients_are_gone() {
    let mut srv = Server::spawn_pair(&[]);
    let m = srv.connect();
    let o = srv.connect_owner();
    drop(m);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "the owner is still served"
    );
    assert!(!srv.socket.exists(), "the member's socket is gone");
    assert!(srv.owner_socket().exists());
    drop(o);
    assert!(srv.wait(Duration::from_secs(10)).success());
    assert!(!srv.owner_socket().exists());
    assert_eq!(srv.stat("admin_commands"), 0);
}

#[test]
fn sigterm_removes_both_sockets() {
    let mut srv = Server::spawn_pair(&[]);
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    assert!(srv.wait(Duration::from_secs(10)).success());
    assert!(!srv.socket.exists() && !srv.owner_socket().exists());
}

#[test]
fn no_tracker_option() {
    for pair in [false, true] {
        let srv = if pair {
            Server::spawn_pair(&["--no-tracker"])
        } else {
            Server::spawn(&["--no-tracker"])
        };
        let mut m = srv.connect();
        assert_eq!(
            caps(&m.config_space(256)),
            [1, 2, 3, 4, 11, 0x11, 0x10, 0x01]
        );
        m.track_write(8, 8, BITMAP_BASE);
        m.track_write(0, 1, 1);
        assert_eq!(m.track_read(0, 1), 0);
        assert_eq!(m.track_read(8, 8), 0);
        // The device state block is still there.
        m.bring_up(VERSION_1, 1, 32);
        m.select_state(0);
        assert_eq!(m.queue_status(), 1);
    }
}

#[test]
fn help_lists_the_new_options() {
    let out = std::process::Command::new(devsim_bin())
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for opt in [
        "--owner-socket",
        "--member-id",
        "--record-capacity",
        "--record-page-sizes",
        "--record-ranges",
        "--no-tracker",
        "--fault-admin-hang",
        "--fault-admin-status",
        "--fault-stray-records",
        "--fault-owner-reset-after-reads",
    ] {
        assert!(text.contains(opt), "{opt} in --help");
    }
}
